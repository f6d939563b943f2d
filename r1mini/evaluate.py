"""Evaluation as in the R1 paper: pass@1 averaged over k samples (temperature 0.6, top-p 0.95), the
unbiased pass@k estimator (Chen et al. 2021), and cons@k (majority vote over the k answers)."""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from math import comb

import torch
from tqdm import tqdm

from r1mini.distributed import map_striped, rank_and_world
from r1mini.formats import prompt_ids
from r1mini.memory import generation_batch
from r1mini.rewards import (accuracy_reward, count_reflection_words, extract_answer, format_reward,
                            is_step_by_step, language_consistency, reasoning_text, reply_format_reward)
from r1mini.sampling import generate
from r1mini.tasks import Problem, Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct:
    1 - C(n - c, k) / C(n, k)."""
    if not 0 <= c <= n or not 0 < k <= n:
        raise ValueError(f"need 0 <= c <= n and 0 < k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common non-empty answer; ties go to the one that appeared first."""
    counts = Counter(a for a in answers if a)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a and counts[a] == best)


@dataclass
class Sampled:
    problem: Problem
    completions: list[str]
    lengths: list[int] | None = None  # tokens of each completion, stop token excluded


def sample_completions(model, tokenizer, problems: list[Problem], k: int, *, temperature: float, top_p: float,
                       max_new_tokens: int, batch_size: int = 0, seed: int = 0, chat: bool = False,
                       progress: str | None = None, draft_stats: dict | None = None) -> list[Sampled]:
    """k completions for each problem, in the chat format or under the R1-Zero template, batch_size rows
    at a time (0: memory.generation_batch, 64 on the CPU and up to 512 on a GPU). With `progress`, a
    progress bar of that name counts the batches. With draft_stats (a dict), by speculative decoding with
    the MTP draft, counting drafts proposed and accepted in it."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    stop = prompt_ids(tokenizer, "", chat)[1]
    prompts = [prompt_ids(tokenizer, p.question, chat)[0] for p in problems for _ in range(k)]
    longest = max((len(p) for p in prompts), default=0) + max_new_tokens
    batch_size = generation_batch(model, min(longest, model.cfg.block_size), batch_size)
    seqs: list[list[int]] = []
    for i in tqdm(range(0, len(prompts), batch_size), desc=progress, disable=progress is None, leave=False,
                  dynamic_ncols=True):
        seqs += generate(model, prompts[i:i + batch_size], max_new_tokens, temperature=temperature, top_p=top_p,
                         stop_ids=stop, pad_id=stop[0], generator=gen, speculative=draft_stats is not None,
                         stats=draft_stats)
    seqs = [[t for t in seq if t not in stop] for seq in seqs]
    outs = [tokenizer.decode(seq) for seq in seqs]
    return [Sampled(p, outs[j * k:(j + 1) * k], [len(s) for s in seqs[j * k:(j + 1) * k]])
            for j, p in enumerate(problems)]


def score(samples: list[Sampled], k: int, chat: bool = False) -> dict:
    """pass@1 (mean over the k samples), pass@k, cons@k, format rate, language consistency of the
    reasoning with the prompt's language, mean length (tokens) and accuracy split by style."""
    rows = {"pass@1": [], f"pass@{k}": [], f"cons@{k}": [], "format": [], "length": [], "chars": [],
            "reflection": [], "lang_consistency": []}
    fmt = reply_format_reward if chat else format_reward
    by_style = {"steps": [0, 0], "direct": [0, 0]}
    for s in samples:
        correct = [accuracy_reward(c, s.problem) for c in s.completions]
        rows["pass@1"].append(sum(correct) / len(correct))
        rows[f"pass@{k}"].append(pass_at_k(len(correct), int(sum(correct)), k))
        vote = majority_vote([extract_answer(c) for c in s.completions])
        rows[f"cons@{k}"].append(float(vote is not None and accuracy_reward(f"<answer>{vote}</answer>", s.problem) > 0))
        for c, ok, n in zip(s.completions, correct, s.lengths or [None] * len(correct)):
            rows["format"].append(fmt(c))
            rows["lang_consistency"].append(language_consistency(reasoning_text(c), s.problem.lang))
            rows["length"].append(len(c) if n is None else n)  # tokens when known, else characters
            rows["chars"].append(len(c))
            rows["reflection"].append(count_reflection_words(c))
            style = by_style["steps" if is_step_by_step(c) else "direct"]
            style[0] += 1
            style[1] += ok
    result = {name: sum(v) / max(1, len(v)) for name, v in rows.items()}
    n_all = sum(n for n, _ in by_style.values())
    for name, (n, c) in by_style.items():
        result[f"{name}_share"] = n / max(1, n_all)
        result[f"{name}_acc"] = c / n if n else float("nan")
    return result


