"""Reaching the preference game's Nash equilibrium: exploration, reference mixing (toward pi_0 or a moving magnet),
the optimistic step, all-response pairs and the averaged policy's record (`options`; all off by default, so a plain recipe runs the paper's algorithm).
"""

from .options import EquilibriumConfig, ExplorationConfig, iterate_weights, mixture_record

__all__ = ["EquilibriumConfig", "ExplorationConfig", "iterate_weights", "mixture_record"]
