"""The SFT data sets of R1 and distillation, built from a model's samples (DeepSeek-R1 §2.3.1, §2.3.3, §2.4).

- cold start (stage 1): R1-Zero's correct samples whose reasoning is written wholly in the prompt's language
  and does not loop, rewritten into the readable chat format; topped up with worked solutions from the
  tasks that check themselves when too few survive (the paper collected thousands of long CoT with reflection
  and verification, partly written by people): a JSONL file's from the lines that carry a "solution", and
  none where no line does.
- rejection sampling (stage 3, and distillation): the chat replies that are right, well formed and pass
  the rejection filters (r1mini/filters.py), plus non-reasoning chat data at reasoning_ratio : 1 (the
  paper's 600k : 200k is 3 : 1).

Both return chat pairs: `user` and `assistant` text, which formats.chat_ids turns into tokens.
"""
from __future__ import annotations

import random

from r1mini.chat_data import non_reasoning_examples
from r1mini.filters import rejection_filter, repeats
from r1mini.formats import answer_format, reasoning_reply
from r1mini.rewards import accuracy_reward, language_consistency, parse_completion, reply_format_reward
from r1mini.task_files import FileTask
from r1mini.tasks import Problem, Task, draw_problems


def cold_start_data(sampled, n_examples: int, tasks: dict[str, Task], rng: random.Random,
                    zh_share: float) -> tuple[list[tuple[str, str]], int]:
    """(user, assistant) pairs for the cold start from `sampled`, (problem, R1-Zero completions) pairs.

    A completion is kept when it is well formed and right and its reasoning is wholly in the prompt's
    language, then by rejection_filter's repetition and duplicate checks (a reply cut off at the length limit
    has no answer, so none is too long). At most n_examples are kept; worked solutions fill the rest
    (worked_solutions). Returns (pairs, how many came from R1-Zero before the cut to n_examples)."""
    samples = []
    for problem, completions in sampled:
        for c in completions:
            parsed = parse_completion(c, answer_format(problem))
            readable = parsed is not None and accuracy_reward(c, problem) > 0 \
                and language_consistency(parsed[0], problem.lang) == 1.0
            samples.append({"prompt": problem.question, "completion": parsed[0] if parsed else c,
                            "answer": parsed[1] if parsed else "", "lang": problem.lang, "correct": readable,
                            "format": answer_format(problem)})
    kept, _ = rejection_filter(samples, filters=(("repetition", repeats),))
    pairs = [(s["prompt"], reasoning_reply(s["completion"], s["answer"], s["lang"], s["format"])) for s in kept]
    from_zero = len(pairs)
    pairs = pairs[:n_examples]
    return pairs + worked_solutions(tasks, n_examples - len(pairs), rng, zh_share), from_zero


def worked_solutions(tasks: dict[str, Task], n: int, rng: random.Random, zh_share: float) -> list[tuple[str, str]]:
    """n (user, assistant) pairs of worked solutions that check themselves ("reflect", long CoT) to training
    problems drawn from `rng`. A JSONL file (FileTask) writes none of its own: its lines that carry a "solution"
    are the pairs, each at most once, fewer than n where fewer lines have one (none where none has)."""
    file = next((t for t in tasks.values() if isinstance(t, FileTask)), None)
    if file is not None:
        chosen = rng.sample(file.solved, min(max(0, n), len(file.solved)))
        return [(p.question, reasoning_reply(*file.solution(p, "reflect", p.lang, rng), p.lang, answer_format(p)))
                for p in chosen]
    pairs = []
    for p in draw_problems(rng, tasks, max(0, n), zh_share):
        think, answer = tasks[p.task].solution(p, "reflect", p.lang, rng)  # long CoT that checks itself
        pairs.append((p.question, reasoning_reply(think, answer, p.lang, answer_format(p))))
    return pairs


def rejection_sampling_data(sampled: list[tuple[Problem, list[str]]], reasoning_ratio: float,
                            seed: int) -> tuple[list[dict], dict]:
    """SFT rows from sampled chat replies: `sampled` is (problem, replies) pairs; a reply is correct when its
    answer is right and its format kept. The replies that pass rejection_filter, then non-reasoning chat
    examples at reasoning_ratio : 1. Returns (rows with user, assistant and kind, the filter counts)."""
    samples = [{"prompt": p.question, "completion": c,
                "correct": accuracy_reward(c, p) > 0 and reply_format_reward(c, answer_format(p)) > 0}
               for p, completions in sampled for c in completions]
    kept, counts = rejection_filter(samples)
    general = non_reasoning_examples(max(1, round(len(kept) / reasoning_ratio)), seed=seed, split="train")
    rows = [{"user": s["prompt"], "assistant": " " + s["completion"].strip(), "kind": "reasoning"} for s in kept]
    return rows + [{"user": g["user"], "assistant": " " + g["assistant"], "kind": "general"} for g in general], counts
