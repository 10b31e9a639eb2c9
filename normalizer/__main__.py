"""``python -m normalizer`` is the ``fsnorm`` command."""

import sys

from .cli import main

sys.exit(main())
