"""`python -m ingressctl` runs the command line."""

import sys

from ingressctl.cli import main

sys.exit(main())
