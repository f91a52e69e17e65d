"""Expected cost of a two-model cascade (TinySaver, Eq. 1), and how costs are counted."""

from __future__ import annotations

#: How every GFLOPs figure of the package is counted (:mod:`tinysaver_det.flops` does the counting). A
#: string here, so that offline tables can print it without importing torch.
FLOPS_CONVENTION = "FLOPs = 2 * MACs (torch.utils.flop_counter: convolutions and matrix products)"


def expected_cost(exit_ratio, cost_saver, cost_base):
    """``E[C] = r*C_S + (1-r)*(C_S + C_B) = C_S + (1-r)*C_B``.

    Works elementwise on numpy arrays of exit ratios.

    >>> expected_cost(0.5, 1.0, 10.0)
    6.0
    """
    return cost_saver + (1 - exit_ratio) * cost_base
