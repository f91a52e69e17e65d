"""``python tools/pick_threshold.py ...`` is ``python -m tinysaver_det pick ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("pick")

if __name__ == "__main__":
    sys.exit(main())
