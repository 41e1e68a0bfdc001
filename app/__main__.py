"""Entry point for `python -m app`."""

import sys

from .cli import main

sys.exit(main())
