"""MT-Bench on the current `openai` client: answers with FastChat's settings, single-answer grading.

FastChat's judge code needs openai<1 and its wheel ships no data, so this module re-implements the
benchmark's procedure (written here, not copied): inputs are FastChat's own files (questions, GPT-4
reference answers, judge prompts); answers use its per-category temperatures with both turns in one
conversation; grading uses its single / reference-guided / multi-turn prompts and `[[rating]]` parsing.
Judgments are cached as JSON lines, so a run whose judge endpoint went down resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

FASTCHAT_RAW = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data"
TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}
NEED_REF_CATS = ("math", "reasoning", "coding")
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")

ChatFn = Callable[[list[dict]], str]  # messages -> assistant text


class JudgeUnavailableError(RuntimeError):
    """The judge endpoint kept failing; judgments made so far are cached and a rerun resumes from them."""


def _read_jsonl(path: str | os.PathLike, what: str) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist; pass the FastChat file or a folder holding it")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{what}: {path} line {n} is not JSON ({err})") from None
    return rows


def _fetch(name: str, cache_dir: Path) -> Path:
    """Download one FastChat data file (online use); tests and offline runs pass a folder instead."""
    import urllib.request

    target = cache_dir / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(f"{FASTCHAT_RAW}/{name}", timeout=60) as r:
            data = r.read()
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target


def load_mt_bench(data_dir: str | os.PathLike | None = None, max_questions: int | None = None,
                  categories: list[str] | None = None) -> tuple[list[dict], dict[int, dict], dict[str, dict]]:
    """(questions, reference answers by question_id, judge prompts by name) from FastChat's files.

    `data_dir` holds question.jsonl, reference_answer_gpt-4.jsonl and judge_prompts.jsonl; None downloads them.
    """
    if data_dir is None:
        cache = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "sppo_hub" / "mt_bench"
        files = [_fetch("mt_bench/question.jsonl", cache), _fetch("mt_bench/reference_answer/gpt-4.jsonl", cache),
                 _fetch("judge_prompts.jsonl", cache)]
    else:
        d = Path(data_dir)
        files = [d / "question.jsonl", d / "reference_answer_gpt-4.jsonl", d / "judge_prompts.jsonl"]
    questions = _read_jsonl(files[0], "questions")
    for q in questions:
        if not {"question_id", "category", "turns"} <= set(q) or len(q["turns"]) != 2:
            raise ValueError(f"questions: row {q.get('question_id')} needs question_id, category and 2 turns")
    if categories:
        questions = [q for q in questions if q["category"] in categories]
    if max_questions is not None:
        questions = questions[: int(max_questions)]
    refs = {r["question_id"]: r for r in _read_jsonl(files[1], "reference answers")}
    prompts = {p["name"]: p for p in _read_jsonl(files[2], "judge prompts")}
    return questions, refs, prompts


def generate_answers(model: str, questions: list[dict], max_new_tokens: int = 1024, backend: str = "transformers",
                     model_id: str | None = None, **backend_kwargs) -> list[dict]:
    """Both turns per question in one conversation, with FastChat's per-category temperature."""
    from ..generation import SamplingConfig, make_generator

    def sampling(t: float) -> SamplingConfig:
        return SamplingConfig(num_samples=1, temperature=t, top_p=1.0, max_new_tokens=max_new_tokens)

    generator = make_generator(str(model), sampling(0.0), backend=backend, **backend_kwargs)
    answers = {q["question_id"]: [] for q in questions}
    groups: dict[float, list[dict]] = {}
    for q in questions:
        groups.setdefault(q.get("temperature", TEMPERATURES.get(q["category"], 0.7)), []).append(q)
    for temperature, group in groups.items():
        _set_sampling(generator, sampling(temperature))
        convs = [[{"role": "user", "content": q["turns"][0]}] for q in group]
        for turn in range(2):
            outs = generator.generate(convs)
            for q, conv, out in zip(group, convs, outs):
                answers[q["question_id"]].append(out[0].strip())
                conv.append({"role": "assistant", "content": out[0].strip()})
                if turn == 0:
                    conv.append({"role": "user", "content": q["turns"][1]})
    name = model_id or Path(str(model)).name
    return [{"question_id": q["question_id"], "model_id": name,
             "choices": [{"index": 0, "turns": answers[q["question_id"]]}], "tstamp": time.time()} for q in questions]


