"""sppo_hub.generation.mixture: the averaged policy as a sampler over iterates, and its JSON record."""

from __future__ import annotations

import numpy as np
import pytest

from sppo_hub.generation import Generator, SamplingConfig
from sppo_hub.generation.factory import MixtureGenerator
from sppo_hub.generation.mixture import MixturePolicy, load_mixture
from sppo_hub.equilibrium.options import mixture_record


def test_record_round_trip_and_weights(tmp_path):
    mix = mixture_record({1: "org/run-iter1", 2: "org/run-iter2", 3: "/models/iter3"}, "linear", run="r")
    assert mix.probabilities == pytest.approx([1 / 6, 2 / 6, 3 / 6])
    path = mix.save(tmp_path / "mixture.json")
    back = load_mixture(tmp_path)
    assert back.to_dict() == mix.to_dict()
    assert [c.iteration for c in back.components] == [1, 2, 3]
    assert back.metadata == {"window": 0, "run": "r"}
    assert not path.with_name("mixture.json.tmp").exists()


def test_window_and_errors(tmp_path):
    mix = mixture_record({t: f"m{t}" for t in range(1, 7)}, window=3)
    assert [c.iteration for c in mix.components] == [4, 5, 6]
    with pytest.raises(ValueError, match="no model"):
        MixturePolicy.from_iterates({1: "a"}, {1: 0.5, 2: 0.5})
    with pytest.raises(ValueError, match="weights"):
        MixturePolicy.from_iterates({1: "a"}, {1: -1.0})
    with pytest.raises(FileNotFoundError, match="mixture.json"):
        load_mixture(tmp_path)
    (tmp_path / "mixture.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="format"):
        load_mixture(tmp_path)


def test_average_is_what_the_sampler_draws():
    # tabular check: drawing an iterate by weight, then a response from it, has law sum_t w_t pi_t
    pis = [np.array([0.9, 0.1, 0.0]), np.array([0.0, 0.2, 0.8])]
    mix = MixturePolicy.from_iterates({1: "a", 2: "b"}, {1: 0.25, 2: 0.75})
    expected = mix.average(pis)
    assert expected == pytest.approx([0.225, 0.175, 0.6])
    rng = np.random.default_rng(0)
    comps = mix.sample_components(40000, rng)
    draws = np.array([rng.choice(3, p=pis[c]) for c in comps])
    assert np.bincount(draws, minlength=3) / len(draws) == pytest.approx(expected, abs=0.01)


class Echo(Generator):
    """A component generator that answers with its model's name (stands in for a checkpoint)."""

    def __init__(self, model, sampling):
        super().__init__(sampling)
        self.model = model

    def generate(self, prompts, seed_offset=0):
        return [[f"{self.model}:{p}"] * self.sampling.num_samples for p in prompts]


def test_mixture_generator_draws_each_response_from_one_iterate():
    mix = MixturePolicy.from_iterates({1: "it1", 2: "it2"}, {1: 0.5, 2: 0.5})
    built = []

    def make(component, sampling):
        assert sampling.num_samples == 1
        built.append(component.iteration)
        return Echo(component.model, sampling)

    gen = MixtureGenerator(mix, SamplingConfig(num_samples=4, seed=3), make_component=make)
    out = gen.generate(["p0", "p1", "p2"])
    assert [len(r) for r in out] == [4, 4, 4]
    for prompt, row, its in zip(["p0", "p1", "p2"], out, gen.last_assignment):
        assert row == [f"it{t}:{prompt}" for t in its]
    assert sorted(built) == [1, 2]  # one generator per iterate per call, not per response
    again = MixtureGenerator(mix, SamplingConfig(num_samples=4, seed=3), make_component=make)
    again.generate(["p0", "p1", "p2"])
    assert again.last_assignment == gen.last_assignment  # seeded


def test_mixture_generator_on_real_checkpoints(tiny_model_dir, tmp_path):
    """Two iterates that are the same tiny Llama: the transformers backend answers every slot, and a run folder
    holding mixture.json is a model for `make_generator` / `generate_responses` (the generate CLI, evaluation)."""
    from sppo_hub.generation import generate_responses, make_generator
    from sppo_hub.generation.mixture import is_mixture

    mix = MixturePolicy.from_iterates({1: str(tiny_model_dir), 2: str(tiny_model_dir)}, {1: 0.3, 2: 0.7})
    sampling = SamplingConfig(num_samples=2, max_new_tokens=4, temperature=1.0, seed=0)
    out = MixtureGenerator(mix, sampling, device="cpu", dtype="float32", show_progress=False).generate(["hi", "yo"])
    assert [len(r) for r in out] == [2, 2] and all(isinstance(s, str) for r in out for s in r)
    mix.save(tmp_path / "mixture.json")
    assert is_mixture(tmp_path) and is_mixture(tmp_path / "mixture.json")
    assert not is_mixture(tiny_model_dir) and not is_mixture(tmp_path / "nope.json")
    gen = make_generator(str(tmp_path), sampling, device="cpu", dtype="float32", show_progress=False)
    assert isinstance(gen, MixtureGenerator) and gen.mixture.probabilities == pytest.approx([0.3, 0.7])
    ds = generate_responses(str(tmp_path), ["hi"], sampling, show_progress=False, device="cpu", dtype="float32")
    assert len(ds[0]["responses"]) == 2
