"""``python tools/select_saver.py ...`` is ``python -m tinysaver_det select-saver ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("select-saver")

if __name__ == "__main__":
    sys.exit(main())
