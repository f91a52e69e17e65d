"""``python tools/predict_coco.py ...`` is ``python -m tinysaver_det predict-coco ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("predict-coco")

if __name__ == "__main__":
    sys.exit(main())
