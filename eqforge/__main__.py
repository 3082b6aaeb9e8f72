import sys

from eqforge.cli import main

sys.exit(main())
