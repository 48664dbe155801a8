"""``python -m flowutils``: the command line (:mod:`flowutils.cli`)."""

import sys

from .cli import main

sys.exit(main())
