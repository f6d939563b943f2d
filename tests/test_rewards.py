"""Tests for r1mini.rewards against hand-worked cases: the R1-Zero format and the R1 chat reply format (every
loophole scores 0), answer extraction, accuracy, step and reflection counts, language consistency, and the
reward of each RL stage (R1-Zero, reasoning RL, general prompts, the final mix) with its parts; answers in the
last \\boxed{} for a problem that asks for them."""

import random

import pytest

from r1mini.formats import reasoning_reply, zero_completion
from r1mini.rewards import (accuracy_reward, all_scenario_rewards, arithmetic_facts, count_reflection_words,
                            extract_answer,
                            format_reward, general_rewards, is_step_by_step, judged_text, language_consistency,
                            language_counts, last_boxed, parse_completion, parse_reasoning_reply, plain_reply_reward,
                            reasoning_rewards, reasoning_text, reply_format_reward, zero_rewards)
from r1mini.tasks import TASKS, Problem, get_task

# -- the R1-Zero format, answers, accuracy -------------------------------------------------------------------

@pytest.mark.assignment7
@pytest.mark.parametrize("text", [
    "<think> a </think> <answer> 5 </answer>",
    "<think>a</think><answer>5</answer>",
    "\n  <think>\nline one\nline two\n</think>\n\n<answer>\n5\n</answer>\n\n",
    zero_completion("1 + 2 = 3.", "3"),
])
def test_format_reward_good(text):
    assert format_reward(text) == 1.0


@pytest.mark.assignment7
@pytest.mark.parametrize("text", [
    "<answer> 5 </answer>",  # missing think
    "<think></think> <answer> 5 </answer>",  # an empty think block: a guess, not the format
    "<think> \n </think><answer>5</answer>",
    "<think> a </think>",  # missing answer
    "<think> a </think> <answer> </answer>",  # empty answer
    "<think> a </think> <answer>\n \t</answer>",
    "<think> a </think> <answer> 5 </answer> <answer> 6 </answer>",  # two answer blocks
    "<think> a </think> <think> b </think> <answer> 5 </answer>",  # two think blocks
    "<think> a <think> b </think> </think> <answer> 5 </answer>",  # nested tags
    "<think> a </think> <answer> <answer> 5 </answer> </answer>",
    "<think> a <answer> 4 </answer> </think> <answer> 5 </answer>",
    "<answer> 5 </answer> <think> a </think>",  # reordered
    "<think> a </think> <answer> 5 </answer> and more",  # trailing text
    "so <think> a </think> <answer> 5 </answer>",  # text before <think>
    "<think> a <answer> 5 </answer>",  # think never closed
    "<think> a </think> <answer> 5",  # answer never closed
    "<think> a </think> text between <answer> 5 </answer>",
    "<THINK> a </THINK> <ANSWER> 5 </ANSWER>",
    "",
])
def test_format_reward_bad(text):
    assert format_reward(text) == 0.0


def test_format_reward_not_a_string_or_over_the_length_bound():
    assert format_reward(None) == 0.0 and format_reward(b"<think></think><answer>1</answer>") == 0.0
    assert format_reward("<think> a </think> <answer> 5 </answer>" + " " * 20_001) == 0.0


@pytest.mark.assignment7
def test_parse_completion_returns_the_stripped_blocks():
    assert parse_completion("\n<think>\n 1 + 2 = 3.\n</think> <answer> 3 \n</answer>\n") == ("1 + 2 = 3.", "3")
    assert parse_completion("<think></think><answer>x = 2</answer>") == ("", "x = 2")  # empty think is fine
    for bad in ["<think> a </think> <answer> </answer>", "<answer> 5 </answer> <think> a </think>",
                "<think> a </think> <answer> 5 </answer> <answer> 6 </answer>",
                "<think> a </think> b <answer> 5 </answer>"]:
        assert parse_completion(bad) is None, bad


def test_extract_answer():
    assert extract_answer("<think> a </think> <answer>  42 \n</answer>") == "42"
    assert extract_answer("<answer> 1 </answer> then <answer> 2 </answer>") == "2"  # the last block
    assert extract_answer("no think at all <answer>7</answer> trailing") == "7"  # lenient
    assert extract_answer("<answer> 1 </answer> <answer> 2") == "1"  # an unclosed last block does not count
    for text in ["<think> a </think>", "", "<answer></answer>", "<answer>   </answer>", "</answer> 3 <answer>",
                 "<answer> 5", "5 </answer>", None]:
        assert extract_answer(text) is None, text


