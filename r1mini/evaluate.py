"""Evaluation as in the R1 paper: pass@1 averaged over k samples (temperature 0.6, top-p 0.95), the
unbiased pass@k estimator (Chen et al. 2021), and cons@k (majority vote over the k answers)."""
from __future__ import annotations

import random
from collections import Counter
from math import comb

import numpy as np

from r1mini.formats import answer_format
from r1mini.rewards import (accuracy_reward, count_reflection_words, extract_answer, format_reward,
                            is_step_by_step, language_consistency, reasoning_text, reply_format_reward)
from r1mini.sampling import Sampled, sample_striped
from r1mini.task_files import FileTask, task_for
from r1mini.tasks import Problem, Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct:
    1 - C(n - c, k) / C(n, k), exactly 1.0 when fewer than k samples are wrong (n - c < k)."""
    if not 0 <= c <= n or not 0 < k <= n:
        raise ValueError(f"need 0 <= c <= n and 0 < k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_vote(answers: list[str | None], key=None) -> str | None:
    """The most common answer among those that are not None or empty; a tie goes to the tied answer that
    appears first in the list (["9", "1", "9", "1"] -> "9"). None when no answer votes (also for []). With
    `key` (a function of an answer), answers with the same key are one vote (Task.normalize: 0579 and 579),
    and the first answer of the winning key is returned."""
    key = key or (lambda a: a)
    counts = Counter(key(a) for a in answers if a)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a and counts[key(a)] == best)


def bootstrap_ci(values, minus=None, paired: bool = True, level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> list[float]:
    """A percentile-bootstrap interval (95% by default) for the mean of per-problem values, resampling the
    problems. With `minus`, for mean(values) - mean(minus): paired (the same problems, resampled together,
    e.g. two checkpoints on one eval set) or not (two independent samples, e.g. the first and last steps of a
    training curve). [nan, nan] without values."""
    a = np.asarray(values, dtype=float)
    b = None if minus is None else np.asarray(minus, dtype=float)
    if len(a) == 0 or (b is not None and len(b) == 0):
        return [float("nan"), float("nan")]
    if b is not None and paired and len(b) != len(a):
        raise ValueError(f"a paired interval needs values of the same problems, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (n_boot, len(a)))
    means = a[idx].mean(axis=1)
    if b is not None:
        means = means - b[idx if paired else rng.integers(0, len(b), (n_boot, len(b)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def score(samples: list[Sampled], k: int, chat: bool = False) -> dict:
    """pass@1 (mean over the k samples), pass@k, cons@k, format rate, language consistency of the
    reasoning with the prompt's language, mean length (tokens), and accuracy split by style (step by step or
    direct) and by reflection (replies with a reflection word, "reflect", or without, "plain"). pass@1 and
    cons@k come with 95% bootstrap intervals over problems ("pass@1_ci") and their per-problem values
    ("per_problem"), which a paired comparison of two checkpoints on the same problems needs; so do the
    accuracy of the replies that reflect and of those that do not, per problem (None where it had none)."""
    rows = {"pass@1": [], f"pass@{k}": [], f"cons@{k}": [], "format": [], "length": [], "chars": [],
            "reflection": [], "lang_consistency": []}
    fmt = reply_format_reward if chat else format_reward
    by_style = {"steps": [0, 0], "direct": [0, 0], "reflect": [0, 0], "plain": [0, 0]}  # [replies, right ones]
    split = {"reflect_acc": [], "plain_acc": []}  # per problem
    for s in samples:
        correct = [accuracy_reward(c, s.problem) for c in s.completions]
        rows["pass@1"].append(sum(correct) / len(correct))
        rows[f"pass@{k}"].append(pass_at_k(len(correct), int(sum(correct)), k))
        task, where = task_for(s.problem), answer_format(s.problem)
        vote = majority_vote([extract_answer(c, where) for c in s.completions],
                             key=lambda a: task.normalize(a, s.problem))
        rows[f"cons@{k}"].append(float(vote is not None and task.check(vote, s.problem)))
        reflected = []
        for c, ok, n in zip(s.completions, correct, s.lengths or [None] * len(correct)):
            rows["format"].append(fmt(c, where))
            rows["lang_consistency"].append(language_consistency(reasoning_text(c), s.problem.lang))
            rows["length"].append(len(c) if n is None else n)  # tokens when known, else characters
            rows["chars"].append(len(c))
            rows["reflection"].append(count_reflection_words(c))
            reflected.append(rows["reflection"][-1] > 0)
            for style in (by_style["steps" if is_step_by_step(c) else "direct"],
                          by_style["reflect" if reflected[-1] else "plain"]):
                style[0] += 1
                style[1] += ok
        for name, want in (("reflect_acc", True), ("plain_acc", False)):
            right = [ok for ok, r in zip(correct, reflected) if r == want]
            split[name].append(sum(right) / len(right) if right else None)
    result = {name: sum(v) / max(1, len(v)) for name, v in rows.items()}
    per_problem = {name: rows[name] for name in ("pass@1", f"cons@{k}")}
    for name in ("lang_consistency", "reflection"):  # per problem, the mean over its replies
        per_problem[name] = [sum(v) / len(v) for v in _chunks(rows[name], samples)]
    per_problem.update(split)
    for name in ("pass@1", f"cons@{k}"):
        result[f"{name}_ci"] = bootstrap_ci(per_problem[name])
    n_all = len(rows["format"])
    for name, (n, c) in by_style.items():  # steps_share, steps_acc, ..., reflect_share, reflect_acc, plain_acc
        result[f"{name}_share"] = n / max(1, n_all)
        result[f"{name}_acc"] = c / n if n else float("nan")
    result["per_problem"] = per_problem
    return result


def _chunks(values: list, samples: list[Sampled]) -> list[list]:
    """values, one per completion, cut into one list per problem."""
    out, i = [], 0
    for s in samples:
        out.append(values[i:i + len(s.completions)])
        i += len(s.completions)
    return out


EVAL_LANGS = ("en", "zh")


def heldout_problems(tasks: dict[str, Task], n: int, seed: int, lang: str = "en", *, split: str) -> list[Problem]:
    """n problems per task from `split`: "dev" for what a stage watches while it trains, "test" for the final
    evaluation (eval.py), nothing else. The same ones for every model evaluated with this seed, all different,
    and different across languages: each language takes its own slice of one draw without replacement. A JSONL
    file's (FileTask): its first n problems of the split in that language, none when it has none."""
    if split not in ("dev", "test"):
        raise ValueError(f"held-out problems come from the dev or the test split, not {split!r}")
    slot = EVAL_LANGS.index(lang)
    problems = []
    for task in tasks.values():
        if isinstance(task, FileTask):
            problems += task.heldout(n, lang, split)
            continue
        rng = random.Random(f"{seed}:{task.name}")
        for data in task.distinct(rng, split, n * len(EVAL_LANGS))[slot * n:(slot + 1) * n]:
            problems.append(task.problem(data, lang, rng))
    return problems


