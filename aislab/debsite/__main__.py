"""`python -m aislab.debsite`: build the real site (see build.py)."""

import sys

from aislab.debsite.build import main

sys.exit(main())
