"""`python -m edge` is the same as the `nvr-edge` console script."""

import sys

from edge.cli import main

sys.exit(main())
