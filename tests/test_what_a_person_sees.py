"""What a person sees: plots whose parts are all there and tell apart, short screens, full files."""

import numpy as np
import pytest

from tinysaver_det import plots
from tinysaver_det.core.cascade_model import StageRow


def _rows(offset: float) -> list[StageRow]:
    return [StageRow((t,), (1 - t, t), {"GFLOPs": 1 + 3 * (1 - t) + offset}, {"AP": 0.2 + 0.3 * (1 - t) ** 0.5})
            for t in np.linspace(0, 1, 101)]


def test_static_models_get_their_own_colours_and_curves_mark_thresholds(monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=None: figures.append(fig) or path)
    plots.plot_performance_vs_cost({"pico -> s": _rows(0), "n -> s": _rows(0.5)},
                                   {"pico": (0.2, 0.18), "n": (1.3, 0.43), "s": (4.5, 0.53)}, tmp_path / "a.png")
    ax = figures[0].axes[0]
    curves = [line.get_color() for line in ax.lines if line.get_label() in ("pico -> s", "n -> s")]
    statics = [tuple(c.get_facecolor()[0][:3]) for c in ax.collections]
    from matplotlib.colors import to_rgb

    colours = [to_rgb(c) for c in curves] + statics
    assert len(colours) == 5 and len(set(colours)) == 5  # nothing shares a colour
    marks = sorted(text.get_text() for text in ax.texts)
    assert marks == sorted(["t=0.1", "t=0.25", "t=0.5"] * 2)


def test_a_long_footnote_is_wrapped_and_kept_in_the_saved_image(tmp_path):
    from PIL import Image

    note = "GFLOPs per image at the input shapes actually run; FLOPs = 2 * MACs. " * 6
    path = plots.plot_performance_vs_cost({"cascade": _rows(0)}, {"base": (4.0, 0.5)}, tmp_path / "n.png", note=note)
    plain = plots.plot_performance_vs_cost({"cascade": _rows(0)}, {"base": (4.0, 0.5)}, tmp_path / "p.png")
    with Image.open(path) as noted, Image.open(plain) as bare:
        assert noted.height > bare.height  # the footnote's lines are below the axes, inside the image
        assert noted.width <= 1.03 * bare.width  # wrapped: not running off to the right (unwrapped: 3x wider)


def test_fronts_are_drawn_from_the_cheapest_point(monkeypatch, tmp_path):
    from types import SimpleNamespace

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=None: figures.append(fig) or path)
    row = lambda cost, ap: StageRow((0.5,), (0.5, 0.5), {"GFLOPs": cost}, {"AP": ap})  # noqa: E731
    # held-out costs are not in calibration order: drawn as given, the line would run backwards
    front = [SimpleNamespace(calibration=row(1, 0.3), held_out=row(2, 0.31)),
             SimpleNamespace(calibration=row(2, 0.4), held_out=row(1.5, 0.38))]
    study = SimpleNamespace(unit="GFLOPs", sweeps=[], two_stage_front=front, deep_front=front,
                            static=[(row(4, 0.5), row(4, 0.5))], names=["s"])
    plots.plot_depths(study, tmp_path / "f.png")
    for ax in figures[0].axes:
        for line in ax.lines:
            x = line.get_xdata()
            assert list(x) == sorted(x)


@pytest.mark.slow
def test_sweep_prints_a_short_head_and_writes_every_row(full_run, tmp_path, capsys):
    from tinysaver_det.cli import main

    assert main(["sweep", "--records", str(full_run), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    table_lines = [line for line in printed.splitlines() if line.startswith("| 0.") or line.startswith("| 1")]
    assert 3 <= len(table_lines) <= 7 and "of 101 thresholds; all in" in printed
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 102


@pytest.mark.slow
def test_eval_prints_the_table_and_one_line_the_file_has_the_details(small_set, tmp_path, capsys):
    from tinysaver_det.cli import main

    assert main(["eval", "--images", str(small_set / "images"), "--ann", str(small_set / "ann.json"),
                 "--saver", "demo:n", "--limit", "4", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "yolov8n_shapes.pt" in printed  # demo:n, a demo name, is taken by eval
    assert "Not counted" not in printed and printed.count("MACs") == 1
    assert "Not counted" in (tmp_path / "summary.md").read_text()
