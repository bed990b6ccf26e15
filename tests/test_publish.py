"""Publishing an SPPO iteration to the local Hub and reading it back as the next iteration would."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from huggingface_hub.errors import HfHubHTTPError

from sppo_hub.hub.publish import ArtifactConflictError, HubPublisher


def _iteration_datasets(seed: int = 0):
    from sppo_hub.core.data import build_table_dataset, build_pairs_dataset, build_triplets_dataset

    rng = np.random.default_rng(seed)
    prompts = [f"question {i}?" for i in range(4)]
    responses = [[f"answer {i}.{k}" for k in range(3)] for i in range(4)]
    tables = []
    for _ in prompts:
        t = rng.normal(size=(3, 3))
        np.fill_diagonal(t, 0.0)
        tables.append(t)
    table = build_table_dataset(prompts, responses, tables, kind="logits")
    return table, build_pairs_dataset(table), build_triplets_dataset(table)


def _data_card(t: int) -> dict:
    return dict(run_name="demo", iteration=t, model=f"sppo-org/demo-iter{t - 1}", prompt_set="sppo-org/prompts",
                num_samples=3, sampling={"temperature": 0.7, "top_p": 0.9}, judge="PairRM", probability_rule="pairwise")


def _model_card(t: int) -> dict:
    return dict(run_name="demo", iteration=t, base_model=f"sppo-org/demo-iter{t - 1}", datasets=[f"sppo-org/demo-iter{t}-data"],
                lineage=[f"sppo-org/demo-iter{i}" for i in range(t)], hyperparameters={"eta": 1000.0, "learning_rate": 5e-7},
                loss_history=[(0, 0.9), (1, 0.7), (2, 0.65)], win_rates_by_iteration=[(0, 0.5), (1, 0.58)])


def test_publish_iteration_and_load_it_back(local_hub, tiny_model_dir):
    import datasets
    from huggingface_hub import DatasetCard, ModelCard
    from transformers import AutoModelForCausalLM, AutoTokenizer

    table, pairs, triplets = _iteration_datasets()
    pub = HubPublisher("sppo-org", "demo")
    data_ref = pub.publish_iteration_data(1, table, pairs, triplets, _data_card(1))
    model_ref = pub.publish_checkpoint(1, tiny_model_dir, _model_card(1))
    pub.add_to_collection(data_ref, model_ref)
    assert (data_ref.repo_id, data_ref.repo_type, data_ref.tag) == ("sppo-org/demo-iter1-data", "dataset", "iter-1")
    assert model_ref.repo_id == "sppo-org/demo-iter1" and model_ref.url == f"{local_hub.url}/sppo-org/demo-iter1"

    # each artifact is exactly one commit on top of the repo's initial commit, and tagged
    api = local_hub.api
    for ref in (data_ref, model_ref):
        commits = api.list_repo_commits(ref.repo_id, repo_type=ref.repo_type)
        assert [c.commit_id for c in commits][0] == ref.commit_sha and len(commits) == 2
        tags = api.list_repo_refs(ref.repo_id, repo_type=ref.repo_type).tags
        assert [(t.name, t.target_commit) for t in tags] == [("iter-1", ref.commit_sha)]

    # the data loads with datasets, per config
    loaded = datasets.load_dataset("sppo-org/demo-iter1-data", "pairs", split="train")
    assert loaded.num_rows == pairs.num_rows and loaded["chosen_probs"] == pytest.approx(pairs["chosen_probs"])
    loaded_table = datasets.load_dataset("sppo-org/demo-iter1-data", "table", split="train", revision="iter-1")
    assert np.allclose(np.array(list(loaded_table["win_rates"])), np.array(list(table["win_rates"])))
    assert datasets.load_dataset("sppo-org/demo-iter1-data", "triplets", split="train").num_rows == 12

    # the checkpoint loads with transformers and generates with its chat template
    model = AutoModelForCausalLM.from_pretrained("sppo-org/demo-iter1", revision=model_ref.commit_sha)
    tok = AutoTokenizer.from_pretrained("sppo-org/demo-iter1")
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] == ids["input_ids"].shape[1] + 3
    files = set(api.list_repo_files("sppo-org/demo-iter1"))
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json", "README.md",
            "assets/loss_curve.png", "assets/win_rate_by_iteration.png", "sppo/artifact.json"} <= files

    # cards: metadata the Hub reads (lineage, datasets, tags) round-trips
    mcard = ModelCard.load("sppo-org/demo-iter1")
    assert mcard.data.base_model == "sppo-org/demo-iter0" and mcard.data.datasets == ["sppo-org/demo-iter1-data"]
    assert {"sppo", "trl"} <= set(mcard.data.tags) and mcard.data.library_name == "transformers"
    dcard = DatasetCard.load("sppo-org/demo-iter1-data", repo_type="dataset")
    assert dcard.data.sppo["judge"] == "PairRM" and [c["config_name"] for c in dcard.data.configs] == [
        "table", "pairs", "triplets"]

    # the run's collection lists the iteration's artifacts in order
    coll = pub.collection()
    assert [(i.item_id, i.item_type) for i in coll.items] == [("sppo-org/demo-iter1-data", "dataset"),
                                                             ("sppo-org/demo-iter1", "model")]
    assert pub.add_to_collection(data_ref).slug == coll.slug  # idempotent


def test_republish_identical_is_noop_different_needs_overwrite(local_hub, tiny_model_dir, tmp_path):
    table, pairs, triplets = _iteration_datasets(seed=1)
    pub = HubPublisher("sppo-org", "again")
    first = pub.publish_iteration_data(2, table, pairs, triplets, _data_card(2))
    again = pub.publish_iteration_data(2, table, pairs, triplets, _data_card(2))
    assert again.commit_sha == first.commit_sha
    assert len(local_hub.api.list_repo_commits(first.repo_id, repo_type="dataset")) == 2

    other_table, other_pairs, other_triplets = _iteration_datasets(seed=2)
    with pytest.raises(ArtifactConflictError, match="overwrite=True"):
        pub.publish_iteration_data(2, other_table, other_pairs, other_triplets, _data_card(2))
    assert local_hub.api.dataset_info(first.repo_id).sha == first.commit_sha  # untouched

    replaced = pub.publish_iteration_data(2, other_table, other_pairs, None, _data_card(2), overwrite=True)
    assert replaced.commit_sha != first.commit_sha
    tags = local_hub.api.list_repo_refs(first.repo_id, repo_type="dataset").tags
    assert [(t.name, t.target_commit) for t in tags] == [("iter-2", replaced.commit_sha)]
    files = local_hub.api.list_repo_files(first.repo_id, repo_type="dataset")
    assert not any("triplets" in f for f in files)  # stale files are deleted in the same commit

    # checkpoints: same content -> same commit
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, ckpt)
    (ckpt / "optimizer.pt").write_bytes(b"not published")
    a = pub.publish_checkpoint(2, ckpt, _model_card(2))
    assert pub.publish_checkpoint(2, ckpt, _model_card(2)).commit_sha == a.commit_sha
    assert "optimizer.pt" not in local_hub.api.list_repo_files(a.repo_id)


def test_bad_input_is_refused_before_anything_is_published(local_hub, tiny_model_dir, tmp_path):
    table, pairs, triplets = _iteration_datasets()
    pub = HubPublisher("sppo-org", "bad")
    with pytest.raises(ValueError, match="iteration"):
        pub.publish_iteration_data(-1, table, pairs, triplets, _data_card(1))
    with pytest.raises(ValueError, match="unknown field"):
        pub.publish_iteration_data(1, table, pairs, triplets, {**_data_card(1), "judge_name": "x"})
    with pytest.raises(ValueError, match="model_repo_template"):
        HubPublisher("sppo-org", "bad", model_repo_template="{org}/{run}--iter{t}")
    with pytest.raises(ValueError, match="org"):
        HubPublisher("a/b", "run")
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model_dir, no_tok)
    (no_tok / "tokenizer_config.json").unlink()
    with pytest.raises(ValueError, match="tokenizer"):
        pub.publish_checkpoint(1, no_tok, _model_card(1))
    assert not local_hub.api.repo_exists("sppo-org/bad-iter1")
    # someone else's namespace: the Hub answers 403 and nothing is created
    with pytest.raises(HfHubHTTPError) as err:
        HubPublisher("not-mine", "run").publish_iteration_data(1, table, pairs, triplets, _data_card(1))
    assert err.value.response.status_code == 403
    assert local_hub.token not in str(err.value)


def test_cli_publish_data_and_model(local_hub, tiny_model_dir, tmp_path, capsys):
    from sppo_hub.cli import main
    from sppo_hub.core.data import save_iteration_datasets

    table, pairs, triplets = _iteration_datasets(seed=3)
    data_dir = save_iteration_datasets(tmp_path / "data", {"table": table, "pairs": pairs, "triplets": triplets},
                                       info={"rule": "pairwise"})
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"num_samples": 3}))
    assert main(["hub", "publish-data", str(data_dir), "--org", "sppo-user", "--run", "cli", "--iteration", "1",
                 "--model", "sppo-user/base", "--judge", "PairRM", "--card-info", str(card)]) == 0
    assert main(["hub", "publish-model", str(tiny_model_dir), "--org", "sppo-user", "--run", "cli", "--iteration", "1",
                 "--base-model", "sppo-user/base", "--dataset", "sppo-user/cli-iter1-data"]) == 0
    out = capsys.readouterr().out
    assert "sppo-user/cli-iter1-data" in out and "sppo-user/cli-iter1 @" in out and local_hub.token not in out
    assert main(["hub", "publish-model", str(tiny_model_dir), "--org", "other", "--run", "cli", "--iteration", "1",
                 "--base-model", "x/y"]) == 2
    err = capsys.readouterr().err
    assert "403" in err and local_hub.token not in err


def test_token_never_reaches_logs_cards_or_reprs(local_hub, tiny_model_dir, caplog, capfd):
    import logging

    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_debug()
    caplog.set_level(logging.DEBUG)
    try:
        table, pairs, triplets = _iteration_datasets(seed=4)
        pub = HubPublisher("sppo-org", "secret", token=local_hub.token)
        refs = [pub.publish_iteration_data(1, table, pairs, triplets, _data_card(1)),
                pub.publish_checkpoint(1, tiny_model_dir, _model_card(1))]
        pub.add_to_collection(*refs)
    finally:
        hf_logging.set_verbosity_warning()
    out, err = capfd.readouterr()
    assert caplog.records  # debug logging was on
    for text in (caplog.text, out, err, repr(pub), repr(local_hub), repr(refs)):
        assert local_hub.token not in text
    for ref in refs:
        for f in local_hub.api.list_repo_files(ref.repo_id, repo_type=ref.repo_type):
            if f.endswith((".md", ".json")):
                from huggingface_hub import hf_hub_download

                path = hf_hub_download(ref.repo_id, f, repo_type=ref.repo_type)
                assert local_hub.token not in open(path, encoding="utf-8").read()


@pytest.mark.online
def test_publish_to_the_real_hub_opt_in(tiny_model_dir, monkeypatch):
    """What the local Hub cannot prove (xet, the Hub's YAML schema and naming rules): opt-in only."""
    import os

    if os.environ.get("SPPO_HUB_ONLINE_TESTS") != "1" or not os.environ.get("HF_TOKEN"):
        pytest.skip("needs the real Hub: set SPPO_HUB_ONLINE_TESTS=1, HF_TOKEN (write) and SPPO_HUB_ONLINE_ORG")
    import uuid

    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest turns offline mode on for every test
    org = os.environ.get("SPPO_HUB_ONLINE_ORG") or HfApi(endpoint=constants._HF_DEFAULT_ENDPOINT).whoami()["name"]
    run = f"sppo-hub-ci-{uuid.uuid4().hex[:8]}"
    pub = HubPublisher(org, run, private=True, endpoint=constants._HF_DEFAULT_ENDPOINT)
    table, pairs, triplets = _iteration_datasets()
    try:
        data_ref = pub.publish_iteration_data(1, table, pairs, triplets, _data_card(1))
        model_ref = pub.publish_checkpoint(1, tiny_model_dir, _model_card(1))
        card = ModelCard.load(pub.api.hf_hub_download(model_ref.repo_id, "README.md"))
        assert card.data.base_model == "sppo-org/demo-iter0" and data_ref.tag == "iter-1"
    finally:
        for repo_id, repo_type in ((pub.data_repo_id(1), "dataset"), (pub.model_repo_id(1), "model")):
            pub.api.delete_repo(repo_id, repo_type=repo_type, missing_ok=True)


def test_foreign_repo_content_is_not_overwritten(local_hub):
    local_hub.api.create_repo("sppo-user/taken-iter1-data", repo_type="dataset")
    local_hub.api.upload_file(path_or_fileobj=b"someone's data", path_in_repo="data.csv",
                              repo_id="sppo-user/taken-iter1-data", repo_type="dataset")
    table, pairs, triplets = _iteration_datasets()
    with pytest.raises(ArtifactConflictError, match="not published by sppo-hub"):
        HubPublisher("sppo-user", "taken").publish_iteration_data(1, table, pairs, triplets, _data_card(1))
    assert local_hub.api.list_repo_files("sppo-user/taken-iter1-data", repo_type="dataset") == [
        ".gitattributes", "data.csv"]


def test_a_checkpoint_containing_the_token_is_refused(local_hub, tiny_model_dir, tmp_path):
    ckpt = tmp_path / "leaky"
    shutil.copytree(tiny_model_dir, ckpt)
    (ckpt / "training_config.json").write_text(json.dumps({"hub_token": local_hub.token}))
    with pytest.raises(ValueError, match="training_config.json contains your Hub token") as err:
        HubPublisher("sppo-user", "leaky").publish_checkpoint(1, ckpt, {**_model_card(1),
                                                                      "hyperparameters": {"hub_token": local_hub.token}})
    assert local_hub.token not in str(err.value)
    assert not local_hub.api.repo_exists("sppo-user/leaky-iter1")


def test_lora_adapter_checkpoint_round_trip(local_hub, tiny_model_dir, tmp_path):
    from huggingface_hub import ModelCard
    from peft import AutoPeftModelForCausalLM, LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    out = tmp_path / "adapter"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    ref = HubPublisher("sppo-user", "lora").publish_checkpoint(1, out, _model_card(1))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(local_hub.api.list_repo_files(ref.repo_id))
    loaded = AutoPeftModelForCausalLM.from_pretrained(ref.repo_id, revision=ref.commit_sha)
    assert type(loaded).__name__ == "PeftModelForCausalLM"
    card = ModelCard.load(ref.repo_id)
    assert card.data.library_name == "peft" and "AutoPeftModelForCausalLM" in card.text


def test_bookkeeping_files_go_to_one_folder(local_hub, tiny_model_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, ckpt)
    for name in ("manifest.json", "log_history.json"):
        (ckpt / name).write_text("{}")
    ref = HubPublisher("sppo-org", "books").publish_checkpoint(1, ckpt, _model_card(1))
    files = set(local_hub.api.list_repo_files(ref.repo_id))
    assert {"sppo/artifact.json", "sppo/manifest.json", "sppo/log_history.json"} <= files
    root = {f for f in files if "/" not in f}
    assert not root & {"manifest.json", "log_history.json", "sppo_artifact.json", "run_manifest.json"}
