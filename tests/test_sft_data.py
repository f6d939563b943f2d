"""Tests for r1mini.sft_data, the SFT data R1 builds from a model's samples: the cold start keeps R1-Zero's right,
well-formed, single-language, non-looping completions rewritten in the chat format and tops them up with
worked solutions (a JSONL file's own, where its lines have them); rejection sampling keeps the right,
well-formed replies and adds chat data at the ratio."""

import random

from r1mini.chat_data import non_reasoning_examples
from r1mini.formats import reasoning_reply, zero_completion
from r1mini.rewards import accuracy_reward, reply_format_reward
from r1mini.sft_data import cold_start_data, rejection_sampling_data
from r1mini.tasks import draw_problems, suite


def test_rejection_sampling_data_keeps_right_well_formed_replies_then_adds_chat():
    rng = random.Random(1)
    task = suite("toy")["add"]
    p, q = task.sample(rng, "train", "en"), task.sample(rng, "train", "en")
    good = reasoning_reply(*task.solution(p, "steps", "en", rng), "en")
    wrong = good.replace(f"<answer> {p.answer} </answer>", f"<answer> {p.answer}1 </answer>")
    assert wrong != good
    sampled = [(p, [good, wrong, f" {p.answer}"]),  # right, wrong answer, right answer without the format
               (q, [reasoning_reply(*task.solution(q, "direct", "en", rng), "en")])]
    rows, counts = rejection_sampling_data(sampled, reasoning_ratio=1.0, seed=3)
    assert counts["total"] == 4 and counts["correct"] == 2 and counts["kept"] == 2
    assert rows[0] == {"user": p.question, "assistant": " " + good.strip(), "kind": "reasoning"}
    assert [r["user"] for r in rows[:2]] == [p.question, q.question]
    # then chat examples at 1 : 1, the same ones non_reasoning_examples gives for that seed
    assert rows[2:] == [{"user": g["user"], "assistant": " " + g["assistant"], "kind": "general"}
                        for g in non_reasoning_examples(2, seed=3)]
    rows, _ = rejection_sampling_data(sampled, reasoning_ratio=3.0, seed=3)
    assert [r["kind"] for r in rows] == ["reasoning", "reasoning", "general"]  # at least one chat example


def test_cold_start_data_keeps_readable_right_completions_then_tops_up():
    tasks = suite("toy")
    rng = random.Random(1)
    p, q = tasks["add"].sample(rng, "train", "en"), tasks["add"].sample(rng, "train", "zh")
    think = "Add digit by digit from the right. 2 + 5 = 7, so far 7."
    wrong = str(int(p.answer) + 1)
    sampled = [
        (p, [zero_completion(think, p.answer),  # kept
             zero_completion(think, wrong),  # wrong answer
             zero_completion("so far 目前是 7。", p.answer),  # right, but reasoning in two languages
             f"<answer> {p.answer} </answer>",  # right, but no think block
             zero_completion("Let me check. " * 3, p.answer),  # right, but a loop
             zero_completion(think.replace(" ", "  "), p.answer)]),  # a duplicate up to whitespace
        (q, [zero_completion("从右往左逐位相加。 目前是 7。", q.answer)]),  # kept: Chinese for a Chinese prompt
    ]
    kept = [(p.question, reasoning_reply(think, p.answer, "en")),
            (q.question, reasoning_reply("从右往左逐位相加。 目前是 7。", q.answer, "zh"))]

    pairs, from_zero = cold_start_data(sampled, 5, tasks, random.Random(5), zh_share=0.5)
    assert from_zero == 2 and pairs[:2] == kept
    # topped up to 5 with worked solutions that check themselves, of problems drawn from the rng
    reference_rng = random.Random(5)
    topped = []
    for problem in draw_problems(reference_rng, tasks, 3, 0.5):
        solution = tasks[problem.task].solution(problem, "reflect", problem.lang, reference_rng)
        assert "Check" in solution[0] or "检查" in solution[0]
        topped.append((problem, (problem.question, reasoning_reply(*solution, problem.lang))))
    assert pairs[2:] == [pair for _, pair in topped] and len(pairs) == 5
    for problem, (_, reply) in topped:  # right, in the chat format, in the problem's language
        assert reply_format_reward(reply) == 1.0 and accuracy_reward(reply, problem) == 1.0
        assert ("答案是" in reply) == (problem.lang == "zh")
    # more survivors than wanted: cut to n_examples, from_zero still counts every survivor
    pairs, from_zero = cold_start_data(sampled, 1, tasks, random.Random(5), zh_share=0.5)
    assert pairs == kept[:1] and from_zero == 2
    # nothing survives: all worked solutions
    pairs, from_zero = cold_start_data([(p, [zero_completion(think, wrong)])], 3, tasks, random.Random(5), 0.5)
    assert from_zero == 0 and pairs == [pair for _, pair in topped]


def test_cold_start_data_from_a_task_file_tops_up_with_its_solutions(tmp_path):
    """A JSONL file (train_r1.py --tasks): R1-Zero's right, well-formed, single-language completions first, the
    file's own worked solutions ("solution", with the answer as the line writes it) after them, each line at
    most once; none where no line has one. A boxed file's replies end in a box."""
    import json
    from r1mini.task_files import load_task_file
    rows = [{"question": f"What is {i} + 1?", "answer": f"{i + 1:,}", "checker": "number",
             **({"solution": f"{i} + 1 = {i + 1:,}."} if i % 2 else {})} for i in range(1000, 1400)]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = load_task_file(str(path))
    tasks = {task.name: task}
    solved = task.solved
    assert 150 < len(solved) < len(task.pool["train"]) and all(int(p.question.split()[2]) % 2 for p in solved)
    p, q = task.pool["train"][:2]
    sampled = [(p, [zero_completion("Add one.", p.answer), zero_completion("Add one.", "7"),
                    zero_completion("一 plus 一", p.answer)]), (q, ["no format " + q.answer])]
    pairs, from_zero = cold_start_data(sampled, 6, tasks, random.Random(0), zh_share=0.5)
    assert from_zero == 1 and pairs[0] == (p.question, reasoning_reply("Add one.", p.answer, "en"))
    chosen = random.Random(0).sample(solved, 5)
    assert pairs[1:] == [(s.question, reasoning_reply(s.data["solution"][0], s.data["solution"][1], "en"))
                         for s in chosen]
    assert all("," in reply.split("<answer>")[1] for _, reply in pairs[1:])  # "1,248" as the line writes it
    assert all(accuracy_reward(reply, s) == 1.0 == reply_format_reward(reply)
               for (_, reply), s in zip(pairs[1:], chosen))
    pairs, _ = cold_start_data([], 10_000, tasks, random.Random(0), zh_share=0.5)
    assert len(pairs) == len(set(pairs)) == len(solved)  # each line once, no more than the file has
    unsolved = load_task_file(str(path) + ":number")
    unsolved.pool["train"] = [p for p in unsolved.pool["train"] if "solution" not in p.data]
    assert cold_start_data([], 10, {unsolved.name: unsolved}, random.Random(0), zh_share=0.5) == ([], 0)
    boxed = load_task_file(str(path) + ":boxed")
    pairs, _ = cold_start_data([], 3, {boxed.name: boxed}, random.Random(0), zh_share=0.5)
    assert len(pairs) == 3 and all(reply.endswith("}") and "\\boxed{" in reply for _, reply in pairs)
