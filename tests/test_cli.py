"""The command line: one parser per subcommand behind ``python -m tinysaver_det``, tools/*.py as shims
with the same flags, no abbreviations, help text with its line breaks, wrong options and inputs as exit 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from tinysaver_det.cli import COMMANDS, SUMMARIES, command_module, main, parse_command, tool

REPO = Path(__file__).resolve().parent.parent
SHIMS = {"eval_coco": "eval", "predict_coco": "predict-coco", "sweep": "sweep", "benchmark_table": "table",
         "pick_threshold": "pick", "compare_routers": "routers", "multistage_front": "multistage-front",
         "run_multistage": "multistage-run", "select_saver": "select-saver", "test_mmdet": "test-mmdet"}


def test_every_subcommand_has_a_module_with_the_four_names_and_a_summary():
    assert set(SUMMARIES) == set(COMMANDS)
    for name in COMMANDS:
        module = command_module(name)
        assert module.DESCRIPTION.strip() and callable(module.add_arguments) and callable(module.run), name


@pytest.mark.parametrize("shim, command", sorted(SHIMS.items()))
def test_each_tool_is_a_shim_of_its_subcommand(shim, command):
    text = (REPO / "tools" / f"{shim}.py").read_text()
    assert f'tool("{command}")' in text and len([line for line in text.splitlines() if line.strip()]) <= 6


def test_options_are_not_abbreviated_and_shared_groups_parse_alike():
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--rec", "runs/x"])
    assert exit_.value.code == 2
    eval_args = parse_command("eval", ["--t", "0.3", "--confidence", "max", "--min-score", "0.1", "--batch", "4"])
    run_args = parse_command("multistage-run", ["--weights", "a", "b", "--t", "0.3", "--min-score", "0.1", "--batch", "4"])
    assert (eval_args.min_score, eval_args.batch, eval_args.device) == (run_args.min_score, run_args.batch, run_args.device)
    with pytest.raises(SystemExit):
        parse_command("pick", ["--min-score", "0.1"])  # an offline study has no --min-score of its own


def test_the_shim_and_the_subcommand_parse_the_same_flags():
    main_of_shim, parse_of_shim = tool("eval")
    assert vars(parse_of_shim(["--t", "0.4", "--full"])) == vars(parse_command("eval", ["--t", "0.4", "--full"]))


def test_help_keeps_its_line_breaks_and_an_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "\n    python -m tinysaver_det sweep --records runs/eval_coco --out runs/sweep\n" in out
    with pytest.raises(SystemExit) as exit_:
        main(["swee"])
    assert exit_.value.code == 2 and "invalid choice: 'swee'" in capsys.readouterr().err


def test_a_wrong_input_is_one_error_line_and_exit_2_through_python_m(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tinysaver_det", "select-saver", "--base", "b", "ten", "x", "y",
                           "--saver", "s", "1", "x", "y", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == "error: cost of 'b' must be a number, got 'ten'\n"


@pytest.mark.parametrize("command, extra", [
    ("eval", []),
    ("predict", ["--source", "x.jpg", "--out", "runs/p"]),
    ("predict-coco", ["--weights", "demo:pico", "--out", "p.jsonl"]),
    ("multistage-run", ["--weights", "demo:pico", "demo:n", "demo:s", "--t", "0.2", "0.1"]),
])
def test_resume_with_overwrite_is_refused_in_every_command_with_the_librarys_one_message(command, extra, capsys):
    """The command line says what the run directory says (``RESUME_AND_OVERWRITE``), before anything runs."""
    from tinysaver_det.detection.run_directory import RESUME_AND_OVERWRITE

    with pytest.raises(SystemExit) as stop:
        parse_command(command, [*extra, "--resume", "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2
    assert err.endswith(f"error: --resume and --overwrite: {RESUME_AND_OVERWRITE}")
