"""``python -m recrepro`` runs the command-line interface."""

import sys

from recrepro.cli import main

sys.exit(main())
