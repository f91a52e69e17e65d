"""The documentation that lists parts of the package stays true: ``docs/layout.md`` names every module and
subpackage (and nothing else), and the README's command table lists every subcommand the CLI registers.

A module added, moved or renamed without its line in the layout fails here, naming it.
"""

import re
from pathlib import Path

from tinysaver_det.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "tinysaver_det"
#: One line of the layout tree: two spaces per level, a module file or a folder, then its one-line description.
ENTRY = re.compile(r"^(?P<indent>(?:  )*)(?P<name>[A-Za-z_]\w*(?:\.py|/))(?:\s|$)")


def layout_tree(text: str) -> list[str]:
    """The lines of the fenced block of ``docs/layout.md`` that starts with ``tinysaver_det/``."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    trees = [block.splitlines() for block in blocks if block.startswith("tinysaver_det/\n")]
    assert len(trees) == 1, "docs/layout.md needs exactly one fenced block starting with 'tinysaver_det/'"
    return trees[0]


def listed_paths(tree: list[str]) -> set[str]:
    """``core/policy.py``, ``core/``, ...: each entry's path relative to the package, from its indentation.

    >>> sorted(listed_paths(["tinysaver_det/", "  io.py  files", "  core/  maths", "    cost.py  cost", "  plots.py"]))
    ['core/', 'core/cost.py', 'io.py', 'plots.py']
    """
    folders: list[str] = []  # the open folder at each depth below the package
    paths = set()
    for number, line in enumerate(tree[1:], start=2):
        match = ENTRY.match(line)
        assert match is not None, f"docs/layout.md tree line {number} is not '<indent><name>.py|<name>/  <what>': {line!r}"
        depth = len(match["indent"]) // 2 - 1
        assert 0 <= depth <= len(folders), f"docs/layout.md tree line {number} is indented too deep: {line!r}"
        del folders[depth:]
        path = "".join(folders) + match["name"]
        paths.add(path)
        if path.endswith("/"):
            folders.append(match["name"])
    return paths


def package_paths() -> set[str]:
    """Every module file (a package's ``__init__.py`` aside) and every subpackage, relative to the package."""
    paths = set()
    for file in PACKAGE.rglob("*.py"):
        if "__pycache__" in file.parts:
            continue
        relative = file.relative_to(PACKAGE)
        if file.name == "__init__.py":
            if relative.parent != Path("."):
                paths.add(f"{relative.parent.as_posix()}/")
        else:
            paths.add(relative.as_posix())
    return paths


def test_docs_layout_names_every_module_and_subpackage_and_nothing_else():
    listed = listed_paths(layout_tree((REPO / "docs" / "layout.md").read_text()))
    actual = package_paths()
    missing = sorted(actual - listed - {"__init__.py"})
    extra = sorted(listed - actual - {path for path in listed if path.endswith("__init__.py")})
    assert not missing and not extra, (
        f"docs/layout.md is out of date with tinysaver_det/: missing (add a line each under its folder): "
        f"{missing}; listed but not in the package: {extra}")


def readme_subcommands() -> list[str]:
    """The first column of the README's command table (a cell may name several: ``a``, ``b``)."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("| subcommand |"):].split("\n\n")[0].splitlines()[2:]
    return [name for row in table for name in re.findall(r"`([^`]+)`", row.split("|")[1])]


def test_the_readme_command_table_lists_every_subcommand_the_cli_registers_once():
    listed = readme_subcommands()
    assert len(listed) == len(set(listed)), f"a subcommand is listed twice in the README's table: {listed}"
    missing, extra = sorted(set(COMMANDS) - set(listed)), sorted(set(listed) - set(COMMANDS))
    assert not missing and not extra, f"README command table: missing {missing}; not a subcommand: {extra}"
