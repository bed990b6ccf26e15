"""The Gradio Space: a real app on 127.0.0.1 driven by gradio_client and headless chromium, and
`space deploy` against the local Hub. Tiny offline chat model; the judge is the tiny PairRM-architecture
ranker when its fixture exists, else a deterministic CallableJudge (both real judges of sppo_hub.judges).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sppo_hub.core.preference import pairwise_probabilities, win_rates

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def prefer_varied(prompt: str, a: str, b: str) -> float:
    """A deterministic preference: more distinct characters wins (ties 0.5); a stand-in judge."""
    da, db = len(set(a)), len(set(b))
    return 0.5 if da == db else (0.8 if da > db else 0.2)


@pytest.fixture(scope="module")
def judge_spec(request) -> tuple[str, str]:
    """(judge_type, judge) for SpaceConfig: the tiny PairRM-architecture ranker if its fixture exists."""
    try:
        return "pairrm", str(request.getfixturevalue("tiny_pairrm_dir"))
    except pytest.FixtureLookupError:
        return "callable", f"{Path(__file__).resolve()}:prefer_varied"


@pytest.fixture(scope="module")
def space_judge(judge_spec):
    """The same judge, loaded separately, to recompute the app's verdicts independently."""
    from sppo_hub.judges import JudgeConfig, load_judge

    judge_type, judge = judge_spec
    if judge_type == "callable":
        return load_judge(JudgeConfig(type="callable", callable=judge, extra={"show_progress": False}))
    return load_judge(JudgeConfig(type=judge_type, model=judge, device="cpu"))


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory):
    from sppo_hub.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama-b", seed=1)


@pytest.fixture(scope="module")
def space_app(tiny_model_dir, second_model_dir, judge_spec):
    """The app, launched once for the module (queue of 1: concurrent users must wait their turn)."""
    from gradio_client import Client

    from sppo_hub.space.config import SpaceConfig
    from sppo_hub.space.app import launch

    config = SpaceConfig(model=str(tiny_model_dir), compare_models=[str(second_model_dir)], judge_type=judge_spec[0],
                         judge=judge_spec[1], device="cpu", max_n=6, max_new_tokens=24, default_max_new_tokens=12,
                         max_input_chars=200, concurrency_limit=1)
    demo = launch(config, prevent_thread_lock=True)  # the app loads model and judge from the config itself
    try:
        yield demo, Client(demo.local_url, verbose=False), config
    finally:
        demo.close()


