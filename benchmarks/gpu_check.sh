#!/usr/bin/env bash
# One GPU check, meant to finish in under 8 minutes on one H100-class GPU (never run yet: no GPU has been
# lent to the project so far; time each part the first time it runs). In order:
#   1. the CUDA tests: every CUDA branch on the real device (tests/test_cuda_paths.py runs on CUDA when there
#      is one; the compiled static decode test in test_sampling.py; model and device tests)
#   2. every stage at the toy preset on CUDA (bash speedrun.sh toy: bf16 autocast, CUDA-graph decoding, NCCL-
#      free single process), into $OUT/speedrun_toy
#   3. pretrain.py and train_zero.py at the gpu preset's shapes for a few steps (small data): tokens/s, MFU,
#      peak memory, the GRPO ratio check
#   4. the benchmarks: generation (dynamic vs CUDA-graph decoding), training throughput, peak memory
#      (estimated vs measured)
# and prints one summary table. Every part's log is in $OUT (default out/gpu_check); a failing part is marked
# and the rest still run.
#
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-out/gpu_check}
rm -rf "$OUT" && mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
$PY -c "import torch; assert torch.cuda.is_available(), 'gpu_check.sh needs a CUDA GPU'
print(torch.cuda.get_device_name(0), torch.__version__)" || exit 1
: > "$OUT/parts.tsv"

part() {  # part NAME command...: run it, log to $OUT/NAME.log, note the outcome and the seconds
  local name=$1 t0=$SECONDS status
  shift
  echo "== $name: $*"
  if "$@" > "$OUT/$name.log" 2>&1; then status=ok; else status="FAILED (exit $?, see $OUT/$name.log)"; fi
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" >> "$OUT/parts.tsv"
  tail -n 3 "$OUT/$name.log"
}

part cuda_tests $PY -m pytest -q -x tests/test_cuda_paths.py tests/test_sampling.py tests/test_model.py \
  tests/test_device.py
part speedrun_toy env OUT="$OUT/speedrun_toy" bash speedrun.sh toy
part pretrain_gpu $PY pretrain.py --preset gpu --out "$OUT/base" --max_steps 40 --warmup_steps 5 --eval_every 1000 \
  --ckpt_every 1000 --log_every 10 --tokenizer_docs 5000 --train_docs 20000 --val_docs 500 --eval_batches 2 \
  --compile true
part zero_gpu $PY train_zero.py --preset gpu --init "$OUT/base" --out "$OUT/zero" --steps 3 --eval_every 1000 \
  --eval_problems 4 --eval_k 2 --ckpt_every 1000 --mu 2 --kl_coef 0.01
part bench_generate $PY benchmarks/bench_generate.py --device cuda --model gpu --vocab 2056 --prompts 32 --samples 16 \
  --new 256
part bench_train $PY benchmarks/bench_train.py --device cuda --presets cpu,gpu --batch 64 --steps 10 --vocab 2056
part bench_memory $PY benchmarks/bench_memory.py --device cuda

$PY - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("\n| part | outcome | seconds |\n|---|---|---|")
for line in (out / "parts.tsv").read_text().splitlines():
    name, status, seconds = line.split("\t")
    print(f"| {name} | {status} | {seconds} |")
figures = []
def last(path, key):
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []
    return [r for r in rows if key in r][-1:]
for r in last(out / "base" / "log.jsonl", "tokens_per_s"):
    figures.append(("pretrain, gpu preset", r["tokens_per_s"], r.get("mfu"), r.get("peak_mem_mb")))
for r in last(out / "zero" / "log.jsonl", "gen_tokens_per_s"):
    figures.append(("R1-Zero rollout (tokens/s generated)", r["gen_tokens_per_s"], None, r.get("peak_mem_mb")))
    figures.append(("R1-Zero update", r["train_tokens_per_s"], r.get("mfu"), r.get("peak_mem_mb")))
    figures.append(("R1-Zero first update's mean abs(ratio - 1)", r.get("ratio_dev"), None, None))
if figures:
    print("\n| what | tokens/s (or value) | MFU | peak memory (MB) |\n|---|---|---|---|")
    for f in figures:
        print("| " + " | ".join("" if v is None else str(v) for v in f) + " |")
PYEOF
