"""``python -m ratagent`` runs the command line."""

import sys

from ratagent.cli import main

sys.exit(main())
