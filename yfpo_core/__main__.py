import sys

from yfpo_core.cli import main

sys.exit(main())
