"""The capture benchmark: `make bench` and `make profile` run this file (see bench/README.md).

The parts live in bench/benchlib/, one module per concern: proc (CPU and memory from /proc),
postgres (the server and the tools), service (the service process), load (wrk and pgbench
phases), data (generated purchases and table growth), report (table, targets, Markdown), runs
(the full run), profile (py-spy), cli (options, cleanup, exit status).
"""

from __future__ import annotations

import sys

from benchlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
