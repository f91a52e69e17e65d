"""``python tools/test_mmdet.py ...`` is ``python -m tinysaver_det test-mmdet ...`` (same flags; see its --help)."""
import sys

from tinysaver_det.cli import tool

main, parse_args = tool("test-mmdet")

if __name__ == "__main__":
    sys.exit(main())
