"""`python -m vigilctl`."""

import sys

from vigilctl.main import main

sys.exit(main())
