"""Evaluation: AlpacaEval 2.0, MT-Bench, lm-eval leaderboard tasks, and results in the Hub.

Submodules import their heavy dependencies (alpaca_eval, lm_eval, torch) only when called.
"""

from .results import BENCHMARKS, EvalConfig, evaluate_iteration, plot_run_history, publish_results

__all__ = ["BENCHMARKS", "EvalConfig", "evaluate_iteration", "plot_run_history", "publish_results"]