def _text(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def _expected_winner(judge, prompt: str, candidates: list[str]) -> tuple[int, np.ndarray]:
    table = judge.pairwise_tables([prompt], [candidates])[0]
    rates = win_rates(pairwise_probabilities(table, kind=judge.output_kind))
    return int(np.argmax(rates)), rates


def test_chat_reply_is_the_judges_winner_over_two_turns(space_app, space_judge):
    _, client, _ = space_app
    history, prompts = [], ["Hello! What is the capital of France?", "And of Italy?"]
    for turn, message in enumerate(prompts):
        history, table, box = client.predict(message, history, 5, 1.0, 12, api_name="/chat")
        assert box == "" and len(history) == 2 * (turn + 1)
        rows = table["data"]
        assert len(rows) == 5 and [r[0] for r in rows] == [1, 2, 3, 4, 5]
        candidates = [r[3] for r in rows]
        conversation = [{"role": m["role"], "content": _text(m)} for m in history[:-1]]
        judge_prompt = message if turn == 0 else "\n\n".join(
            f"{m['role'].capitalize()}: {m['content']}" for m in conversation)
        best, rates = _expected_winner(space_judge, judge_prompt, candidates)
        assert _text(history[-1]) == candidates[best]
        assert np.isclose(rates[best], rates.max()) and rows[0][3] == candidates[best]
        np.testing.assert_allclose([r[1] for r in rows], np.round(rates, 4), atol=1e-4)
        assert [r[2] for r in rows].count("yes") == 1


@pytest.mark.parametrize(
    ("message", "n", "max_new", "needle"),
    [("   ", 3, 8, "Empty message"), ("x" * 201, 3, 8, "Message too long: 201 characters, the limit is 200"),
     # the sliders' own bounds check (gradio) answers before the handler's, with the cap in the message
     ("hi", 7, 8, "greater than maximum value 6"), ("hi", 2, 25, "greater than maximum value 24")],
)
def test_bad_input_is_a_message_not_a_traceback(space_app, message, n, max_new, needle):
    from gradio_client.exceptions import AppError

    _, client, _ = space_app
    with pytest.raises(AppError, match=needle.replace("(", r"\(").replace(")", r"\)")) as info:
        client.predict(message, [], n, 0.7, max_new, api_name="/chat")
    assert "Traceback" not in str(info.value)


def test_concurrent_users_wait_in_the_queue(space_app):
    _, client, _ = space_app
    jobs = [client.submit(f"user {i} says hi", [], 3, 0.9, 8, api_name="/chat") for i in range(4)]
    for i, job in enumerate(jobs):
        history, table, _ = job.result(timeout=120)
        assert _text(history[0]) == f"user {i} says hi"
        assert _text(history[1]) in [r[3] for r in table["data"]] and len(table["data"]) == 3


def test_compare_tab_shows_the_judges_preference(space_app, space_judge, tiny_model_dir, second_model_dir):
    _, client, _ = space_app
    a, b, verdict = client.predict("Write a poem about the sea.", str(second_model_dir), str(tiny_model_dir), 0.8, 12,
                                   api_name="/compare")
    table = space_judge.pairwise_tables(["Write a poem about the sea."], [[a, b]])[0]
    p_a = pairwise_probabilities(table, kind=space_judge.output_kind)[0, 1]
    assert f"P(A beats B) = {p_a:.3f}" in verdict
    assert f"Judge prefers {'A' if p_a >= 0.5 else 'B'}" in verdict


def test_missing_model_is_reported_in_the_ui(tmp_path, space_judge):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from sppo_hub.space.config import SpaceConfig
    from sppo_hub.space.app import launch

    config = SpaceConfig(model=str(tmp_path / "no-such-model"), judge_type="callable", judge="unused:x_never_loaded")
    demo = launch(config, judge=space_judge, prevent_thread_lock=True)
    try:
        with pytest.raises(AppError, match="could not be loaded.*Pass --model a local model folder or a Hub repo id"):
            Client(demo.local_url, verbose=False).predict("hello", [], 2, 0.7, 8, api_name="/chat")
    finally:
        demo.close()


def test_generation_is_time_limited_and_history_fits_the_budget(tiny_model_dir):
    from sppo_hub.space.chat import ChatModel

    chat = ChatModel(str(tiny_model_dir), device="cpu", max_time=1e-6)
    tok = chat.tokenizer
    limited = chat.sample([{"role": "user", "content": "Tell a long story"}], 2, 1.0, 400)
    # MaxTimeCriteria stops after the first step: one new token each (a few characters at most), not 400
    assert len(limited) == 2 and all(len(c) <= 16 for c in limited)
    turns = []
    for i in range(6):
        turns += [{"role": "user", "content": f"question {i} " * 10}, {"role": "assistant", "content": "answer " * 10}]
    turns.append({"role": "user", "content": "last question"})
    full = len(tok.apply_chat_template(turns, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    kept, dropped = chat.fit_history(turns, full // 2)
    assert dropped >= 3 and kept[-1]["content"] == "last question" and kept[0]["role"] == "user"
    assert len(tok.apply_chat_template(kept, add_generation_prompt=True, tokenize=True,
                                       return_dict=True)["input_ids"]) <= full // 2
    assert chat.fit_history(turns, full) == (turns, 0)


def test_space_config_from_env_and_bad_values(tmp_path):
    from sppo_hub.space.config import SpaceConfig

    cfg_file = tmp_path / "sppo_space.json"
    cfg_file.write_text(json.dumps({"model": "org/run-iter3", "judge_type": "pairrm"}))
    cfg = SpaceConfig.from_env({"SPPO_MAX_N": "3", "SPPO_COMPARE_MODELS": "org/run-iter1, org/run-iter2"},
                               config_file=cfg_file)
    assert (cfg.model, cfg.max_n, cfg.default_n) == ("org/run-iter3", 3, 3)
    assert cfg.all_models == ["org/run-iter3", "org/run-iter1", "org/run-iter2"]
    assert SpaceConfig.from_env({"SPPO_MODEL": "me/other"}, config_file=cfg_file).model == "me/other"
    env = {"SPPO_MODEL": "", "SPPO_TIME_LIMIT_S": "2.5"}  # an empty variable keeps the file's value
    assert SpaceConfig.from_env(env, config_file=cfg_file).time_limit_s == 2.5
    with pytest.raises(ValueError, match="SPPO_MODEL: no model configured"):
        SpaceConfig.from_env({}, config_file=tmp_path / "absent.json")
    with pytest.raises(ValueError, match="space.max_n: must be >= 1"):
        SpaceConfig(model="m", max_n=0)
    with pytest.raises(ValueError, match="judge.type: unknown judge type"):
        SpaceConfig(model="m", judge_type="oracle")
    cfg_file.write_text(json.dumps({"model": "m", "modle": "typo"}))
    with pytest.raises(ValueError, match=r"unknown keys \['modle'\]"):
        SpaceConfig.from_env({}, config_file=cfg_file)


@pytest.mark.browser
def test_browser_chat_in_headless_chromium(space_app, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    demo, _, _ = space_app
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                                        args=args, headless=True,
                                                        viewport={"width": 1100, "height": 900})
        try:
            page = browser.new_page()
            page.goto(demo.local_url, wait_until="networkidle")
            box = page.locator("#sppo-msg textarea")
            box.fill("Hello! What is the capital of France?")
            box.press("Enter")
            bot = page.locator("#sppo-chatbot .message.bot, #sppo-chatbot [data-testid='bot']").first
            bot.wait_for(state="visible", timeout=60_000)
            answer = bot.inner_text().strip()
            page.get_by_text("All candidates and their win rates").click()
            page.locator("#sppo-cands").wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(500)  # let the table finish laying out before the screenshot
            shot = tmp_path / "space.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert answer and shot.stat().st_size > 10_000
    if os.environ.get("SPPO_UPDATE_SCREENSHOT") == "1":  # refresh the README's screenshot
        shutil.copy(shot, REPO_ROOT / "docs" / "img" / "space.png")


def _tiny_model_on_hub(local_hub, model_dir, repo_id):
    local_hub.api.create_repo(repo_id, exist_ok=True)
    local_hub.api.upload_folder(repo_id=repo_id, folder_path=str(model_dir), commit_message="tiny model")
    return repo_id


def test_deploy_to_the_local_hub(local_hub, tiny_model_dir, tmp_path, capsys, monkeypatch):
    from huggingface_hub import SpaceCard, snapshot_download

    from sppo_hub.cli import main

    model = _tiny_model_on_hub(local_hub, tiny_model_dir, "sppo-org/tiny-run-iter3")
    space = "sppo-org/tiny-run-chat"
    monkeypatch.setenv("SPPO_TEST_SECRET", "s3cret-value-never-printed")
    argv = ["space", "deploy", "--model", model, "--space", space, "--secret", "SPPO_TEST_SECRET",
            "--hardware", "cpu-upgrade", "--endpoint", local_hub.url]
    assert main(argv + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "app.py" in out and "sppo_hub/space/app.py" in out and "SPPO_MODEL=sppo-org/tiny-run-iter3" in out
    assert "s3cret" not in out and not local_hub.api.repo_exists(space, repo_type="space")

    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"spaces/{space}" in captured.out and "s3cret" not in captured.out + captured.err
    api = local_hub.api
    commits = api.list_repo_commits(space, repo_type="space")
    assert len(commits) == 2  # the initial commit + ONE deploy commit
    files = set(api.list_repo_files(space, repo_type="space"))
    assert {"app.py", "requirements.txt", "README.md", "sppo_space.json", "sppo_hub/space/app.py",
            "sppo_hub/judges/base.py", "sppo_hub/core/preference.py"} <= files
    assert not any("__pycache__" in f for f in files)
    local = Path(snapshot_download(space, repo_type="space", local_dir=tmp_path / "space"))
    meta = SpaceCard.load(local / "README.md").data
    assert (meta.sdk, meta.app_file, meta.sdk_version) == ("gradio", "app.py", "6.31.0")
    assert model in meta.models
    assert json.loads((local / "sppo_space.json").read_text())["model"] == model
    variables = api.get_space_variables(space)
    assert variables["SPPO_MODEL"].value == model and variables["SPPO_JUDGE_TYPE"].value == "pairrm"

    # The downloaded Space works: its app.py, with its bundled sppo_hub, loads the model from the Hub and answers.
    check = ("import sys, runpy; sys.path.insert(0, '.'); g = runpy.run_path('app.py', run_name='space'); "
             "import os, sppo_hub, sppo_hub.space.app as s; "
             "assert sppo_hub.__file__.startswith(os.getcwd()), sppo_hub.__file__; "
             "res = g['demo'].sppo_resources; print('MODEL', res.model(res.config.model).name); "
             "print('ANSWER', repr(s.best_of_n(res, [{'role': 'user', 'content': 'hi'}], 1, 0.7, 8)[1][0]))")
    env = dict(os.environ, HF_ENDPOINT=local_hub.url, HF_HUB_DISABLE_XET="1", HF_TOKEN=local_hub.token,
               HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH="")
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.run([sys.executable, "-c", check], cwd=local, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"MODEL {model}" in proc.stdout and "ANSWER" in proc.stdout

    # Redeploying replaces the package copy: a module that no longer exists leaves the Space too.
    api.upload_file(path_or_fileobj=b"x = 1\n", path_in_repo="sppo_hub/removed_module.py", repo_id=space,
                    repo_type="space")
    assert main(argv) == 0
    files = set(api.list_repo_files(space, repo_type="space"))
    assert "sppo_hub/removed_module.py" not in files and "sppo_hub/space/app.py" in files
    assert len(api.list_repo_commits(space, repo_type="space")) == 4


def test_deploy_unknown_model_or_bad_input_is_a_clear_error(local_hub, tiny_model_dir, capsys):
    from sppo_hub.cli import main

    assert main(["space", "deploy", "--model", str(tiny_model_dir), "--dry-run"]) == 2
    assert "is a local path; a Space loads models from the Hub" in capsys.readouterr().err

    assert main(["space", "deploy", "--model", "sppo-org/does-not-exist-iter3", "--endpoint", local_hub.url]) == 2
    err = capsys.readouterr().err
    assert "--model: no model repo 'sppo-org/does-not-exist-iter3'" in err
    assert main(["space", "deploy", "--model", "sppo-org/x", "--hardware", "quantum-9000", "--dry-run",
                 "--endpoint", local_hub.url]) == 2
    assert "--hardware: unknown 'quantum-9000'" in capsys.readouterr().err
    assert main(["space", "deploy", "--model", "sppo-org/x", "--secret", "SPPO_SURELY_UNSET_VAR", "--dry-run"]) == 2
    assert "set the environment variable SPPO_SURELY_UNSET_VAR" in capsys.readouterr().err


def test_space_run_cli_serves_the_app(tiny_model_dir):
    """`sppo-hub space run` in a child process: the same app, answering a client, judged by a callable judge."""
    import socket
    import time

    from gradio_client import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "sppo_hub", "space", "run", "--model", str(tiny_model_dir), "--port", str(port),
           "--judge", "callable", "--judge-model", f"{Path(__file__).resolve()}:prefer_varied", "--max-n", "4",
           "--max-new-tokens", "16"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.time() + 120
        while True:
            try:
                client = Client(url, verbose=False)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"`sppo-hub space run` did not come up:\n{proc.stdout.read()[-3000:]}")
                time.sleep(0.5)
        history, table, _ = client.predict("Hello!", [], 3, 0.9, 8, api_name="/chat")
        candidates = [row[3] for row in table["data"]]
        # the random tiny model's text can hold tabs, which Gradio's chatbot returns as spaces: compare the words
        assert len(candidates) == 3 and _text(history[-1]).split() == table["data"][0][3].split()
        # prefer_varied: the candidate with the most distinct characters beats every other one
        assert len(set(table["data"][0][3])) == max(len(set(c)) for c in candidates)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _run_folder(tiny_model_dir, tmp_path, judge: dict):
    """A copy of the tiny model with the run manifest a `sppo-hub run` checkpoint carries."""
    folder = tmp_path / "iter1-policy"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "config": {"judge": judge}}))
    return folder


def test_default_judge_is_the_runs_and_errors_are_whole(tiny_model_dir, tmp_path, local_hub):
    from sppo_hub.space.app import Resources
    from sppo_hub.space.config import SpaceConfig

    spec = f"{Path(__file__).resolve()}:prefer_varied"
    folder = _run_folder(tiny_model_dir, tmp_path, {"type": "callable", "callable": spec, "batch_size": 4})
    config = SpaceConfig(model=str(folder), device="cpu")
    judge_config, label = config.resolve_judge()
    assert (judge_config.type, judge_config.callable) == ("callable", spec) and "the run's judge" in label
    assert Resources(config).judge().name.endswith("prefer_varied")
    # on the Hub the manifest sits in the repo's sppo/ folder
    api = local_hub.api
    api.create_repo("sppo-user/space-run-iter1")
    api.upload_file(path_or_fileobj=(folder / "manifest.json").read_bytes(), path_in_repo="sppo/manifest.json",
                    repo_id="sppo-user/space-run-iter1")
    assert SpaceConfig(model="sppo-user/space-run-iter1").resolve_judge()[0].callable == spec
    # no run manifest: PairRM, which cannot load offline -> one whole, actionable message
    res = Resources(SpaceConfig(model=str(tiny_model_dir), device="cpu"))
    with pytest.raises(RuntimeError) as info:
        res.judge()
    message = str(info.value)
    assert message.startswith("Judge pairrm") and "\n" not in message
    assert message.endswith("Pass --judge (the type) and --judge-model to choose another judge (in a Space: the "
                            "SPPO_JUDGE_TYPE and SPPO_JUDGE variables).")


def test_space_run_fails_clearly_instead_of_serving(tiny_model_dir, capsys):
    from sppo_hub.cli import main

    assert main(["space", "run", "--model", "/nonexistent", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "--model: /nonexistent does not exist; pass a local model folder or a Hub repo id" in err
    assert "Traceback" not in err
    # the model loads but its judge cannot (PairRM offline): an error and exit 2, no server
    assert main(["space", "run", "--model", str(tiny_model_dir), "--device", "cpu", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "Judge pairrm" in err and "Pass --judge (the type) and --judge-model" in err and "Traceback" not in err
    assert main(["space", "run", "--model", str(tiny_model_dir), "--time-limit", "0"]) == 2
    assert "--time-limit: must be > 0 seconds" in capsys.readouterr().err


def test_answers_cut_by_a_limit_are_flagged(tiny_model_dir, space_judge):
    from sppo_hub.space.app import Resources, best_of_n, cut_notice
    from sppo_hub.space.config import SpaceConfig

    messages = [{"role": "user", "content": "Tell a long story"}]
    timed = SpaceConfig(model=str(tiny_model_dir), device="cpu", time_limit_s=1e-6, max_new_tokens=400)
    _, cands, _, _, cuts = best_of_n(Resources(timed, space_judge), messages, 2, 1.0, 400)
    assert len(cands) == 2 and cuts == ["time limit", "time limit"]
    assert "cut at the 1e-06 s time limit; raise it with --time-limit" in cut_notice(cuts[0], timed, 400)
    roomy = SpaceConfig(model=str(tiny_model_dir), device="cpu", time_limit_s=120)
    _, _, _, _, cuts = best_of_n(Resources(roomy, space_judge), messages, 3, 1.0, 4)
    # the random tiny model rarely says its end-of-turn token within 4 tokens: cut by the token cap
    assert cuts.count("max new tokens") >= 2 and set(cuts) <= {"max new tokens", ""}
    assert cut_notice("max new tokens", roomy, 4) == ("The answer was cut at 4 new tokens; raise 'max new tokens' "
                                                      "for a longer answer.")
    assert cut_notice("", roomy, 4) == ""
