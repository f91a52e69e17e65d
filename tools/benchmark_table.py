"""``python tools/benchmark_table.py ...`` is ``python -m tinysaver_det table ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("table")

if __name__ == "__main__":
    sys.exit(main())
