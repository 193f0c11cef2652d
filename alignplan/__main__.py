import sys

from alignplan.cli import main

sys.exit(main())
