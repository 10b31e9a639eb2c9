"""``python -m normalizer`` is the ``fsnorm`` command."""

import sys

from .cli.main import main

sys.exit(main())
