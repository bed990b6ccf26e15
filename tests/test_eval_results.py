"""Results in the Hub: evaluate_iteration on a model repo of the local Hub, then its card's model-index,
the raw files (one commit), replacement on re-evaluation, and the run-level plot."""

from __future__ import annotations

import pytest

from sppo_hub.evaluation import EvalConfig, evaluate_iteration, plot_run_history

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_eval_config_rejects_unknown_benchmark():
    with pytest.raises(ValueError, match="eval.benchmarks: unknown \\['arena'\\]"):
        EvalConfig(benchmarks=["arena"])


def test_missing_judge_key_fails_before_generation(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEYS", raising=False)
    config = EvalConfig(benchmarks=["alpaca_eval", "mt_bench"], out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        evaluate_iteration(str(tmp_path / "no-model-needed-yet"), config)
    assert not any(tmp_path.iterdir())


def test_evaluate_iteration_publishes_to_model_card(local_hub, tiny_model_dir, shared_data_dir, tmp_path):
    from huggingface_hub import ModelCard

    api = local_hub.api
    repo_id = f"{local_hub.user}/eval-iter1"
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(tiny_model_dir), commit_message="model")
    n_commits = len(api.list_repo_commits(repo_id))

    config = EvalConfig(
        benchmarks=["alpaca_eval", "mt_bench"], out_dir=str(tmp_path / "eval"), max_new_tokens=8,
        alpaca_reference_file=str(shared_data_dir / "alpaca_eval" / "gpt4_1106_preview_reference_outputs.json"),
        alpaca_max_instances=3, local_judge={"type": "llm", "model": str(tiny_model_dir), "device": "cpu"},
        mt_bench_data_dir=str(shared_data_dir / "mt_bench"), mt_bench_max_questions=2,
        mt_bench_local_judge_model=str(tiny_model_dir), mt_bench_judge_max_new_tokens=8)
    # The model is read from the Hub repo itself (publish=True: results go to the same repo).
    results = evaluate_iteration(repo_id, config, publish=True, iteration=1)
    assert results["alpaca_eval"]["n_total"] == 3 and results["mt_bench"]["n_judgments"] == 4
    assert len(api.list_repo_commits(repo_id)) == n_commits + 1  # card + files in one commit

    card = ModelCard.load(repo_id)
    by_metric = {r.metric_type: r for r in card.data.eval_results}
    wr = by_metric["win_rate"]
    assert wr.dataset_type == "tatsu-lab/alpaca_eval" and wr.metric_value == pytest.approx(
        results["alpaca_eval"]["win_rate"], abs=1e-4)
    assert "LOCAL ESTIMATE" in wr.metric_name and "LOCAL ESTIMATE" in wr.source_name
    assert wr.source_url.endswith(f"{repo_id}/tree/main/eval_results/iter1")
    if results["mt_bench"]["overall"] is None:  # the tiny random judge wrote no parseable [[rating]]
        assert "mt_bench_score" not in by_metric
    files = set(api.list_repo_files(repo_id))
    assert {"eval_results/iter1/alpaca_eval/model_outputs.json", "eval_results/iter1/alpaca_eval/annotations.json",
            "eval_results/iter1/alpaca_eval/metrics.json", "eval_results/iter1/alpaca_eval/leaderboard.csv",
            "eval_results/iter1/mt_bench/judgments.jsonl", "eval_results/iter1/mt_bench/radar.png"} <= files
    assert "model.safetensors" in files  # the model itself is untouched

    # Re-evaluating replaces the model-index entries instead of piling them up.
    evaluate_iteration(repo_id, EvalConfig(**{**config.__dict__, "benchmarks": ["alpaca_eval"]}),
                       publish=True, iteration=1)
    card = ModelCard.load(repo_id)
    assert [r.metric_type for r in card.data.eval_results].count("win_rate") == 1


def test_run_history_plot(tmp_path):
    history = [{"iteration": i, "alpaca_eval": {"win_rate": w}, "mt_bench": {"overall": s}}
               for i, w, s in [(0, 14.7, 6.1), (1, 23.0, 6.5), (2, 28.5, 6.8), (3, 32.2, 7.0)]]
    path = plot_run_history(history, tmp_path / "run.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
