"""``python -m tinysaver_det <subcommand> ...``: the command line (:mod:`tinysaver_det.cli`)."""

import sys

from tinysaver_det.cli import main

if __name__ == "__main__":
    sys.exit(main())
