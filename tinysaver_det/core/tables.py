"""Markdown and CSV forms of sweeps, Table 1 and Table 2 (standard library only).

Each ``*_table`` function turns results into one :class:`Table` (a header and rows of raw values);
:func:`to_markdown` and :func:`write_csv` render any table, so the markdown shown to a reader and
the CSV kept for plotting always hold the same columns. Metric values stay fractions and costs stay
in the caller's unit; a ``note`` (e.g. the FLOPs convention) is printed under the markdown table.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tinysaver_det.core.selection import SelectionReport
from tinysaver_det.core.summary import Table1Row
from tinysaver_det.core.cascade_model import StageRow
from tinysaver_det.io import atomic_write_text


@dataclass(frozen=True)
class Table:
    """A header and rows of values (numbers, strings, None for "not reached")."""

    header: tuple[str, ...]
    rows: tuple[tuple, ...]
    note: str | None = None


def _cell(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        if abs(value) < 1:  # fractions (metrics, ratios) keep a fixed number of decimals
            return f"{value:.{digits}f}"
        return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    return str(value)


def to_markdown(table: Table, digits: int = 4) -> str:
    """A GitHub markdown table, None/NaN as ``-``.

    Floats below 1 in magnitude (metrics, ratios) get ``digits`` decimals, larger ones ``digits``
    significant digits, and whole numbers from ``10**digits`` up no decimals.

    >>> print(to_markdown(Table(("t", "cost"), ((0.5, 1.25), (0.9, None), (1.0, 675072.0)), note="cost in FLOPs"), 2))
    | t | cost |
    | --- | --- |
    | 0.50 | 1.2 |
    | 0.90 | - |
    | 1 | 675072 |
    <BLANKLINE>
    cost in FLOPs
    """
    lines = ["| " + " | ".join(table.header) + " |", "|" + " --- |" * len(table.header)]
    lines += ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def write_csv(table: Table, path) -> Path:
    """Write the table as CSV (full float precision, None as an empty cell); returns the path.

    The note is not written: a CSV cell is no place for prose, keep it in the markdown.
    """
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(table.header)
    writer.writerows(["" if v is None else v for v in row] for row in table.rows)
    atomic_write_text(path, text.getvalue())
    return Path(path)


def sweep_table(rows: Sequence[StageRow], cost_label: str = "cost", note: str | None = None) -> Table:
    """One line per threshold: threshold, exit ratio, cost and every metric of the first row, in order.

    >>> print(to_markdown(sweep_table([StageRow((0.5,), (0.75, 0.25), {"cost": 2.0}, {"top1": 0.9})]), digits=2))
    | threshold | exit_ratio | cost | top1 |
    | --- | --- | --- | --- |
    | 0.50 | 0.75 | 2 | 0.90 |
    """
    keys = tuple(rows[0].metrics) if rows else ()
    body = tuple((r.threshold, r.exit_ratio, r.cost, *(r.metrics.get(k) for k in keys)) for r in rows)
    return Table(("threshold", "exit_ratio", cost_label, *keys), body, note)


def _drop_label(max_drop: float) -> str:
    return f"drop<={max_drop * 100:g}pt"


def table1_table(
    rows: Mapping[str, Table1Row], cost_label: str = "cost", note: str | None = None, detailed: bool = True
) -> Table:
    """Paper Table 1, one line per saver: the cost at each allowed drop, then the best performance and its cost.

    Drops are absolute, in points of the metric (``drop<=1pt`` means ``metric >= base - 0.01``).
    Costs are relative to the base alone (``C/C_B``); ``detailed`` adds, per column, the absolute
    cost and the threshold reaching it (for CSV; the short form reads better as markdown, and the
    absolute cost is ``C/C_B`` times the base cost it shows).

    >>> from tinysaver_det.core.summary import table1_row
    >>> row = table1_row([StageRow((0.5,), (0.8, 0.2), {"cost": 3.0}, {"top1": 0.95})], "top1", 0.95, 10.0,
    ...                  max_drops=(0.01, 0.0))
    >>> print(to_markdown(table1_table({"tiny": row}, detailed=False), digits=2))
    | saver | base top1 | base cost | C/C_B drop<=1pt | C/C_B drop<=0pt | best top1 | C/C_B best |
    | --- | --- | --- | --- | --- | --- | --- |
    | tiny | 0.95 | 10 | 0.30 | 0.30 | 0.95 | 0.30 |
    >>> table1_table({"tiny": row}).header[3:6]
    ('C/C_B drop<=1pt', 'cost drop<=1pt', 't drop<=1pt')
    """
    first = next(iter(rows.values()))

    def columns(label: str) -> list[str]:
        return [f"C/C_B {label}"] + ([f"{cost_label} {label}", f"t {label}"] if detailed else [])

    def cells(point) -> list:
        return [point.relative_cost] + ([point.cost, point.threshold] if detailed else [])

    header = ["saver", f"base {first.primary}", f"base {cost_label}"]
    for point in first.at_drop:
        header += columns(_drop_label(point.max_drop))
    header += [f"best {first.primary}", *columns("best")]
    body = []
    for name, row in rows.items():
        line = [name, row.base_performance, row.base_cost]
        for point in row.at_drop:
            line += cells(point)
        body.append((*line, row.best.performance, *cells(row.best)))
    return Table(tuple(header), tuple(body), note)


def selection_table(report: SelectionReport, cost_label: str = "cost", note: str | None = None) -> Table:
    """Paper Table 2: per candidate ``C_S``, ``C_S/C_B``, ``r_match``, its threshold and ``dC_tr``; the chosen one marked.

    >>> from tinysaver_det.core.selection import CandidateReport
    >>> report = SelectionReport(10.0, (CandidateReport("tiny", 1.0, 0.1, 0.5, -0.4, 0.8),), "tiny")
    >>> print(to_markdown(selection_table(report), digits=2))
    | saver | cost | C_S/C_B | r_match | t_match | dC_tr | chosen |
    | --- | --- | --- | --- | --- | --- | --- |
    | tiny | 1 | 0.10 | 0.50 | 0.80 | -0.40 | yes |
    """
    body = tuple(
        (c.name, c.cost, c.relative_cost, c.r_match, c.threshold, c.delta_cost_tr, c.name == report.chosen)
        for c in report.candidates
    )
    return Table(("saver", cost_label, "C_S/C_B", "r_match", "t_match", "dC_tr", "chosen"), body, note)