def _set_sampling(generator, sampling) -> None:
    """Switch a loaded generator's sampling (one model load for all categories' temperatures).

    The transformers backend reads `.sampling` per call; the vLLM one precomputes SamplingParams, rebuilt here.
    """
    generator.sampling = sampling
    if hasattr(generator, "params") and hasattr(generator, "llm"):
        from ..generation.vllm_backend import import_vllm, vllm_sampling_kwargs

        vllm = import_vllm()
        stops = list(generator.params[0].stop_token_ids or [])  # the backend's own end-of-turn ids
        generator.params = [vllm.SamplingParams(**kw) for kw in vllm_sampling_kwargs(sampling, stops)]


def judge_messages(question: dict, answer: dict, turn: int, prompts: dict[str, dict], ref: dict | None) -> list[dict]:
    """The FastChat single-answer judge prompt for `turn` (1 or 2), reference-guided where needed."""
    needs_ref = question["category"] in NEED_REF_CATS
    name = ("single-math-v1" if needs_ref else "single-v1") + ("-multi-turn" if turn == 2 else "")
    p = prompts[name]
    a = answer["choices"][0]["turns"]
    kwargs = {}
    if needs_ref:
        if ref is None:
            raise ValueError(f"reference answers: none for question {question['question_id']} ({question['category']})")
        rt = ref["choices"][0]["turns"]
        kwargs = {"ref_answer_1": rt[0], "ref_answer_2": rt[1]} if turn == 2 else {"ref_answer_1": rt[0]}
    if turn == 1:
        text = p["prompt_template"].format(question=question["turns"][0], answer=a[0], **kwargs)
    else:
        text = p["prompt_template"].format(question_1=question["turns"][0], question_2=question["turns"][1],
                                           answer_1=a[0], answer_2=a[1], **kwargs)
    return [{"role": "system", "content": p["system_prompt"]}, {"role": "user", "content": text}]


def parse_rating(judgment: str) -> float:
    """FastChat's parse: [[r]], else [r]; -1 when there is none (counted as unparseable)."""
    m = _RATING.search(judgment) or _RATING_BACKUP.search(judgment)
    return float(m.group(1)) if m else -1.0


def endpoint_chat(base_url: str | None, model: str, api_key_env: str = "OPENAI_API_KEY", retries: int = 3,
                  timeout: float = 120.0, max_tokens: int = 2048) -> ChatFn:
    """A judge through an OpenAI-compatible endpoint (temperature 0).

    The `openai` client retries connection errors, timeouts, 408/409/429 and 5xx itself (`retries`
    times, exponential backoff with jitter, Retry-After honoured); what still fails stops the run
    with JudgeUnavailableError, the judgments made so far staying cached.
    """
    import openai

    key = os.environ.get(api_key_env)
    if not key and base_url is None:
        raise ValueError(f"judge: the OpenAI API needs ${api_key_env}; export it, or pass --base-url for an "
                         "OpenAI-compatible endpoint, or --local-judge-model for a local chat model")
    client = openai.OpenAI(base_url=base_url, api_key=key or "EMPTY", max_retries=int(retries), timeout=timeout)
    where = f"{base_url or 'the OpenAI API'} ({model})"

    def chat(messages: list[dict]) -> str:
        try:
            r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=max_tokens)
        except openai.APIStatusError as err:
            if err.status_code in (408, 409, 429) or err.status_code >= 500:
                raise JudgeUnavailableError(f"judge: {where} failed {retries + 1} times ({err}); judgments so far "
                                            "are cached: rerun the same command to resume") from err
            raise JudgeUnavailableError(f"judge: {where} refused the request ({err}); check --judge-model, "
                                        f"--base-url and ${api_key_env}") from err
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            raise JudgeUnavailableError(f"judge: {where} failed {retries + 1} times ({err}); judgments so far "
                                        "are cached: rerun the same command to resume") from err
        return r.choices[0].message.content or ""

    return chat


