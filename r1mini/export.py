"""Export one of our checkpoints as a Hugging Face checkpoint directory that `transformers` loads.

    python -m r1mini.export out/zero out/zero-hf

The directory carries our chat format as a Jinja chat template and <|end|> among the stop tokens, so that
`transformers` (apply_chat_template, generate) and any other client chat with it as our scripts do. Dense models
only: DeepSeekMoE has no Llama/Qwen equivalent. The conversion itself is r1mini/hf.py
(save_pretrained); this module is its command line, apart from hf.py because it reads our checkpoints
(checkpoint.py), which read Hugging Face ones through hf.py.
"""
from __future__ import annotations

import argparse

from r1mini.checkpoint import load_checkpoint
from r1mini.hf import hf_config, save_pretrained


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write one of our checkpoints as a Hugging Face directory.")
    parser.add_argument("checkpoint", help="one of ours, e.g. out/zero")
    parser.add_argument("out", help="the directory to write, e.g. out/zero-hf")
    args = parser.parse_args(argv)
    model, tokenizer, _ = load_checkpoint(args.checkpoint)
    try:
        save_pretrained(model, tokenizer, args.out)
    except ValueError as e:
        raise SystemExit(f"cannot export {args.checkpoint}: {e}") from None
    print(f"wrote {args.out} ({model.num_params():,} parameters, {hf_config(model.cfg)['architectures'][0]})")


if __name__ == "__main__":
    main()
