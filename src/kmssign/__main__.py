"""``python -m kmssign``: the ``kmssign`` command."""

import sys

from kmssign.frontends.cli.main import main

sys.exit(main())
