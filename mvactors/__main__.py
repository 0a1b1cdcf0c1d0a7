"""``python -m mvactors``: the same command as the ``mvactors`` console script."""

import sys

from .cli import main

sys.exit(main())
