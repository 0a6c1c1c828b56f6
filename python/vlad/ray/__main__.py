"""``python -m vlad.ray``: see :mod:`vlad.ray._cli`."""

import sys

from ._cli import main

sys.exit(main())
