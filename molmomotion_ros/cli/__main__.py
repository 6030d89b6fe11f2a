"""``python -m molmomotion_ros.cli``: the ``molmomotion`` command without the installed console script."""

import sys

from . import main

sys.exit(main())