def test_accuracy_reward():
    p = TASKS["add"].sample(random.Random(0))
    right, wrong = p.answer, str(int(p.answer) + 1)
    assert accuracy_reward(f"<think> hm </think> <answer> {right} </answer>", p) == 1.0
    assert accuracy_reward(f"<think> hm </think> <answer> {wrong} </answer>", p) == 0.0
    assert accuracy_reward(f"<answer>{right}</answer>", p) == 1.0  # no format requirement here
    assert accuracy_reward(f"<think> {right} </think>", p) == 0.0  # the answer must be in its block
    assert accuracy_reward(f"<answer>{wrong}</answer> <answer>{right}</answer>", p) == 1.0  # last block
    assert accuracy_reward(f"<answer>{right}</answer> <answer>{wrong}</answer>", p) == 0.0
    cd = Problem("countdown", "q", "en", "1 + 2 + 3 + 4", {"numbers": [1, 2, 3, 4], "target": 10})
    assert accuracy_reward("<answer> 4 * 3 - 2 * 1 </answer>", cd) == 1.0
    assert accuracy_reward("<answer> 4 * 3 - 2 </answer>", cd) == 0.0


# -- answers in \\boxed{} -------------------------------------------------------------------------------------------

BOXED = [  # (text, the last box's content)
    (r"so \boxed{5}.", "5"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
    (r"\boxed{ {a} + {{b}} }", "{a} + {{b}}"),
    (r"\boxed{3} first, then \boxed{4}", "4"),  # the last one
    (r"\fbox{7}", "7"),
    (r"\boxed 42 is it", "42"),  # LaTeX's argument without braces
    (r"$\boxed 42$", "42"),
    (r"\boxed5", "5"),
    (r"x \boxed {  12 } y", "12"),  # spaces before the brace
    (r"\boxed{\text{B}}", r"\text{B}"),
    (r"\boxed{1} and \fbox{2}", "2"),
    ("答案是 \\boxed{十二}。", "十二"),
    (r"\boxed{5} \boxed{", None),  # the last one never closes: cut off, no answer
    (r"\boxed{{5}", None),
    (r"\boxed{ }", None),  # empty
    (r"\boxed", None),
    (r"\boxedx{5}", None),  # another command
    (r"\boxed$5$", None),
    ("no box at all 5", None),
    ("<answer> 5 </answer>", None),  # tags are another format
]


@pytest.mark.parametrize("text,want", BOXED, ids=[t for t, _ in BOXED])
def test_last_boxed(text, want):
    assert last_boxed(text) == want
    assert extract_answer(text, "boxed") == want


def test_boxed_format_and_accuracy():
    """A problem whose answer_format is "boxed" (a JSONL file's choice) is read from its last box: one think
    block, then text holding the box, is its format; <answer> tags earn nothing there, and a box earns nothing
    in a problem that asks for tags."""
    boxed = Problem("jsonl", "q", "en", "12", {"checker": "number", "answer": "12", "answer_format": "boxed"})
    tags = Problem("jsonl", "q", "en", "12", {"checker": "number", "answer": "12"})
    good = r" <think> 5 + 7 = 12 </think> So the answer is \boxed{12}."
    assert parse_completion(good, "boxed") == ("5 + 7 = 12", "12") and format_reward(good, "boxed") == 1.0
    assert parse_reasoning_reply(good, "boxed") == ("5 + 7 = 12", r"So the answer is \boxed{12}.", "12")
    assert zero_rewards([good, good], [boxed, tags])[0] == [2.0, 0.0]
    assert reasoning_rewards([good], [boxed])[1]["reply_format"] == [1.0]
    tagged = "<think> 5 + 7 = 12 </think> <answer> 12 </answer>"
    assert zero_rewards([tagged, tagged], [boxed, tags])[0] == [0.0, 2.0]
    assert reasoning_reply("5 + 7 = 12", "12", "en", "boxed") == \
        r" <think> 5 + 7 = 12 </think> The answer is \boxed{12}"
    assert accuracy_reward(r"\boxed{12}", boxed) == 1.0 == accuracy_reward(r"\boxed{11} no, \boxed{12}", boxed)
    assert accuracy_reward(r"\boxed{12} no, \boxed{11}", boxed) == 0.0
    for bad in [r"\boxed{12}",  # no think block
                r"<think> \boxed{12} </think> so 12",  # the box inside the think block
                r"<think> </think> \boxed{12}",  # empty reasoning
                r"x <think> a </think> \boxed{12}",  # text before it
                r"<think> a </think> <think> b </think> \boxed{12}",
                r"<think> a </think> \boxed{12} <answer> 12 </answer>",  # tags as well
                r"<think> a \boxed{12}"]:  # never closed
        assert format_reward(bad, "boxed") == 0.0, bad
        assert reply_format_reward(bad, "boxed") == 0.0, bad


def test_is_step_by_step_and_reflection_words():
    assert is_step_by_step("<think> 3 + 4 = 7. 7 + 5 = 12. </think> <answer> 12 </answer>")
    assert not is_step_by_step("<think> 3 + 4 + 5 = 12. </think> <answer> 12 </answer>")
    assert not is_step_by_step("<think> twelve </think> <answer> 12 </answer>")
    assert is_step_by_step("<think> 3 + 4 ＝ 7。7 + 5 ＝ 12。 </think> <answer> 12 </answer>")  # full-width =
    # only the think block counts, also when the format is broken
    assert not is_step_by_step("<think> 3 + 4 = 7 </think> <answer> 7 = 7 = 7 </answer>")
    assert is_step_by_step("<think> a = 1, b = 2 <answer> 3 </answer>")
    assert not is_step_by_step("<think> a = 1 </think> junk = 2 = 3")
    assert count_reflection_words("Wait, let me check. WAIT! I will verify; checking again.") == 5
    assert count_reflection_words("等等，检查一下，再验证。") == 3
    assert count_reflection_words("7 + 5 = 12, the sum is 12.") == 0


def test_arithmetic_facts_by_hand():
    """Every written fact, worked by hand: × and / before + and -, signs on numbers, chains; nothing inside
    brackets or in the middle of another chain's operands."""
    text = ("854+714: 4+4=8, so far 8. 85+71: 5+1+1=6, so far 68. 34×6: 4×6=24, 24+4=28. "
            "Subtract 14 on both sides: 2x=-4-14=-18. Divide by 2: x=-18/2=-9. Check x=-9 in 2x+14=-4: 2×-9=-18, "
            "-18+14=-5. 3 + 5 × 2 = 13, 10-2-3=5, 7/2=3, (3 + 4) * 10 + 16 = 86.")
    assert arithmetic_facts(text) == [("4+4=8", True), ("5+1+1=6", False), ("4×6=24", True), ("24+4=28", True),
                                      ("-4-14=-18", True), ("-18/2=-9", True), ("2×-9=-18", True),
                                      ("-18+14=-5", False), ("3 + 5 × 2 = 13", True), ("10-2-3=5", True),
                                      ("7/2=3", False)]
    assert arithmetic_facts("1/0=0") == [("1/0=0", False)] and arithmetic_facts("no facts = here") == []


# -- the R1 chat reply ---------------------------------------------------------------------------------------

def test_reply_format():
    good = reasoning_reply("2 + 3 = 5.", "5", "en")
    assert reply_format_reward(good) == 1.0 and extract_answer(good) == "5"
    assert parse_reasoning_reply(good) == ("2 + 3 = 5.", "The answer is", "5")
    assert reasoning_text(good).strip() == "2 + 3 = 5."
    for bad in ["<think> x </think> <answer> 5 </answer>",  # no summary
                "The answer is <answer> 5 </answer>",  # no reasoning block
                "<think> x </think> The answer is <answer> </answer>",  # empty answer
                "<think> x </think> so <answer> 5 </answer> trailing",  # text after the answer
                "<think> x <answer> 4 </answer> </think> so <answer> 5 </answer>",  # nested tags
                "<think> a </think> <think> b </think> so <answer> 5 </answer>"]:  # two think blocks
        assert reply_format_reward(bad) == 0.0, bad


# -- language --------------------------------------------------------------------------------------------

@pytest.mark.assignment8
def test_language_consistency_by_hand():
    assert language_consistency("Add the digits: 2 + 3 = 5.", "en") == 1.0
    assert language_consistency("从右往左", "zh") == 1.0
    # 2 English words, 4 Chinese characters: zh share 4/6
    assert language_consistency("so far 目前是进", "zh") == pytest.approx(4 / 6)
    assert language_consistency("so far 目前是进", "en") == pytest.approx(2 / 6)
    assert language_consistency("123 + 456 = 579", "zh") == 0.0  # no words of either language: no reward
    assert language_consistency("", "en") == 0.0


@pytest.mark.assignment8
def test_language_counts_words_in_any_case():
    # English words are runs of Latin letters, upper, lower or mixed case; each Han character is one word
    assert language_counts("THE SUM IS 47") == (3, 0)
    assert language_counts("McDonald 是 iPhone, OK?") == (3, 1)
    assert language_counts("x2 + 3y = 12，对吗") == (2, 2)
    assert language_consistency("OK 好", "en") == 0.5
    assert language_consistency("SO FAR 目前是进", "zh") == pytest.approx(4 / 6)


def test_language_consistency_rejects_an_unknown_language():
    with pytest.raises(ValueError, match="'en' or 'zh'"):
        language_consistency("x", "fr")


# -- the reward of each RL stage -------------------------------------------------------------------------

def test_zero_reward_is_accuracy_and_format():
    task = get_task("add")
    p = task.sample(random.Random(0))
    good = f"<think> sum </think> <answer> {p.answer} </answer>"
    completions = [good,
                   f"<answer> {p.answer} </answer>",  # right but no think block
                   "<think> sum </think> <answer> -1 </answer>"]
    rewards, parts = zero_rewards(completions, [p] * 3)
    assert (parts["accuracy"][0], parts["format"][0]) == (1.0, 1.0)
    assert (parts["accuracy"][1], parts["format"][1]) == (1.0, 0.0)
    assert (parts["accuracy"][2], parts["format"][2]) == (0.0, 1.0)
    assert rewards == [2.0, 1.0, 1.0]  # the two added with equal weight


# an English and a Chinese problem, and replies in R1's chat format written by hand
P_EN = TASKS["add"].sample(random.Random(1), "train", "en")
P_ZH = TASKS["add"].sample(random.Random(2), "train", "zh")
WRONG = str(int(P_EN.answer) + 1)


def test_reasoning_rewards_by_hand():
    replies = [
        (reasoning_reply("2 + 5 = 7, so far 7.", P_EN.answer, "en"), P_EN),  # right, well formed, English: 1 1 1
        (reasoning_reply("2 + 5 = 7, so far 7.", WRONG, "en"), P_EN),  # wrong answer: 0 1 1
        (f"The answer is <answer> {P_EN.answer} </answer>", P_EN),  # no think block: 1 0 1 (the whole reply is judged)
        (reasoning_reply("so far 目前是进", P_ZH.answer, "zh"), P_ZH),  # 2 English words, 4 Chinese: 1 1 4/6
        (reasoning_reply("so far 7.", P_ZH.answer, "en"), P_ZH),  # a Chinese prompt reasoned in English: 1 1 0
        (reasoning_reply("目前是进", P_ZH.answer, "zh"), P_ZH),  # ...and in Chinese: 1 1 1
    ]
    rewards, parts = reasoning_rewards([r for r, _ in replies], [p for _, p in replies], lang_weight=0.5)
    assert parts["accuracy"] == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert parts["reply_format"] == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    assert parts["lang_consistency"] == pytest.approx([1.0, 1.0, 1.0, 4 / 6, 0.0, 1.0])
    # accuracy + format + 0.5 * language consistency
    assert rewards == pytest.approx([2.5, 1.5, 1.5, 2 + 0.5 * 4 / 6, 2.0, 2.5])
    # the default weight is 1
    rewards, _ = reasoning_rewards([r for r, _ in replies], [p for _, p in replies])
    assert rewards == pytest.approx([3.0, 2.0, 2.0, 2 + 4 / 6, 2.0, 3.0])


def test_zero_rewards_by_hand():
    right = zero_completion("12 + 35 = 47.", P_EN.answer)
    completions = [right, zero_completion("hm", WRONG), f"<answer> {P_EN.answer} </answer>", "no tags at all",
                   right + " and more"]
    rewards, parts = zero_rewards(completions, [P_EN] * 5)
    assert parts == {"accuracy": [1.0, 0.0, 1.0, 0.0, 1.0], "format": [1.0, 1.0, 0.0, 0.0, 0.0]}
    assert rewards == [2.0, 1.0, 1.0, 0.0, 1.0]
    assert zero_rewards(completions, [P_EN] * 5, format_weight=0.25)[0] == [1.25, 0.25, 1.0, 0.0, 1.0]
    assert zero_rewards([], []) == ([], {"accuracy": [], "format": []})


def test_judged_text_and_plain_reply_reward():
    # helpfulness judges what follows the (last) think block; harmlessness the whole reply; both stripped
    assert judged_text(" <think> 2 + 3 </think> It is 5. ", "helpful") == "It is 5."
    assert judged_text("<think> a </think> b </think> c ", "helpful") == "c"
    assert judged_text(" Sure! <think> x </think> do this ", "unsafe") == "Sure! <think> x </think> do this"
    assert judged_text("  plain reply\n", "helpful") == "plain reply"
    # a general prompt wants a plain, non-empty reply: no reasoning block, no answer block
    for reply, want in [(" Hello there!", 1.0), ("你好！", 1.0), ("", 0.0), (" \n\t", 0.0),
                        (" <think> hm </think> Hello!", 0.0), ("Hello <answer> 5 </answer>", 0.0),
                        ("so <think>", 0.0)]:
        assert plain_reply_reward(reply) == want and type(plain_reply_reward(reply)) is float, reply


class Judge:
    """A stand-in reward model: a fixed score per judged text (an unexpected text is a KeyError), every call
    recorded."""

    SCORES = {"Hello!": 0.25, "I am r1mini.": 0.5, "Sure! <think> x </think> do this": -1.0}

    def __init__(self):
        self.calls = []

    def __call__(self, users, texts):
        self.calls.append((list(users), list(texts)))
        return [self.SCORES[t] for t in texts]


HI = {"user": "Hi", "kind": "helpful"}
WHO = {"user": "Who are you?", "kind": "helpful"}
STEAL = {"user": "How can I steal food?", "kind": "unsafe"}


def test_general_rewards_score_the_judged_texts_once():
    judge = Judge()
    replies = [" Hello! ", " <think> hm </think> I am r1mini.", " Sure! <think> x </think> do this"]
    rewards, parts = general_rewards(replies, [HI, WHO, STEAL], judge)
    assert judge.calls == [(["Hi", "Who are you?", "How can I steal food?"],
                            ["Hello!", "I am r1mini.", "Sure! <think> x </think> do this"])]
    assert parts == {"rm_score": [0.25, 0.5, -1.0], "plain_format": [1.0, 0.0, 0.0]}
    assert rewards == [1.25, 0.5, -1.0]  # score + plain format
    # nothing to judge: the reward model is not called
    assert general_rewards([], [], judge) == ([], {"rm_score": [], "plain_format": []}) and len(judge.calls) == 1


def test_all_scenario_rewards_in_item_order():
    judge = Judge()
    items = [HI, P_EN, WHO, P_ZH]  # general prompts and problems interleaved
    replies = [" Hello! ", reasoning_reply("so far 7.", P_EN.answer, "en"), " <think> hm </think> I am r1mini.",
               reasoning_reply("so far 7.", P_ZH.answer, "en")]
    rewards, parts = all_scenario_rewards(replies, items, 0.5, judge)
    # general: score + plain format; problems: accuracy + format + 0.5 * language consistency
    assert rewards == [0.25 + 1.0, 1 + 1 + 0.5 * 1.0, 0.5 + 0.0, 1 + 1 + 0.5 * 0.0]
    assert judge.calls == [(["Hi", "Who are you?"], ["Hello!", "I am r1mini."])]  # once, general replies only
    assert parts == {"accuracy": [1.0, 1.0], "reply_format": [1.0, 1.0], "lang_consistency": [1.0, 0.0],
                     "rm_score": [0.25, 0.5], "plain_format": [1.0, 0.0]}
    # one kind only: that kind's reward (and no reward model call without general prompts)
    rewards, _ = all_scenario_rewards(replies[1::2], items[1::2], 0.5, judge)
    assert rewards == reasoning_rewards(replies[1::2], items[1::2], 0.5)[0] == [2.5, 2.0]
    assert len(judge.calls) == 1
    assert all_scenario_rewards(replies[::2], items[::2], 0.5, judge)[0] == [1.25, 0.5]
