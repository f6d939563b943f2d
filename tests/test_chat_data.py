"""Tests for r1mini.chat_data: determinism, disjoint train/test prompts, replies that agree with the world the
base model was pretrained on (corpus.WORLD, the number words), Chinese answered in Chinese, and preference
pairs with every kind of negative."""

import re
from collections import Counter

import pytest

from r1mini.chat_data import (FACTS, NEGATIVES, general_prompts, non_reasoning_examples, preference_pairs,
                              reference_reply)
from r1mini.corpus import WORLD, en_number_word, zh_number_word
from r1mini.rewards import language_consistency

TOWNS = {t["town"]: t for t in WORLD}
NAMES = sorted({t[k] for t in WORLD for k in ("town", "river", "mayor")}, key=len, reverse=True)
EN_WORDS = {en_number_word(n): n for n in range(100)}
ZH_WORDS = {zh_number_word(n): n for n in range(100)}


def town_of(text: str) -> dict:
    found = [t for name, t in TOWNS.items() if re.search(rf"\b{name}\b", text)]
    assert len(found) == 1, text
    return found[0]


def strip_names(text: str) -> str:
    """Remove the world's proper names and English number words: the Latin words a Chinese reply must keep."""
    for name in NAMES:
        text = text.replace(name, " ")
    return re.sub(r"[a-z]+(?:-[a-z]+)?", lambda m: " " if m.group() in EN_WORDS else m.group(), text)


def test_deterministic_in_seed():
    assert non_reasoning_examples(50, 3) == non_reasoning_examples(50, 3)
    assert non_reasoning_examples(50, 3) != non_reasoning_examples(50, 4)
    assert general_prompts(50, 3) == general_prompts(50, 3)
    assert preference_pairs(50, 3, "test") == preference_pairs(50, 3, "test")
    assert preference_pairs(50, 3) != preference_pairs(50, 4)


def fact_of(e: dict) -> tuple[str, str]:
    """(town, attribute) a fact reply states; exactly one attribute of exactly one town."""
    t = town_of(e["user"])
    said = [a for a in FACTS if _says(e["assistant"], t, a)]
    assert len(said) == 1, e
    return t["town"], said[0]


def _says(reply: str, t: dict, attr: str) -> bool:
    values = [t["food"], t["zh_food"]] if attr == "food" else [str(t[attr])]
    return any(re.search(rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])", reply) for v in values)


def number_of(text: str) -> set[int]:
    """Every number named in text, in digits, English words or Chinese words."""
    return ({int(d) for d in re.findall(r"\d+", text)}
            | {EN_WORDS[w] for w in re.findall(r"[a-z]+(?:-[a-z]+)?", text) if w in EN_WORDS}
            | {ZH_WORDS[w] for w in re.findall(r"[零一二三四五六七八九十]+", text)})


def test_train_and_test_prompts_are_disjoint():
    train = {e["user"] for e in non_reasoning_examples(3000, 0)} | {p["user"] for p in general_prompts(3000, 0)}
    test = {e["user"] for e in non_reasoning_examples(1000, 0, "test")} | \
           {p["user"] for p in general_prompts(1000, 0, "test")}
    assert len(train) > 500 and len(test) > 50
    assert not train & test
    # stronger: a fact or a number asked in test is asked in no phrasing in train
    keys = {split: {fact_of(e) if e["kind"] == "fact" else min(number_of(e["user"]))
                    for e in non_reasoning_examples(3000, 1, split) if e["kind"] in ("fact", "translate")}
            for split in ("train", "test")}
    assert len(keys["test"]) > 10 and not keys["train"] & keys["test"]
    with pytest.raises(ValueError):
        non_reasoning_examples(1, 0, "val")


def test_shares_and_kinds():
    ex = non_reasoning_examples(2000, 5)
    kinds = Counter(e["kind"] for e in ex)
    assert set(kinds) == {"self", "smalltalk", "fact", "translate"}
    assert 0.18 < sum(e["lang"] == "zh" for e in ex) / len(ex) < 0.32
    assert all("<think>" not in e["assistant"] for e in ex)
    prompts = general_prompts(2000, 5)
    assert 0.16 < sum(p["kind"] == "unsafe" for p in prompts) / len(prompts) < 0.24
    assert {p["topic"] for p in prompts} == {"self", "smalltalk", "fact", "translate", "unsafe"}
    for split in ("train", "test"):  # every kind and language exists in both splits
        seen = {(e["kind"], e["lang"]) for e in non_reasoning_examples(3000, 6, split)}
        assert seen == {(k, lang) for k in kinds for lang in ("en", "zh")}