def local_chat(model: str, max_new_tokens: int = 256, **backend_kwargs) -> ChatFn:
    """A local chat model as judge (greedy), through our generation module."""
    from ..generation import SamplingConfig, make_generator

    sampling = SamplingConfig(num_samples=1, temperature=0.0, max_new_tokens=max_new_tokens)
    generator = make_generator(str(model), sampling, **backend_kwargs)
    return lambda messages: generator.generate([messages])[0][0]


def judgment_key(judge_name: str, messages: list[dict]) -> str:
    """Cache key of one judgment: a hash of the judge and the exact prompt it reads (question, answer,
    reference), so a corrected answer or reference is judged again instead of reusing a stale score."""
    text = json.dumps({"judge": judge_name, "messages": messages}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def judge_answers(questions: list[dict], answers: list[dict], refs: dict, prompts: dict, chat: ChatFn,
                  judge_name: str, cache_file: str | os.PathLike) -> list[dict]:
    """One judgment per (question, turn); cached judgments of the same content are reused, new ones
    appended as they come (a cache row without a content key, from an older version, is ignored)."""
    cache_file = Path(cache_file)
    done = {}
    if cache_file.exists():
        for row in _read_jsonl(cache_file, "judgment cache"):
            if row.get("key"):
                done[row["key"]] = row
    by_id = {a["question_id"]: a for a in answers}
    jobs = [(q, t) for q in questions for t in (1, 2)]
    out = []
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_file, "a", encoding="utf-8") as f:
        for q, turn in tqdm(jobs, desc=f"MT-Bench judging ({judge_name})", unit="turn"):
            ans = by_id[q["question_id"]]
            messages = judge_messages(q, ans, turn, prompts, refs.get(q["question_id"]))
            key = judgment_key(judge_name, messages)
            if key not in done:
                judgment = chat(messages)
                done[key] = {"key": key, "question_id": q["question_id"], "turn": turn, "model": ans["model_id"],
                             "judge": judge_name, "category": q["category"], "user_prompt": messages[-1]["content"],
                             "judgment": judgment, "score": parse_rating(judgment), "tstamp": time.time()}
                f.write(json.dumps(done[key], ensure_ascii=False) + "\n")
                f.flush()
            out.append({**done[key], "model": ans["model_id"]})
    return out


def check_answers(answers: list[dict], where: str) -> None:
    """Fail before any judging on answers MT-Bench cannot grade, naming the row and the field."""
    for n, a in enumerate(answers, 1):
        row = f"answers: {where} row {n} (question_id {a.get('question_id', '?')})" if isinstance(a, dict) \
            else f"answers: {where} row {n}"
        if not isinstance(a, dict) or "question_id" not in a:
            raise ValueError(f"{row}: 'question_id' is missing; each row is FastChat's model_answer format "
                             "{question_id, model_id, choices: [{turns: [turn 1, turn 2]}]}")
        if not isinstance(a.get("model_id"), str) or not a["model_id"]:
            raise ValueError(f"{row}: 'model_id' is missing; name the model that wrote the answers")
        choices = a.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ValueError(f"{row}: 'choices' is missing or empty; give choices: [{{turns: [turn 1, turn 2]}}]")
        turns = choices[0].get("turns")
        if not isinstance(turns, list) or len(turns) < 2:
            got = len(turns) if isinstance(turns, list) else 0
            raise ValueError(f"{row}: 'choices[0].turns' has {got} turn(s); MT-Bench needs both turns "
                             f"(turn {got + 1} is missing): regenerate the answers")
        if not all(isinstance(t, str) for t in turns[:2]):
            raise ValueError(f"{row}: 'choices[0].turns' must hold text (strings)")


