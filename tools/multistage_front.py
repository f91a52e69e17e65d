"""``python tools/multistage_front.py ...`` is ``python -m tinysaver_det multistage-front ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("multistage-front")

if __name__ == "__main__":
    sys.exit(main())
