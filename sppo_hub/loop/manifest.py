"""The run manifest: which stages of which iteration are finished, and what they produced.

One JSON file in the run folder, rewritten atomically (temp file + rename) after every finished
stage, and committed to the Hub with each iteration's model. `--resume` reads it: a stage found
here is never run again, its recorded artifacts (paths, repo ids, commit shas, seeds) are reused.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
# Config keys that may differ between a run and its resumption (where to publish, not what).
VOLATILE_KEYS = ("publish.endpoint", "publish.local_hub", "output_dir")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` so that readers see the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def config_differences(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two config dicts (volatile keys ignored)."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k) != b.get(k) and not any(k.startswith(v) for v in VOLATILE_KEYS)]


class RunManifest:
    """Finished stages per iteration (`"0"` holds run-level stages such as the baseline)."""

    def __init__(self, path: str | Path, data: dict[str, Any]):
        self.path = Path(path)
        self.data = data

    @classmethod
    def create(cls, run_dir: str | Path, run_name: str, config: dict[str, Any]) -> RunManifest:
        data = {
            "format": FORMAT_VERSION,
            "run_name": run_name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": config,
            "iterations": {},
            "finished": False,
        }
        manifest = cls(Path(run_dir) / MANIFEST_NAME, data)
        manifest.save()
        return manifest

    @classmethod
    def load(cls, run_dir: str | Path) -> RunManifest:
        path = Path(run_dir) / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no run manifest at {path}: nothing to resume; run without --resume to start the run."
            )
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: manifest format {data.get('format')!r} is not {FORMAT_VERSION}.")
        return cls(path, data)

    def save(self) -> None:
        atomic_write_text(self.path, self.to_json())

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=False, default=str) + "\n"

    def stage(self, iteration: int, name: str) -> dict[str, Any] | None:
        """The recorded record of a finished stage, or None."""
        return self.data["iterations"].get(str(iteration), {}).get(name)

    def record(self, iteration: int, name: str, artifacts: dict[str, Any], seconds: float, compute_seconds: float = 0.0) -> dict:
        """Mark a stage finished (and persist at once)."""
        entry = {
            "artifacts": artifacts,
            "seconds": round(seconds, 4),
            "compute_seconds": round(compute_seconds, 4),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.data["iterations"].setdefault(str(iteration), {})[name] = entry
        self.save()
        return entry

    def iterations(self) -> list[int]:
        return sorted(int(k) for k in self.data["iterations"])

    def mark_finished(self) -> None:
        self.data["finished"] = True
        self.save()

    def artifacts_view(self) -> dict[str, Any]:
        """The manifest without timings: what two runs with the same seeds must agree on."""
        out = {}
        for it, stages in self.data["iterations"].items():
            out[it] = {name: entry["artifacts"] for name, entry in stages.items()}
        return out


class StageTimer:
    """Wall time of a stage and the share of it spent in model compute (generate/judge/train)."""

    def __init__(self) -> None:
        self.compute = 0.0

    @contextmanager
    def computing(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.compute += time.perf_counter() - start


def stage_timings(manifest: RunManifest) -> dict[str, float]:
    """Total wall seconds and compute seconds over every recorded stage (for the overhead benchmark)."""
    wall = compute = 0.0
    for stages in manifest.data["iterations"].values():
        for entry in stages.values():
            wall += entry["seconds"]
            compute += entry["compute_seconds"]
    return {"stage_seconds": wall, "compute_seconds": compute}


def print_summary(manifest: RunManifest, iterations: int, console, endpoint: str | None = None) -> None:
    """The end-of-run table: one row per iteration with win rates and stage timings, then the repo links."""
    from rich.table import Table

    base_url = (endpoint or "https://huggingface.co").rstrip("/")
    from rich import box

    # light borders: ten columns still fit an 80-column terminal
    table = Table(title=f"SPPO run {manifest.data['run_name']}: {iterations} iteration(s)", box=box.SIMPLE_HEAD,
                  padding=(0, 1), collapse_padding=True, show_edge=False, pad_edge=False)
    from ..core.intervals import fmt_gain, fmt_interval

    base = (manifest.stage(0, "baseline") or {}).get("artifacts", {})
    base_acc = base.get("accuracy")
    accuracy = base_acc is not None  # a verifiable judge scored the held-out responses
    pct = lambda v, ci=None: fmt_interval(v, ci, percent=True) if isinstance(v, float) else "-"  # noqa: E731
    num = lambda v, ci=None: fmt_interval(v, ci) if isinstance(v, float) else "-"  # noqa: E731
    for col in ("iter",) + (("held-out acc", "gain (points)") if accuracy else ()) + ("win vs base", "win vs prev"):
        table.add_column(col, justify="right", no_wrap=True)
    times = Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    for col in ("iter", "chosen win", "gen s", "judge s", "train s", "compare s", "publish s", "total s"):
        times.add_column(col, justify="right")
    if accuracy:
        base_secs = (manifest.stage(0, "baseline") or {}).get("seconds", 0.0)
        table.add_row("0", pct(base_acc, base.get("accuracy_ci")), "-", "-", "-")
        times.add_row("0", "-", "-", "-", "-", f"{base_secs:.1f}", "-", f"{base_secs:.1f}")
    links = []
    for t in range(1, iterations + 1):
        get = lambda name: (manifest.stage(t, name) or {})  # noqa: E731
        model = get("publish_model").get("artifacts", {})
        data = get("publish_data").get("artifacts", {})
        cmp = get("compare").get("artifacts", {})
        secs = lambda *names: sum(get(n).get("seconds", 0.0) for n in names)  # noqa: E731
        gain = cmp.get("accuracy_gain")
        gain_cell = fmt_gain(gain, cmp.get("accuracy_gain_ci")) if isinstance(gain, float) else "-"
        table.add_row(
            str(t), *((pct(cmp.get("accuracy"), cmp.get("accuracy_ci")), gain_cell) if accuracy else ()),
            num(cmp.get("win_rate_vs_base"), cmp.get("win_rate_vs_base_ci")),
            num(cmp.get("win_rate_vs_previous"), cmp.get("win_rate_vs_previous_ci")),
        )
        times.add_row(
            str(t), num(get("data").get("artifacts", {}).get("mean_chosen_win_rate")), f"{secs('generate'):.1f}", f"{secs('judge'):.1f}", f"{secs('train'):.1f}",
            f"{secs('compare'):.1f}", f"{secs('publish_data', 'publish_model'):.1f}",
            f"{sum(e.get('seconds', 0.0) for e in manifest.data['iterations'].get(str(t), {}).values()):.1f}",
        )
        if model.get("repo_id"):
            links.append(f"iteration {t} model: {base_url}/{model['repo_id']} (commit {model['commit'][:10]})")
        elif get("train"):
            links.append(f"iteration {t} model: {get('train')['artifacts']['path']} (not published)")
        if data.get("repo_id"):
            links.append(f"iteration {t} data:  {base_url}/datasets/{data['repo_id']} (commit {data['commit'][:10]})")
    console.print(table)
    samples = base.get("samples_per_prompt") or (manifest.stage(1, "compare") or {}).get(
        "artifacts", {}).get("samples_per_prompt", 1)
    console.print(f"In brackets: 95% intervals, clustered by held-out prompt ({samples} sampled answer(s) each). "
                  + ("held-out acc: share of held-out answers the judge's checker marks correct (row 0: pi_0); "
                     "gain: held-out acc minus pi_0's, in percentage points, paired by prompt; " if accuracy else "")
                  + "win vs base / prev: mean judge P(pi_t beats pi_0 / pi_{t-1}) over pairs of their answers.",
                  markup=False)
    console.print(times)
    console.print("chosen win: mean win rate of the chosen responses (training data); times in wall seconds.")
    for line in links:
        console.print(line, soft_wrap=True)
    console.print(f"run folder: {manifest.path.parent}  (manifest: {manifest.path})", soft_wrap=True)
