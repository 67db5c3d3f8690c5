"""`python -m sidecar ...`: the same command line as `predictive-autoscaler`."""

import sys

from sidecar.cli import main

sys.exit(main())
