"""``python tools/sweep.py ...`` is ``python -m tinysaver_det sweep ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("sweep")

if __name__ == "__main__":
    sys.exit(main())
