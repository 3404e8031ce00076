"""`python -m app [uvicorn options]`: how the service is run (make run, the container).

uvicorn's own command line, with two changes:
- SIGTERM: uvicorn finishes the requests in flight and then raises the signal again, so the
  process ends "killed by SIGTERM" (status 143), which orchestrators report as a failure. Here
  that re-raised SIGTERM, sent only once uvicorn has shut down cleanly, exits with 0 instead.
- The h11 protocol by default: it refuses a request head (request line and headers) over
  H11_MAX_HEAD_BYTES with 400; httptools reads one of any size into memory. Behind a proxy that
  bounds headers itself, `--http httptools` is faster.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn

H11_MAX_HEAD_BYTES = 64 * 1024


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_cleanly)
    options = sys.argv[1:]
    if not any(option.startswith("--http") for option in options):
        head_limit = ["--h11-max-incomplete-event-size", str(H11_MAX_HEAD_BYTES)]
        options = ["--http", "h11", *head_limit, *options]
    uvicorn.main(args=["app.main:app", *options], prog_name="python -m app")


if __name__ == "__main__":
    main()