@pytest.mark.parametrize("split", ["train", "test"])
def test_fact_answers_agree_with_the_world(split):
    facts = [e for e in non_reasoning_examples(1500, 7, split) if e["kind"] == "fact"]
    assert len(facts) > 300
    for e in facts:
        t = town_of(e["user"])
        assert re.search(rf"\b{t['town']}\b", e["assistant"]), e  # (a town's name can be another's river)
        town, attr = fact_of(e)  # the right value of the asked town...
        others = {u[k] for u in WORLD for k in ("river", "mayor")} - {t["town"], t["river"], t["mayor"]}
        assert not any(re.search(rf"\b{o}\b", e["assistant"]) for o in others), e  # ...and no other town's
        asked = {"river": ("river", "河"), "mayor": ("mayor", "镇长"), "people": ("people", "population", "多少人"),
                 "food": ("food", "dish", "吃", "菜")}
        assert any(w in e["user"] for w in asked[attr]), e


@pytest.mark.parametrize("split", ["train", "test"])
def test_translation_answers_agree_with_number_words(split):
    tr = [e for e in non_reasoning_examples(1500, 8, split) if e["kind"] == "translate"]
    assert len(tr) > 200
    for e in tr:
        text = e["user"] + " " + e["assistant"]
        assert len(number_of(text)) == 1, e  # every form of the number names the same number
        n, reply = number_of(text).pop(), e["assistant"]
        forms = [str(n) in re.findall(r"\d+", reply), en_number_word(n) in re.findall(r"[a-z-]+", reply),
                 zh_number_word(n) in re.findall(r"[零一二三四五六七八九十]+", reply)]
        assert sum(forms) >= 2, e  # the reply gives the translation, not only the number back
        wanted = [form for form, words in zip(forms, [("number", "数字"), ("English", "英文"), ("Chinese", "中文")])
                  if any(w in e["user"] for w in words)]
        assert wanted == [True], e  # ...in the form the question asks for


def test_chinese_prompts_are_answered_in_chinese():
    zh = [e for e in non_reasoning_examples(1500, 9) if e["lang"] == "zh"]
    assert len(zh) > 250
    for e in zh:
        assert language_consistency(strip_names(e["assistant"]).replace("r1mini", "").replace("DeepSeek-R", ""),
                                    "zh") == 1.0, e
    en = [e for e in non_reasoning_examples(1500, 9) if e["lang"] == "en" and e["kind"] != "translate"]
    assert all(language_consistency(e["assistant"], "en") == 1.0 for e in en)


def test_reference_reply():
    for p in general_prompts(300, 10):
        reply = reference_reply(p)
        assert reply == reference_reply(p["user"])
        assert reply.startswith(("I can't help with that", "这个我不能帮忙")) == (p["kind"] == "unsafe")
    e = non_reasoning_examples(20, 11)
    assert [reference_reply(x["user"]) for x in e] == [x["assistant"] for x in e]
    with pytest.raises(KeyError):
        reference_reply({"user": "What is the capital of France?"})


def swap_fact(reply: str, prompt: str, u: dict, attr: str) -> str:
    """reply with town u's value of attr replaced by that of the town the prompt asks about."""
    t = town_of(prompt)
    for k in ("food", "zh_food") if attr == "food" else (attr,):
        reply = re.sub(rf"(?<![A-Za-z0-9]){re.escape(str(u[k]))}(?![A-Za-z0-9])", str(t[k]), reply)
    return reply


def swap_number(reply: str, m: int, n: int) -> str:
    """reply with every form of the number m replaced by the same form of n."""
    reply = re.sub(r"\d+", lambda x: str(n) if x.group() == str(m) else x.group(), reply)
    reply = re.sub(r"[a-z]+(?:-[a-z]+)?", lambda x: en_number_word(n) if x.group() == en_number_word(m)
                   else x.group(), reply)
    return re.sub(r"[零一二三四五六七八九十]+", lambda x: zh_number_word(n) if x.group() == zh_number_word(m)
                  else x.group(), reply)


def test_preference_pairs():
    pairs = preference_pairs(3000, 12)
    kinds = Counter(p["kind"] for p in pairs)
    assert set(kinds) == set(NEGATIVES)
    assert 0.16 < kinds["compliance"] / len(pairs) < 0.24
    for p in pairs:
        assert p["chosen"] != p["rejected"]
        assert p["chosen"] == reference_reply(p["prompt"])
        refusal = p["chosen"].startswith(("I can't help with that", "这个我不能帮忙"))
        assert refusal == (p["kind"] == "compliance")
        if p["kind"] == "wrong_fact":  # polite and well-formed: the chosen reply with only the fact swapped
            if p["topic"] == "fact":
                swaps = {swap_fact(p["rejected"], p["prompt"], u, a) for u in WORLD for a in FACTS}
                assert p["chosen"] in swaps, p
            else:
                n = min(number_of(p["prompt"]))
                assert any(swap_number(p["rejected"], m, n) == p["chosen"] for m in range(100) if m != n), p
        if p["kind"] == "wrong_language":
            other = "en" if p["lang"] == "zh" else "zh"
            assert language_consistency(strip_names(p["rejected"]).replace("r1mini", ""), other) > 0.5, p
    one = preference_pairs(200, 13, negatives=("rude",))
    assert {p["kind"] for p in one} == {"rude"}
    assert {p["kind"] for p in preference_pairs(100, 13, negatives=("compliance",))} == {"compliance"}