def heldout_eval(model, tokenizer, eval_sets: dict[str, list[Problem]], *, k: int, max_new_tokens: int,
                 chat: bool, seed: int = 1234) -> dict[str, tuple[dict, list[Sampled]]]:
    """The check a training stage runs on held-out problems as it goes: k samples per problem at the
    paper's temperature 0.6 and top-p 0.95, each language's problems striped across ranks. Returns, per
    language that has problems, score()'s metrics and the samples."""
    results = {}
    for lang, problems in eval_sets.items():
        if not problems:  # a JSONL file's problems are in its own languages only
            continue
        samples = sample_striped(model, tokenizer, problems, k, temperature=0.6, top_p=0.95,
                                 max_new_tokens=max_new_tokens, seed=seed, chat=chat)
        results[lang] = (score(samples, k, chat=chat), samples)
    return results


def evaluate_model(model, tokenizer, tasks: dict[str, Task], *, chat: bool, n_problems: int, k: int,
                   langs: tuple[str, ...] = ("en", "zh"), temperature: float = 0.6, top_p: float = 0.95,
                   max_new_tokens: int = 160, batch_size: int = 128, seed: int = 0,
                   draft_stats: dict | None = None) -> dict[str, dict]:
    """Every task as a benchmark named by its label (add-3d, mul-3x1, ...): n_problems held-out problems
    per language, k samples each; the sampled metrics of score() pooled over languages (with 95% intervals
    and per-problem values), greedy accuracy (one sample at temperature 0), the same per language under
    "by_lang", and the problems in order ("problems": language and canonical key), so that two checkpoints'
    per-problem values can be paired. Under torchrun the problems are striped over the ranks (each its own
    sampling seed) and every rank gets the whole result. With draft_stats, by speculative decoding (see
    sampling.sample_completions)."""
    results = {}
    for task in tasks.values():
        pooled, pooled_greedy, by_lang = [], [], {}
        for lang in langs:
            problems = heldout_problems({task.name: task}, n_problems, seed=seed, lang=lang, split="test")
            common = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, chat=chat,
                          draft_stats=draft_stats)
            samples = sample_striped(model, tokenizer, problems, k, temperature=temperature, top_p=top_p,
                                     progress=f"{task.label} {lang}", **common)
            greedy = sample_striped(model, tokenizer, problems, 1, temperature=0.0, top_p=1.0, **common)
            by_lang[lang] = {**score(samples, k, chat), "greedy": score(greedy, 1, chat)["pass@1"]}
            pooled += samples
            pooled_greedy += greedy
        results[task.label] = {**score(pooled, k, chat), "greedy": score(pooled_greedy, 1, chat)["pass@1"],
                               "by_lang": by_lang, "problems": [f"{s.problem.lang}:{task.key(s.problem.data)}"
                                                                for s in pooled]}
    return results
