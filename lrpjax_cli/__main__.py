"""``python -m lrpjax_cli``: the ``lrpjax`` command."""

import sys

from lrpjax_cli import main

sys.exit(main())
