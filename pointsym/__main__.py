import sys

from pointsym.cli import main

sys.exit(main())
