"""``python tools/run_multistage.py ...`` is ``python -m tinysaver_det multistage-run ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("multistage-run")

if __name__ == "__main__":
    sys.exit(main())
