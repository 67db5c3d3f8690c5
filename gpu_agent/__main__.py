"""`python -m gpu_agent [--listen HOST:PORT] [--interval-seconds S] ...`: runs the per-node GPU agent."""

import sys

from gpu_agent.main import run

sys.exit(run())
