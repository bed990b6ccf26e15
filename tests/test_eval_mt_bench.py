"""MT-Bench on the real FastChat files: answers from the tiny policy, a local chat judge and an
OpenAI-compatible judge endpoint (retry, then resume from cached judgments), rating parsing."""

from __future__ import annotations

import json

import pytest

from sppo_hub.cli import main
from sppo_hub.evaluation.mt_bench import (
    TEMPERATURES,
    JudgeUnavailableError,
    endpoint_chat,
    judge_messages,
    load_mt_bench,
    parse_rating,
    run_mt_bench,
)


def test_loads_fastchat_files(mt_bench_dir):
    questions, refs, prompts = load_mt_bench(mt_bench_dir)
    assert len(questions) == 80 and {q["category"] for q in questions} == set(TEMPERATURES)
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"} <= set(prompts)
    need_ref = [q for q in questions if q["category"] in ("math", "reasoning", "coding")]
    assert all(q["question_id"] in refs for q in need_ref)


def test_judge_prompts_follow_fastchat(mt_bench_dir):
    questions, refs, prompts = load_mt_bench(mt_bench_dir)
    math_q = next(q for q in questions if q["category"] == "math")
    answer = {"question_id": math_q["question_id"], "model_id": "m", "choices": [{"turns": ["A1", "A2"]}]}
    turn2 = judge_messages(math_q, answer, 2, prompts, refs[math_q["question_id"]])
    assert turn2[0]["content"] == prompts["single-math-v1-multi-turn"]["system_prompt"]
    ref_turns = refs[math_q["question_id"]]["choices"][0]["turns"]
    assert ref_turns[1] in turn2[1]["content"] and math_q["turns"][1] in turn2[1]["content"]
    writing = next(q for q in questions if q["category"] == "writing")
    turn1 = judge_messages(writing, {**answer, "question_id": writing["question_id"]}, 1, prompts, None)
    assert "[[rating]]" in turn1[1]["content"] and "Reference" not in turn1[1]["content"]


def test_parse_rating():
    assert parse_rating("Good. Rating: [[8]]") == 8.0
    assert parse_rating("Rating: [[7.5]] then [[2]]") == 7.5
    assert parse_rating("Rating: [6]") == 6.0
    assert parse_rating("no verdict here") == -1.0


def test_end_to_end_tiny_policy_local_judge(tiny_model_dir, mt_bench_dir, tmp_path):
    """3 real questions, both turns, judged by a local (tiny, random) chat model: every verdict is
    unparseable, and the report counts them instead of dropping them."""
    from sppo_hub.evaluation.mt_bench import local_chat

    chat = local_chat(str(tiny_model_dir), max_new_tokens=8)
    summary = run_mt_bench(tmp_path, model=str(tiny_model_dir), data_dir=mt_bench_dir, chat=chat,
                           judge_name="local:tiny", max_questions=3, max_new_tokens=8, model_id="tiny")
    answers = [json.loads(line) for line in (tmp_path / "model_answer.jsonl").read_text().splitlines()]
    assert len(answers) == 3 and all(len(a["choices"][0]["turns"]) == 2 for a in answers)
    judgments = [json.loads(line) for line in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == 6 and {j["turn"] for j in judgments} == {1, 2}
    n_bad = sum(j["score"] < 0 for j in judgments)
    assert summary["n_judgments"] == 6 and summary["n_unparseable"] == n_bad
    assert len(summary["unparseable"]) == n_bad
    assert (tmp_path / "radar.png").stat().st_size > 1000
    assert json.loads((tmp_path / "summary.json").read_text())["model"] == "tiny"


def _answers(questions, path):
    rows = [{"question_id": q["question_id"], "model_id": "given-model",
             "choices": [{"index": 0, "turns": [f"answer one to {q['question_id']}", "answer two"]}]}
            for q in questions]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_endpoint_judge_scores_and_resumes_after_outage(judge_endpoint, mt_bench_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    questions, _, _ = load_mt_bench(mt_bench_dir)
    picked = [questions[0], next(q for q in questions if q["category"] == "math"), questions[-1]]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("reference_answer_gpt-4.jsonl", "judge_prompts.jsonl"):
        (data / name).write_text((mt_bench_dir / name).read_text())
    (data / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in picked))
    answers = _answers(picked, tmp_path / "answers.jsonl")
    out = tmp_path / "out"

    # A judge that fails for good after 2 judgments: the client retries, then the run stops with the 2 cached.
    chat = endpoint_chat(judge_endpoint.base_url, "judge-model", retries=1)
    calls = {"n": 0}

    def flaky(messages):
        calls["n"] += 1
        if calls["n"] == 3:
            judge_endpoint.fail_next = 10
        return chat(messages)

    with pytest.raises(JudgeUnavailableError, match="failed 2 times.*rerun the same command to resume"):
        run_mt_bench(out, answers_file=answers, data_dir=data, chat=flaky, judge_name="judge-model")
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 2
    n_requests = len(judge_endpoint.requests)

    # Endpoint back: the rerun sends only the 4 missing judgments; one transient 503 is retried.
    judge_endpoint.fail_next = 1
    judge_endpoint.reply = "Fine. Rating: [[6]]"
    summary = run_mt_bench(out, answers_file=answers, data_dir=data, chat=chat, judge_name="judge-model")
    assert len(judge_endpoint.requests) - n_requests == 4 + 1
    assert summary["n_judgments"] == 6 and summary["n_unparseable"] == 0
    # Jobs run question by question (turn 1, turn 2): the 2 cached [[7]] verdicts are question 1's.
    assert summary["turn1"] == pytest.approx((7 + 6 + 6) / 3) and summary["turn2"] == pytest.approx((7 + 6 + 6) / 3)
    assert summary["categories"]["math"] == 6.0 and summary["overall"] == pytest.approx(38 / 6)
    assert judge_endpoint.requests[0]["temperature"] == 0


def test_cli_missing_key_and_missing_answers(mt_bench_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["eval", "mt-bench", "--model", "x", "--data-dir", str(mt_bench_dir), "--out", str(tmp_path)]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    questions, _, _ = load_mt_bench(mt_bench_dir, max_questions=2)
    answers = _answers(questions[:1], tmp_path / "a.jsonl")
    code = main(["eval", "mt-bench", "--answers", str(answers), "--data-dir", str(mt_bench_dir), "--max-questions",
                 "2", "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o")])
    assert code == 2
    assert f"no answer for question_id(s) [{questions[1]['question_id']}]" in capsys.readouterr().err


def _small_set(mt_bench_dir, tmp_path, n=2):
    questions, _, _ = load_mt_bench(mt_bench_dir)
    picked = questions[:n]
    data = tmp_path / "data"
    data.mkdir()
    for name in ("reference_answer_gpt-4.jsonl", "judge_prompts.jsonl"):
        (data / name).write_text((mt_bench_dir / name).read_text())
    (data / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in picked))
    return picked, data


