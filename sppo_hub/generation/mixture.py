"""The averaged policy as an artifact: a mixture of published iterates, and its record (`mixture.json`).

SPPO's convergence guarantee is for the average of the iterates' policies, not for the last one. A policy that is
the average of pi_1..pi_T (weights w_t) is sampled exactly by drawing an iterate t with probability w_t and then a
response from pi_t, independently per response. `MixturePolicy` holds the components (model id or folder,
revision, weight); `factory.MixtureGenerator` is a `sppo_hub.generation.Generator` over it, so generation and evaluation can
sample the averaged policy wherever they take a generator; `generation.make_generator` builds one
for a run folder or a `mixture.json` path, so `sppo-hub generate --model runs/<run>` and the evaluation harnesses
sample the averaged policy. Each component's generator is built on
demand by a factory (default: `generation.make_generator`) and dropped after use, so only one model is in memory
at a time; the cost is one model load per component per `generate` call.

`mixture_record` (the record a run writes after each iteration) is in `sppo_hub.equilibrium.options`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["MIXTURE_FILE", "MixtureComponent", "MixturePolicy", "is_mixture", "load_mixture"]

MIXTURE_FILE = "mixture.json"
FORMAT = "sppo-hub/mixture-of-iterates/v1"


@dataclass
class MixtureComponent:
    """One iterate of the averaged policy."""

    iteration: int
    model: str  # Hub repo id or local folder
    weight: float
    revision: str | None = None


@dataclass
class MixturePolicy:
    """Iterates and weights (normalised on construction); `sample_components` draws which iterate answers."""

    components: list[MixtureComponent]
    scheme: str = "uniform"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.components:
            raise ValueError("components: a mixture needs at least one iterate")
        weights = np.asarray([c.weight for c in self.components], dtype=np.float64)
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights {weights.tolist()}: must be finite, >= 0 and not all 0")
        for c, w in zip(self.components, weights / weights.sum()):
            c.weight = float(w)

    @classmethod
    def from_iterates(cls, models: dict[int, str], weights: dict[int, float], scheme: str = "uniform",
                      revisions: dict[int, str | None] | None = None, **metadata) -> MixturePolicy:
        """Components for the iterations in `weights` (e.g. `equilibrium.iterate_weights`), models by iteration."""
        missing = sorted(set(weights) - set(models))
        if missing:
            raise ValueError(f"weights name iteration(s) {missing} that have no model; publish or train them first")
        revisions = revisions or {}
        comps = [MixtureComponent(int(t), str(models[t]), float(w), revisions.get(t)) for t, w in sorted(weights.items())]
        return cls(comps, scheme, dict(metadata))

    @property
    def probabilities(self) -> np.ndarray:
        return np.asarray([c.weight for c in self.components], dtype=np.float64)

    def sample_components(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """For n responses, the index of the component that draws each one (i.i.d. with the weights)."""
        return rng.choice(len(self.components), size=n, p=self.probabilities)

    def average(self, policies: Sequence[np.ndarray]) -> np.ndarray:
        """sum_t w_t pi_t for explicit (tabular) policies given in component order: the policy the sampler draws from."""
        if len(policies) != len(self.components):
            raise ValueError(f"policies: got {len(policies)} for {len(self.components)} components")
        return np.tensordot(self.probabilities, np.stack([np.asarray(p, dtype=np.float64) for p in policies]), axes=1)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "scheme": self.scheme, "components": [asdict(c) for c in self.components],
                **({"metadata": self.metadata} if self.metadata else {})}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON atomically (temp file, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path


def is_mixture(model) -> bool:
    """True for a `mixture.json` file, or a folder holding one and no model (`config.json`): a run folder."""
    try:
        path = Path(model)
        if path.is_dir():
            return (path / MIXTURE_FILE).is_file() and not (path / "config.json").exists()
        return path.is_file() and path.suffix == ".json" and json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def load_mixture(path: str | os.PathLike) -> MixturePolicy:
    """Read a `mixture.json` (a file, or a run / model folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / MIXTURE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; a run writes {MIXTURE_FILE} after each iteration "
                                "(equilibrium.average != none)")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r} is not {FORMAT!r}")
    comps = [MixtureComponent(**c) for c in data["components"]]
    return MixturePolicy(comps, data.get("scheme", "uniform"), data.get("metadata", {}))
