"""Expected cost of a two-model cascade (TinySaver, Eq. 1), and how costs are counted."""

from __future__ import annotations

#: How every GFLOPs figure of the package is counted (:mod:`tinysaver_det.flops` does the counting). A
#: string here, so that offline tables can print it without importing torch.
FLOPS_CONVENTION = "FLOPs = 2 * MACs (torch.utils.flop_counter: convolutions and matrix products)"

#: The ways a table can print costs: ``flops`` (the default: GFLOPs = 2 * GMACs per image at the input
#: shape each image ran, Ultralytics' unit) and ``paper-macs`` (GMACs, half that, at one stated input
#: size: how detection papers such as TinySaver's Table 4 list their large bases, e.g. Co-DINO Swin-L's
#: 1,527 at 1333x800).
FLOPS_CONVENTIONS = ("flops", "paper-macs")


def gflops_in_convention(gflops, convention: str):
    """A cost counted in GFLOPs (:data:`FLOPS_CONVENTION`) in ``convention``'s unit (GMACs are half).

    >>> gflops_in_convention(8.0, "paper-macs")
    4.0
    """
    if convention not in FLOPS_CONVENTIONS:
        raise ValueError(f"FLOPs convention must be one of {FLOPS_CONVENTIONS}, got {convention!r}")
    return gflops / 2 if convention == "paper-macs" else gflops


def convention_note(convention: str, size: tuple[int, int] | None = None) -> str:
    """What a printed cost is: its unit and the input size it was counted at.

    Args:
        convention: one of :data:`FLOPS_CONVENTIONS`.
        size: ``(height, width)`` every image was counted at; None: the shape each image ran at.

    >>> convention_note("paper-macs", (800, 1333))
    'GMACs = GFLOPs / 2 (torch.utils.flop_counter: convolutions and matrix products), per image at 1333x800 (width x height)'
    """
    gflops_in_convention(0.0, convention)  # checks the name
    unit = FLOPS_CONVENTION if convention == "flops" else "GMACs = GFLOPs / 2 (torch.utils.flop_counter: convolutions and matrix products)"
    where = "the input shape each image ran" if size is None else f"{size[1]}x{size[0]} (width x height)"
    return f"{unit}, per image at {where}"


def expected_cost(exit_ratio, cost_saver, cost_base):
    """``E[C] = r*C_S + (1-r)*(C_S + C_B) = C_S + (1-r)*C_B``.

    Works elementwise on numpy arrays of exit ratios.

    >>> expected_cost(0.5, 1.0, 10.0)
    6.0
    """
    return cost_saver + (1 - exit_ratio) * cost_base
