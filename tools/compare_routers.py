"""``python tools/compare_routers.py ...`` is ``python -m tinysaver_det routers ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("routers")

if __name__ == "__main__":
    sys.exit(main())
