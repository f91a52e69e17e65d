"""Expected cost of a two-model cascade (TinySaver, Eq. 1)."""

from __future__ import annotations


def expected_cost(exit_ratio, cost_saver, cost_base):
    """``E[C] = r*C_S + (1-r)*(C_S + C_B) = C_S + (1-r)*C_B``.

    Works elementwise on numpy arrays of exit ratios.

    >>> expected_cost(0.5, 1.0, 10.0)
    6.0
    """
    return cost_saver + (1 - exit_ratio) * cost_base
