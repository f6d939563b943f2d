"""The pretraining corpus, made by code, and its packing into random training windows.

The corpus stands in for the web text a base model is pretrained on. Its mix is what makes the R1
effects show up at small scale (docs/results.md, "How the small-scale experiment is set up"):
- task documents: questions with worked solutions, mostly direct answers (which a small model gets
  wrong), step-by-step in a minority (which it gets right), a few with a slip and a "wait" correction,
  a few wrong; Chinese prompts rarer and their solutions less reliable, some switching language;
- conversations already in the R1-Zero template, of mixed quality (tags missing or misplaced sometimes),
  so the base model can follow the template at all;
- facts about a small made-up world, number words in English and Chinese, and small talk: the
  non-reasoning data later stages reuse.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from r1mini.formats import zero_completion, zero_prompt
from r1mini.tasks import Problem, Task


@dataclass
class CorpusMix:
    """Shares of the pretraining corpus. Style shares apply to task documents and template conversations."""
    task_docs: float = 0.55
    template_convs: float = 0.28  # the rest is facts and small talk
    zh: float = 0.2  # share of problems asked in Chinese
    steps: float = 0.12  # step by step (clean)
    reflect: float = 0.25  # step by step, then a check by another route (a second pass when it disagrees)
    wrong: float = 0.03  # step by step with an uncorrected slip
    direct_wrong: float = 0.05  # a direct answer that is wrong
    zh_extra_wrong: float = 0.10  # Chinese step-by-step solutions: this much more often wrong
    mixed_lang: float = 0.3  # share of Chinese-prompted solutions that switch language
    bad_format: float = 0.10  # template conversations with missing or misplaced tags


def solution_for(task: Task, problem: Problem, mix: CorpusMix, rng: random.Random) -> tuple[str, str]:
    """Draw a style and a language for one worked solution, and write it."""
    zh = problem.lang == "zh"
    u = rng.random()
    wrong = mix.wrong + (mix.zh_extra_wrong if zh else 0.0)
    if u < mix.steps:
        style = "steps"
    elif u < mix.steps + mix.reflect:
        style = "reflect"
    elif u < mix.steps + mix.reflect + wrong:
        style = "wrong"
    else:
        style = "direct"
    lang = ("mixed" if rng.random() < mix.mixed_lang else "zh") if zh else "en"
    if style == "direct" and rng.random() < mix.direct_wrong:  # a confident, wrong direct answer
        answer = str(int(problem.answer) + rng.choice([-10, -1, 1, 10])) if problem.answer.lstrip("-").isdigit() \
            else problem.answer
        think = task.direct(problem.data, "zh" if zh else "en").replace(problem.answer, answer)
        return think, answer
    return task.solution(problem, style, lang, rng)


def task_document(task: Task, problem: Problem, mix: CorpusMix, rng: random.Random) -> str:
    think, answer = solution_for(task, problem, mix, rng)
    if problem.lang == "zh":
        return f"问题：{problem.question}\n解答：{think}\n答案：{answer}"
    head, body, tail = rng.choice([("Question", "Solution", "Answer"), ("Q", "A", "Final answer"),
                                   ("Problem", "Work", "Answer")])
    return f"{head}: {problem.question}\n{body}: {think}\n{tail}: {answer}"


def template_conversation(task: Task, problem: Problem, mix: CorpusMix, rng: random.Random) -> str:
    think, answer = solution_for(task, problem, mix, rng)
    prompt = zero_prompt(problem.question)
    if rng.random() < mix.bad_format:
        return prompt + rng.choice([
            f" {think} The answer is {answer}.",  # no tags at all
            f" <think> {think} </think> {answer}",  # answer outside its tags
            f" <answer> {answer} </answer>",  # no thinking
            f" <think> {think} <answer> {answer} </answer>",  # think never closed
        ])
    return prompt + zero_completion(think, answer)


# -- a small made-up world: facts, number words, small talk --------------------------------------------

_SYL = ["ta", "ro", "mi", "ka", "lo", "ne", "su", "vi", "da", "ri", "po", "le", "an", "or", "el", "um"]
_FOODS = ["plum bread", "fish soup", "rice cakes", "honey tea", "bean stew", "apple pie", "noodles", "cheese"]
_ZH_FOODS = ["李子面包", "鱼汤", "年糕", "蜂蜜茶", "豆子炖菜", "苹果派", "面条", "奶酪"]
_ZH_DIGITS = "零一二三四五六七八九"
_EN_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def en_number_word(n: int) -> str:
    if n < 20:
        return _EN_ONES[n]
    return _EN_TENS[n // 10] + ("" if n % 10 == 0 else "-" + _EN_ONES[n % 10])


def zh_number_word(n: int) -> str:
    if n < 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _ZH_DIGITS[tens]) + "十" + ("" if ones == 0 else _ZH_DIGITS[ones])


def make_world(seed: int = 1234, n_towns: int = 24) -> list[dict]:
    """The fixed facts every corpus shares (same seed, same world), so a model can learn them."""
    rng = random.Random(seed)
    name = lambda k: "".join(rng.choice(_SYL) for _ in range(k)).capitalize()
    towns = []
    for _ in range(n_towns):
        food = rng.randrange(len(_FOODS))
        towns.append({"town": name(2), "river": name(2), "mayor": name(3), "food": _FOODS[food],
                      "zh_food": _ZH_FOODS[food], "people": rng.randint(2, 99) * 100})
    return towns


WORLD = make_world()

SMALL_TALK = [
    ("Hello!", "Hello! How can I help you today?", "你好！", "你好！今天我能帮你什么？"),
    ("How are you?", "I am well, thank you. What would you like to work on?", "你好吗？", "我很好，谢谢。你想做什么？"),
    ("Who are you?", "I am r1mini, a small language model trained from scratch to reason step by step.",
     "你是谁？", "我是 r1mini，一个从零训练、会一步一步推理的小语言模型。"),
    ("Thank you!", "You are welcome!", "谢谢！", "不客气！"),
    ("Good night.", "Good night, sleep well.", "晚安。", "晚安，好梦。"),
    ("What can you do?", "I can add, multiply and solve small puzzles, and I can tell you about the towns I know.",
     "你会做什么？", "我会加法、乘法和解小谜题，也可以告诉你我知道的小镇。"),
]


def world_document(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        t = rng.choice(WORLD)
        if rng.random() < 0.8:
            return rng.choice([
                f"{t['town']} is a town on the river {t['river']}. About {t['people']} people live there.",
                f"The mayor of {t['town']} is {t['mayor']}. People in {t['town']} like {t['food']}.",
                f"{t['town']} lies on the {t['river']} river, and its favourite dish is {t['food']}.",
            ])
        return rng.choice([f"{t['town']} 是 {t['river']} 河边的一个小镇，大约有 {t['people']} 人。",
                           f"{t['town']} 的镇长是 {t['mayor']}。那里的人喜欢{t['zh_food']}。"])
    if kind < 0.7:  # times tables, as the web has them: the facts step-by-step multiplication is built on
        n = rng.randint(2, 9)
        if rng.random() < 0.2:
            return f"{n} 的乘法表：" + "，".join(f"{n} × {i} = {n * i}" for i in range(1, 10)) + "。"
        return f"The {n} times table: " + ", ".join(f"{n} × {i} = {n * i}" for i in range(1, 10)) + "."
    if kind < 0.85:
        n = rng.randint(0, 99)
        return rng.choice([f"{en_number_word(n)} is {n}, in Chinese {zh_number_word(n)}.",
                           f"{zh_number_word(n)} 是 {n}，英文是 {en_number_word(n)}。",
                           f"The number {n} is written {en_number_word(n)} in English and {zh_number_word(n)} "
                           f"in Chinese."])
    en_q, en_a, zh_q, zh_a = rng.choice(SMALL_TALK)
    return f"User: {zh_q}\nAssistant: {zh_a}" if rng.random() < 0.2 else f"User: {en_q}\nAssistant: {en_a}"


def corpus_documents(tasks: dict[str, Task], n_docs: int, seed: int, split: str = "train",
                     mix: CorpusMix | None = None) -> list[str]:
    """n_docs documents of the pretraining corpus, deterministic in the seed; problems from `split`."""
    mix = mix or CorpusMix()
    rng = random.Random(seed)
    task_list = list(tasks.values())
    docs = []
    for _ in range(n_docs):
        u = rng.random()
        if u >= mix.task_docs + mix.template_convs:
            docs.append(world_document(rng))
            continue
        task = rng.choice(task_list)
        problem = task.sample(rng, split, "zh" if rng.random() < mix.zh else "en")
        make = task_document if u < mix.task_docs else template_conversation
        docs.append(make(task, problem, mix, rng))
    return docs


# -- packing and batching -------------------------------------------------------------------------------

def pack(token_lists: list[list[int]], eot_id: int) -> np.ndarray:
    """One long stream: every document followed by the end-of-text token (uint16 when the ids fit)."""
    total = sum(len(t) + 1 for t in token_lists)
    dtype = np.uint16 if eot_id < 2 ** 16 else np.int32
    out = np.empty(total, dtype=dtype)
    i = 0
    for toks in token_lists:
        out[i:i + len(toks)] = toks
        out[i + len(toks)] = eot_id
        i += len(toks) + 1
    return out


def random_windows(stream: np.ndarray, batch_size: int, seq_len: int, generator: torch.Generator):
    """(x, y) of batch_size windows of seq_len tokens at random offsets, y shifted by one (nanoGPT)."""
    if len(stream) <= seq_len + 1:
        raise ValueError(f"stream of {len(stream)} tokens is too short for windows of {seq_len}")
    starts = torch.randint(len(stream) - seq_len - 1, (batch_size,), generator=generator).tolist()
    chunk = np.stack([stream[s:s + seq_len + 1] for s in starts]).astype(np.int64)
    t = torch.from_numpy(chunk)
    return t[:, :-1], t[:, 1:]
