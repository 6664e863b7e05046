"""``python -m runner``: the advrun command line."""

import sys

from runner.cli import main

if __name__ == "__main__":  # a spawned job re-imports this module as __mp_main__
    sys.exit(main())
