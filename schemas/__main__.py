"""``python -m stadtlink.schemas FILE...`` is ``stadtlink validate FILE...``."""

import sys

from .validate_cli import main

sys.exit(main(sys.argv[1:]))
