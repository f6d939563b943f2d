"""Tests for r1mini.formats: the chat format's token ids and loss mask, the R1-Zero template, the reasoning
reply, and the prompt and stop tokens that training and evaluation build from them."""

import pytest

from r1mini.formats import (ZERO_TEMPLATE, chat_ids, prompt_ids, reasoning_reply, stop_ids, zero_completion,
                            zero_prompt)
from r1mini.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(["What is 2 + 3? <think> 2 + 3 = 5. </think> The answer is <answer> 5 </answer>"] * 30, 270)


def test_chat_ids_mask_covers_exactly_the_reply(tok):
    ids, mask = chat_ids(tok, "What is 2 + 3?", " Hello there")
    prompt, _ = chat_ids(tok, "What is 2 + 3?")
    assert ids[:len(prompt)] == prompt
    assert prompt[0] == tok.special("<|user|>") and prompt[-1] == tok.special("<|assistant|>")
    assert mask == [False] * len(prompt) + [True] * (len(ids) - len(prompt))
    assert ids[-1] == tok.special("<|end|>")
    assert tok.decode(ids[len(prompt):-1]) == " Hello there"


def test_zero_template_and_reasoning_reply_by_hand():
    assert zero_prompt("What is 2 + 3?") == ZERO_TEMPLATE.replace("{question}", "What is 2 + 3?")
    assert zero_prompt("What is 2 + 3?").endswith("User: What is 2 + 3? Assistant:")
    assert zero_completion("2 + 3 = 5.", "5") == " <think> 2 + 3 = 5. </think> <answer> 5 </answer>"
    assert reasoning_reply("2 + 3 = 5.", "5", "en") == " <think> 2 + 3 = 5. </think> The answer is <answer> 5 </answer>"
    assert reasoning_reply("2 + 3 = 5。", "5", "zh") == " <think> 2 + 3 = 5。 </think> 答案是 <answer> 5 </answer>"


def test_prompt_and_stop_ids_of_each_format(tok):
    end, eot = tok.special("<|end|>"), tok.eot_id
    assert end != eot
    # the chat format (R1 and later) stops at <|end|>, then at end of text
    assert stop_ids(tok, chat=True) == [end, eot]
    assert prompt_ids(tok, "What is 2 + 3?", chat=True) == (chat_ids(tok, "What is 2 + 3?")[0], [end, eot])
    # the R1-Zero template is plain text that stops at end of text
    assert stop_ids(tok, chat=False) == [eot]
    assert prompt_ids(tok, "What is 2 + 3?", chat=False) == (tok.encode(zero_prompt("What is 2 + 3?")), [eot])