def heldout_problems(tasks: dict[str, Task], n: int, seed: int, lang: str = "en") -> list[Problem]:
    """n held-out problems per task, the same ones for every model evaluated with this seed."""
    rng = random.Random(seed)
    return [task.sample(rng, "test", lang) for task in tasks.values() for _ in range(n)]


def heldout_eval(model, tokenizer, eval_sets: dict[str, list[Problem]], *, k: int, max_new_tokens: int,
                 chat: bool, seed: int = 1234) -> dict[str, tuple[dict, list[Sampled]]]:
    """The check a training stage runs on held-out problems as it goes: k samples per problem at the
    paper's temperature 0.6 and top-p 0.95, each language's problems striped across ranks. Returns, per
    language, score()'s metrics and the samples."""
    rank = rank_and_world()[0]
    results = {}
    for lang, problems in eval_sets.items():
        samples = map_striped(lambda ps: sample_completions(model, tokenizer, ps, k, temperature=0.6, top_p=0.95,
                                                            max_new_tokens=max_new_tokens, seed=seed + rank,
                                                            chat=chat), problems)
        results[lang] = (score(samples, k, chat=chat), samples)
    return results


def evaluate_model(model, tokenizer, tasks: dict[str, Task], *, chat: bool, n_problems: int, k: int,
                   langs: tuple[str, ...] = ("en", "zh"), temperature: float = 0.6, top_p: float = 0.95,
                   max_new_tokens: int = 160, batch_size: int = 128, seed: int = 0,
                   draft_stats: dict | None = None) -> dict[str, dict]:
    """Every task as a benchmark named by its label (add-3d, mul-3x1, ...): n_problems held-out problems
    per language, k samples each; the sampled metrics of score() pooled over languages, greedy accuracy
    (one sample at temperature 0), and the same per language under "by_lang". Under torchrun the problems
    are striped over the ranks (each its own sampling seed) and every rank gets the whole result. With
    draft_stats, by speculative decoding (see sample_completions)."""
    rank = rank_and_world()[0]
    results = {}
    for task in tasks.values():
        pooled, pooled_greedy, by_lang = [], [], {}
        for lang in langs:
            problems = heldout_problems({task.name: task}, n_problems, seed=seed, lang=lang)
            common = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed + rank, chat=chat,
                          draft_stats=draft_stats)
            samples = map_striped(lambda ps: sample_completions(
                model, tokenizer, ps, k, temperature=temperature, top_p=top_p, progress=f"{task.label} {lang}",
                **common), problems)
            greedy = map_striped(lambda ps: sample_completions(model, tokenizer, ps, 1, temperature=0.0, top_p=1.0,
                                                               **common), problems)
            by_lang[lang] = {**score(samples, k, chat), "greedy": score(greedy, 1, chat)["pass@1"]}
            pooled += samples
            pooled_greedy += greedy
        results[task.label] = {**score(pooled, k, chat), "greedy": score(pooled_greedy, 1, chat)["pass@1"],
                               "by_lang": by_lang}
    return results


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats with three decimals."""
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])