def test_corrected_answers_are_judged_again_and_replace_the_old_file(judge_endpoint, mt_bench_dir, tmp_path):
    """The cache is keyed by what the judge read: a rerun into the same --out with one corrected
    answer re-judges exactly that answer's turns and keeps the corrected answers file."""
    picked, data = _small_set(mt_bench_dir, tmp_path)
    answers = _answers(picked, tmp_path / "answers.jsonl")
    chat = endpoint_chat(judge_endpoint.base_url, "judge-model", retries=0)
    out = tmp_path / "out"
    first = run_mt_bench(out, answers_file=answers, data_dir=data, chat=chat, judge_name="judge-model")
    assert first["overall"] == 7.0 and len(judge_endpoint.requests) == 4
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    rows[0]["choices"][0]["turns"][0] = "a corrected first answer"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    judge_endpoint.reply = "Better. Rating: [[9]]"
    again = run_mt_bench(out, answers_file=answers, data_dir=data, chat=chat, judge_name="judge-model")
    # turn 1 and turn 2 of question 1 both show the changed first answer: 2 new judgments, 2 reused
    new = judge_endpoint.requests[4:]
    assert len(new) == 2 and all("a corrected first answer" in r["messages"][-1]["content"] for r in new)
    assert again["overall"] == pytest.approx((9 + 9 + 7 + 7) / 4)
    kept = [json.loads(line) for line in (out / "model_answer.jsonl").read_text().splitlines()]
    assert kept[0]["choices"][0]["turns"][0] == "a corrected first answer"
    # same answers again: everything comes from the cache
    run_mt_bench(out, answers_file=answers, data_dir=data, chat=chat, judge_name="judge-model")
    assert len(judge_endpoint.requests) == 6


@pytest.mark.parametrize("broken, field", [
    ({"choices": None}, "'choices' is missing"),
    ({"choices": [{"index": 0, "turns": ["only turn one"]}]}, "turn 2 is missing"),
    ({"model_id": None}, "'model_id' is missing"),
])
def test_malformed_answers_fail_before_judging(broken, field, judge_endpoint, mt_bench_dir, tmp_path, capsys):
    picked, data = _small_set(mt_bench_dir, tmp_path)
    answers = _answers(picked, tmp_path / "answers.jsonl")
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    rows[1] = {k: v for k, v in {**rows[1], **broken}.items() if v is not None}
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["eval", "mt-bench", "--answers", str(answers), "--data-dir", str(data), "--base-url",
                 judge_endpoint.base_url, "--judge-model", "judge-model", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and field in err and "row 2" in err and "Traceback" not in err
    assert judge_endpoint.requests == [] and not (tmp_path / "o" / "judgments.jsonl").exists()
