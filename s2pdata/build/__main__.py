"""``python -m s2pdata.build``: see ``s2pdata.build.cli``."""

import sys

from s2pdata.build.cli import main

sys.exit(main())