def summarize(judgments: list[dict]) -> dict:
    """turn1 / turn2 / overall / per-category means over parsed scores; unparseable counted apart."""
    valid = [j for j in judgments if j["score"] >= 0]

    def mean(rows):
        return sum(r["score"] for r in rows) / len(rows) if rows else None

    cats = sorted({j["category"] for j in judgments})
    return {
        "turn1": mean([j for j in valid if j["turn"] == 1]), "turn2": mean([j for j in valid if j["turn"] == 2]),
        "overall": mean(valid), "categories": {c: mean([j for j in valid if j["category"] == c]) for c in cats},
        "n_judgments": len(judgments), "n_unparseable": len(judgments) - len(valid),
        "unparseable": [{"question_id": j["question_id"], "turn": j["turn"]} for j in judgments if j["score"] < 0],
    }


def radar_plot(categories: dict[str, float | None], path: str | os.PathLike, title: str = "MT-Bench") -> Path:
    """Per-category scores (0-10) on a radar chart PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import math

    import matplotlib.pyplot as plt

    names = list(categories)
    values = [categories[n] or 0.0 for n in names]
    angles = [2 * math.pi * i / max(len(names), 1) for i in range(len(names))]
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="polar")
    ax.plot(angles + angles[:1], values + values[:1], marker="o")
    ax.fill(angles + angles[:1], values + values[:1], alpha=0.2)
    ax.set_xticks(angles, names)
    ax.set_ylim(0, 10)
    ax.set_title(title)
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def run_mt_bench(out_dir: str | os.PathLike, model: str | None = None, answers_file: str | None = None,
                 data_dir: str | None = None, chat: ChatFn | None = None, judge_name: str = "gpt-4",
                 max_questions: int | None = None, max_new_tokens: int = 1024, model_id: str | None = None,
                 backend: str = "transformers") -> dict:
    """Answers (generated or given), judgments (cached, resumable), summary JSON and radar plot."""
    if chat is None:
        raise ValueError("judge: pass a judge (endpoint_chat(...) or local_chat(...))")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    questions, refs, prompts = load_mt_bench(data_dir, max_questions)
    answers_path = out / "model_answer.jsonl"
    if answers_file:
        answers = _read_jsonl(answers_file, "answers")
        check_answers(answers, str(answers_file))
    elif answers_path.exists():
        answers = _read_jsonl(answers_path, "answers")  # resume: answers already generated
        check_answers(answers, str(answers_path))
        wanted = model_id or (Path(str(model)).name if model else None)
        if wanted and answers and answers[0]["model_id"] != wanted:
            raise ValueError(f"answers: {answers_path} holds answers of {answers[0]['model_id']!r}, not {wanted!r}; "
                             "use another --out or delete that file to generate new answers")
    elif model:
        answers = generate_answers(model, questions, max_new_tokens, backend, model_id)
    else:
        raise ValueError("model: pass --model to generate answers or --answers FILE")
    have = {a["question_id"] for a in answers}
    missing = [q["question_id"] for q in questions if q["question_id"] not in have]
    if missing:
        raise ValueError(f"answers: no answer for question_id(s) {missing[:10]}; regenerate the answers")
    text = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers)
    if not answers_path.exists() or answers_path.read_text(encoding="utf-8") != text:
        tmp = answers_path.with_suffix(".tmp")  # the answers judged are the answers kept (corrected ones replace)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, answers_path)
    judgments = judge_answers(questions, answers, refs, prompts, chat, judge_name, out / "judgments.jsonl")
    summary = {"model": answers[0]["model_id"], "judge": judge_name, **summarize(judgments)}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    os.replace(tmp, out / "summary.json")
    radar_plot(summary["categories"], out / "radar.png", f"MT-Bench: {summary['model']}")
    return summary
