"""The rule-based correctness judge: its checker, its preference rule, and loading it from a recipe's judge section."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from sppo_hub.judges import JudgeConfig, load_judge
from sppo_hub.judges.rule_based import CorrectnessJudge, arithmetic_reference, extract_answer, is_correct
from sppo_hub.core.preference import pairwise_probabilities, win_rates


@pytest.mark.parametrize("prompt, value", [
    ("What is 17 + 25? Answer with the number.", 42),
    ("What is 8 x 7? Answer with the number.", 56),
    ("What is 9 * 6?", 54),
    ("What is 5 - -3?", 8),
    ("Compute 48 / 6.", 8),
    ("What is 7 / 2?", Fraction(7, 2)),
])
def test_arithmetic_checker_computes_the_reference(prompt, value):
    assert arithmetic_reference(prompt) == value


@pytest.mark.parametrize("prompt", ["What is the capital of France?", "17 + 25 - 3", "What is 2024-11-30?",
                                    "What is 1 / 0?", "What is 3 x 4 and 5 + 6?"])
def test_arithmetic_checker_declines_what_it_cannot_verify(prompt):
    assert arithmetic_reference(prompt) is None


@pytest.mark.parametrize("response, answer", [
    ("42", 42), ("The answer is 42.", 42), ("17 + 25 = 42", 42), ("It costs 1,234 coins.", 1234),
    ("-3.50", Fraction(-7, 2)), ("Answer: 42.0", 42), ("no number here", None),
])
def test_extract_answer_reads_the_last_number(response, answer):
    assert extract_answer(response) == answer


def test_is_correct_compares_numerically():
    assert is_correct("17 + 25 = 42.", "42")
    assert is_correct("That makes 42.0", 42)
    assert not is_correct("42 + 1 = 43", "42")  # the final answer counts, not any number in it
    assert not is_correct("I do not know.", "42")


def test_judge_separates_correct_from_incorrect():
    judge = CorrectnessJudge()
    prompt = "What is 17 + 25? Answer with the number."
    right, wrong = "42", "The answer is 52."
    table = judge.pairwise_tables([prompt], [[right, wrong]])[0]
    assert table[0, 1] == 1.0 and table[1, 0] == 0.0 and table[0, 0] == 0.5
    # a long correct answer still beats a short wrong one
    long_right = "To add them, 17 + 25: 7 + 5 = 12, carry 1, 1 + 2 + 1 = 4, so the answer is 42."
    assert judge.pairwise_tables([prompt], [[long_right, "41"]])[0][0, 1] == 1.0


def test_judge_prefers_concise_among_equals_and_ties_equal_lengths():
    judge = CorrectnessJudge(concise_weight=0.25, length_scale=40)
    prompt = "What is 6 x 7?"
    short, long = "42", "Six times seven is forty-two, which we write as 42."
    p = judge.pairwise_tables([prompt], [[short, long]])[0]
    assert 0.5 < p[0, 1] < 0.75 and p[0, 1] + p[1, 0] == pytest.approx(1.0)
    assert judge.pairwise_tables([prompt], [["41", "43"]])[0][0, 1] == 0.5  # both wrong, same length


def test_win_rates_rank_correct_responses_first():
    judge = CorrectnessJudge()
    prompt = "What is 9 + 6? Answer with the number."
    responses = ["15", "9 + 6 = 15", "The answer is 14.", "To solve this we need to"]
    probs = pairwise_probabilities(judge.pairwise_tables([prompt], [responses])[0], kind="probs")
    rates = win_rates(probs)
    assert np.argmax(rates) == 0 and min(rates[0], rates[1]) > max(rates[2], rates[3])
    assert judge.accuracy([prompt], [responses]) == 0.5


def test_references_from_a_prompts_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"prompt": "How many legs does a spider have?", "answer": "8"},
            {"prompt": "What is 2 + 2?", "answer": "4"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    judge = load_judge(JudgeConfig(type="correctness", extra={"references": str(path), "checker": None}))
    assert judge.name == "rule-based correctness judge"
    assert judge.correctness(rows[0]["prompt"], ["Spiders have 8 legs.", "6"]) == [True, False]
    assert judge.correctness("Unknown question?", ["1", "2"]) == [None, None]
    strict = CorrectnessJudge(references=str(path), checker=None, require_reference=True)
    with pytest.raises(ValueError, match="no reference answer"):
        strict.pairwise_tables(["Unknown question?"], [["1", "2"]])


def test_bad_configuration_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="judge.extra.checker"):
        CorrectnessJudge(checker="algebra")
    with pytest.raises(FileNotFoundError, match="judge.extra.references"):
        CorrectnessJudge(references=str(tmp_path / "missing.jsonl"))
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    with pytest.raises(ValueError, match="column 'prompt'"):
        CorrectnessJudge(references=str(path))
    with pytest.raises(ValueError, match="correct_prob"):
        CorrectnessJudge(correct_prob=0.4)
    with pytest.raises(ValueError, match="judge.type"):
        JudgeConfig(type="corectness")


def test_space_reranking_picks_the_correct_answer():
    """What the Space does with this judge: best-of-n picks a correct candidate when there is one."""
    from sppo_hub.space.chat import rank_candidates

    candidates = ["To add these numbers we first", "The answer is 41.", "17 + 25 = 42", "42 is the answer, or 43."]
    rates = rank_candidates(CorrectnessJudge(), "What is 17 + 25? Answer with the number.", candidates)
    assert int(np.argmax(rates)) == 2
