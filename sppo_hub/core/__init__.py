"""The paper's math, with no imports from the rest of sppo_hub but each other:

- `preference`: pairwise preference tables P(y_i > y_j | x), win rates, pair selection rules;
- `losses`: the SPPO losses (sppo, sppo_single, sppo_hard) and DPO / IPO / INPO on log-ratios;
- `data`: the iteration's datasets (table, pairs, triplets) built from judged responses.

Import the module you need (`from sppo_hub.core import preference`); nothing is imported here.
"""

__all__ = ["data", "losses", "preference"]
