"""The prompt and reply formats, one module that training and evaluation share.

R1-Zero (DeepSeek-R1 Table 1): a plain-text template; after "Assistant:" the model writes
`<think> ... </think> <answer> ... </answer>`.

R1 and everything after it: the chat format, `<|user|> question <|assistant|> reply <|end|>`. A reasoning
reply is "<think> reasoning </think> summary <answer> answer </answer>": the reasoning block, then a short
readable summary ending in the marked answer (the paper's "|special_token|<reasoning_process>|special_token|
<summary>", with <answer> in the role of \\boxed{}). A non-reasoning reply is plain text. SFT, RL, rejection
sampling and evaluation all build their token sequences here.

A problem may mark its answer the way math models do instead, in the last \\boxed{...} (answer_format
"boxed": a JSONL line's or file's choice, r1mini/task_files.py); its prompts and replies say so.
"""
from __future__ import annotations

# The paper's template (DeepSeek-R1, Table 1), shortened: every prompt token costs a tiny model compute, and
# prompt and reply share the context (256 tokens at the cpu preset), where a reply that checks itself is long.
ZERO_TEMPLATE = ("The Assistant thinks in <think> </think>, then answers in <answer> </answer>. "
                 "User: {question} Assistant:")
# the same for a problem whose answer goes in \boxed{} (answer_format "boxed")
ZERO_TEMPLATE_BOXED = ZERO_TEMPLATE.replace("in <answer> </answer>", "in \\boxed{{}}")
ANSWER_FORMATS = ("tags", "boxed")  # <answer> 5 </answer>, or the last \boxed{5}


def answer_format(problem) -> str:
    """Where a problem's answer is written: "tags" (ours) or "boxed", as its data says (a JSONL task's line or
    file sets it; a task of your own may put "answer_format" in the data it draws)."""
    return (getattr(problem, "data", None) or {}).get("answer_format", "tags")


def zero_prompt(question: str, answer_format: str = "tags") -> str:
    return (ZERO_TEMPLATE_BOXED if answer_format == "boxed" else ZERO_TEMPLATE).format(question=question)


def zero_completion(think: str, answer: str) -> str:
    return f" <think> {think} </think> <answer> {answer} </answer>"


# chat_ids below as a Jinja chat template, which an exported checkpoint carries (r1mini/hf.py) so that any client
# (transformers' apply_chat_template, vLLM, llama.cpp) renders our tokens: a user turn is <|user|>, a space and
# its stripped text; an assistant turn <|assistant|>, its reply as written, <|end|>; the generation prompt
# <|assistant|>. Several exchanges follow one another. {% generation %} marks the tokens chat_ids's mask trains on
# (transformers' return_assistant_tokens_mask). Our format has no system turn, and clients often send one: its
# text opens the next user turn, a blank line before the question.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{%- set ns.system = ns.system + message['content'] | trim + '\n\n' -%}"
    "{%- elif message['role'] == 'user' -%}{{ '<|user|> ' + (ns.system + message['content']) | trim }}"
    "{%- set ns.system = '' -%}"
    "{%- elif message['role'] == 'assistant' -%}{{ '<|assistant|>' }}"
    "{%- generation -%}{{ message['content'] + '<|end|>' }}{%- endgeneration -%}"
    "{%- else -%}{{ raise_exception('r1mini chats have system, user and assistant turns, not ' + message['role']) }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}")


def chat_ids(tokenizer, user: str, assistant: str | None = None) -> tuple[list[int], list[bool]]:
    """Token ids of one exchange and the loss mask (True on the assistant's tokens and its <|end|>).

    Without `assistant`, the prompt to generate from: it ends with <|assistant|>. A Hugging Face checkpoint's
    tokenizer renders its own chat template instead (r1mini/hf.py).
    """
    if getattr(tokenizer, "hf", None) is not None:
        if not tokenizer.chat_template:
            raise ValueError("this checkpoint's tokenizer_config.json has no chat_template: use the R1-Zero "
                             "template (a base model), or a checkpoint with a chat template (an instruct model)")
        from r1mini.hf import template_chat_ids  # here: hf.py needs jinja2 only when a template is rendered
        return template_chat_ids(tokenizer, user, assistant)
    ids = [tokenizer.special("<|user|>")] + tokenizer.encode(" " + user.strip()) + [tokenizer.special("<|assistant|>")]
    mask = [False] * len(ids)
    if assistant is not None:
        reply = tokenizer.encode(assistant) + [tokenizer.special("<|end|>")]
        ids += reply
        mask += [True] * len(reply)
    return ids, mask


def reasoning_reply(think: str, answer: str, lang: str, answer_format: str = "tags") -> str:
    marked = f"\\boxed{{{answer}}}" if answer_format == "boxed" else f"<answer> {answer} </answer>"
    summary = f"答案是 {marked}" if lang == "zh" else f"The answer is {marked}"
    return f" <think> {think} </think> {summary}"


def prompt_ids(tokenizer, question: str, chat: bool, answer_format: str = "tags") -> tuple[list[int], list[int]]:
    """(prompt tokens, stop tokens): the chat format (R1 and later) or the R1-Zero template (after the
    checkpoint's begin-of-text token where it has one, as Llama 3 was trained to see; a chat template writes
    its own), the boxed one for a problem whose answer goes in \\boxed{}."""
    if chat:
        return chat_ids(tokenizer, question)[0], stop_ids(tokenizer, chat)
    hf = getattr(tokenizer, "hf", None) or {}
    bos = [tokenizer.special(hf["bos_token"])] if hf.get("bos_token") else []
    return bos + tokenizer.encode(zero_prompt(question, answer_format)), stop_ids(tokenizer, chat)


def stop_ids(tokenizer, chat: bool) -> list[int]:
    """The tokens that end a reply: <|end|> in the chat format (then end of text), end of text otherwise; a
    Hugging Face checkpoint's eos token and its end-of-turn tokens in either."""
    if getattr(tokenizer, "hf", None) is not None:
        return [tokenizer.special(t) for t in tokenizer.hf["stop_tokens"]]
    return [tokenizer.special("<|end|>"), tokenizer.eot_id] if chat else [tokenizer.eot_id]
