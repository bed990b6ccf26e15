"""Stage `data`: win rates P(y_k > pi_{t-1} | x) and the table / pairs / triplets datasets of iteration t."""

from __future__ import annotations

from . import equilibrium
from .context import RunContext, load_dataset, sha


def build_data(ctx: RunContext, t: int, timer, judged: dict) -> dict:
    from ...core.data import build_iteration_datasets, save_iteration_datasets

    dc = ctx.config.data
    ds = load_dataset(judged["path"])
    datasets = build_iteration_datasets(ds, output_kind=judged["output_kind"], rule=dc.rule,
                                        include_diagonal=dc.include_diagonal, triplets=True,
                                        drop_ties=dc.drop_ties)
    datasets = equilibrium.adjust_datasets(ctx, datasets)  # win rates vs pi_{t-1}'s own samples under exploration
    path = save_iteration_datasets(ctx.iter_dir(t) / "data", datasets,
                                   info={"rule": dc.rule, "kind": judged["output_kind"],
                                         "judge": judged["judge"], "iteration": t})
    table = datasets["table"]
    mean_best = sum(max(w) for w in table["win_rates"]) / max(len(table), 1)
    return {"path": str(path), "rows": {k: len(v) for k, v in datasets.items()},
            "mean_chosen_win_rate": round(mean_best, 4), "sha": sha(datasets["pairs"].to_dict())}
