"""Cards render valid metadata and their plots, from the packaged templates."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard, EvalResult, ModelCard

from sppo_hub.hub import cards

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table():
    return datasets.Dataset.from_dict({
        "prompt_id": [0, 1], "prompt": ["a?", "b?"], "responses": [["x", "y"], ["z", "w"]],
        "prob_matrix": [[[0.5, 0.8], [0.2, 0.5]], [[0.5, 0.4], [0.6, 0.5]]],
        "win_rates": [[0.65, 0.35], [0.45, 0.55]], "raw_table": [[[0.0, 1.0], [-1.0, 0.0]], [[0.0, 0.2], [-0.2, 0.0]]],
    })


def test_templates_ship_with_the_package():
    folder = cards.templates_dir()
    assert {"dataset_card.md", "model_card.md"} <= {p.name for p in folder.iterdir()}
    packaged = Path(cards.__file__).resolve().parents[1] / "resources" / "cards"
    assert (packaged / "model_card.md").read_text() == (folder / "model_card.md").read_text()


def test_dataset_card_metadata_plot_and_counts(tmp_path):
    table = _table()
    info = cards.DatasetCardInfo(run_name="r", iteration=2, model="org/r-iter1", model_revision="abc123",
                                 prompt_set="org/prompts", num_samples=2, sampling={"temperature": 0.7},
                                 judge="PairRM", probability_rule="mean_score")
    card = cards.render_dataset_card(info, "org/r-iter2-data", {"table": table}, tmp_path,
                                     configs_yaml=[{"config_name": "table", "data_files": "data/table/*.parquet"}])
    reloaded = DatasetCard(str(card))  # parse the rendered text back: the YAML must be valid
    assert reloaded.data.license == "apache-2.0" and "sppo" in reloaded.data.tags
    assert reloaded.data.sppo["iteration"] == 2 and reloaded.data.sppo["model_revision"] == "abc123"
    assert reloaded.data.configs[0]["config_name"] == "table"
    text = reloaded.text
    assert "| `table` | train | 2 |" in text and "sigmoid" in text and "arXiv:2405.00675" in text
    assert "`prob_matrix`" in text and "assets/win_rates.png" in text
    assert (tmp_path / "assets" / "win_rates.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="probability_rule"):
        cards.render_dataset_card({**info.__dict__, "probability_rule": "median"}, "org/x", {"table": table}, tmp_path)


def test_model_card_lineage_model_index_and_adapter(tmp_path):
    info = {"run_name": "r", "iteration": 3, "base_model": "org/r-iter2", "datasets": ["org/r-iter3-data"],
            "lineage": ["org/base", "org/r-iter1", "org/r-iter2"], "hyperparameters": {"eta": 1000.0, "beta": 0.001, "hub_token": "hf_should_not_render"},
            "loss_history": [0.5, 0.4, 0.45], "win_rates_by_iteration": [(1, 0.55), (2, 0.6)],
            "eval_results": [dict(task_type="text-generation", dataset_type="tatsu-lab/alpaca_eval",
                                  dataset_name="AlpacaEval 2.0", metric_type="lc_win_rate", metric_value=21.5)]}
    card = cards.render_model_card(info, "org/r-iter3", tmp_path, adapter=True)
    reloaded = ModelCard(str(card))
    data = reloaded.data
    assert data.base_model == "org/r-iter2" and data.library_name == "peft" and data.pipeline_tag == "text-generation"
    assert data.eval_results == [EvalResult(task_type="text-generation", dataset_type="tatsu-lab/alpaca_eval",
                                            dataset_name="AlpacaEval 2.0", metric_type="lc_win_rate", metric_value=21.5)]
    assert data.model_name == "r-iter3"
    text = reloaded.text
    assert "AutoPeftModelForCausalLM" in text and "sppo-hub space deploy --model org/r-iter3" in text
    assert "| 2 | [org/r-iter2]" in text and "| `eta` | `1000` |" in text and "hf_should_not_render" not in text
    for png in ("loss_curve.png", "win_rate_by_iteration.png"):
        assert (tmp_path / "assets" / png).read_bytes().startswith(PNG_MAGIC)
    # a local path as base model is not Hub metadata (the Hub would reject it)
    local = cards.render_model_card({**info, "base_model": "/tmp/ckpt", "eval_results": []}, "org/r-iter3", tmp_path)
    assert ModelCard(str(local)).data.base_model is None and "model-index" not in str(local)


def test_rendering_is_deterministic(tmp_path):
    info = {"run_name": "r", "iteration": 1, "base_model": "org/base", "loss_history": [1.0, 0.5]}
    a = cards.render_model_card(info, "org/r-iter1", tmp_path / "a")
    b = cards.render_model_card(info, "org/r-iter1", tmp_path / "b")
    assert str(a) == str(b)
    assert (tmp_path / "a/assets/loss_curve.png").read_bytes() == (tmp_path / "b/assets/loss_curve.png").read_bytes()


def test_card_yaml_passes_the_hub_validate_endpoint(local_hub, tmp_path):
    card = cards.render_model_card({"run_name": "r", "iteration": 1, "base_model": "org/base"}, "org/r-iter1", tmp_path)
    card.validate()  # POST /api/validate-yaml on the active endpoint
    from huggingface_hub.utils import get_session

    bad = get_session().post(f"{local_hub.url}/api/validate-yaml", json={"content": "---\n[not yaml\n---\n",
                                                                         "repoType": "model"})
    assert bad.status_code == 400 and "Invalid YAML" in bad.json()["error"]
