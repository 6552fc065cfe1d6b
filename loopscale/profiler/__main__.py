"""``python -m loopscale.profiler script.py [args]``."""

import sys

from ._main import main

sys.exit(main())
