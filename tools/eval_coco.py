"""``python tools/eval_coco.py ...`` is ``python -m tinysaver_det eval ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("eval")

if __name__ == "__main__":
    sys.exit(main())
