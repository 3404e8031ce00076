"""`python -m app [uvicorn options]`: how the service is run (make run, the container).

uvicorn's own command line, with these changes:
- SIGTERM: uvicorn finishes the requests in flight and then raises the signal again, so the
  process ends "killed by SIGTERM" (status 143), which orchestrators report as a failure. Here
  that re-raised SIGTERM, sent only once uvicorn has shut down cleanly, exits with 0 instead.
- A bounded request head by default: uvicorn's httptools protocol (the faster parser) as
  `app.core.server.BoundedHttpToolsProtocol`, which refuses a request line and headers over
  MAX_HEAD_BYTES with 431; plain httptools reads one of any size into memory. An explicit
  `--http h11` gets the same bound (`--h11-max-incomplete-event-size`, refused with 400) unless
  that option is given too; `--http httptools` or `auto` has none (behind a proxy that bounds
  headers itself).
- X-Forwarded-For is not believed from anyone by uvicorn (`--no-proxy-headers`): the app
  believes it from APP_TRUSTED_PROXIES only (app.main).
- Settings are checked before uvicorn starts: bad ones exit with uvicorn's startup-failure
  status 3 whatever the worker count. With `--workers` (the container's WEB_CONCURRENCY=2),
  uvicorn's supervisor stops when a worker fails to start but then exits 0, which reads as a
  clean stop to an orchestrator.
- With several workers, metrics are kept in prometheus_client's multiprocess mode: a directory
  of this run's own, made (or emptied) here before the workers start (app.core.multiprocess).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from app.core.multiprocess import prepared_directory
from app.core.server import MAX_HEAD_BYTES, BoundedHttpToolsProtocol
from app.core.settings import InvalidSettings, Settings, describe_invalid

HTTP_PROTOCOL = f"{BoundedHttpToolsProtocol.__module__}:{BoundedHttpToolsProtocol.__name__}"
H11_LIMIT_OPTION = "--h11-max-incomplete-event-size"
# uvicorn believes X-Forwarded-For from 127.0.0.1 unless told not to; the app does that itself,
# from APP_TRUSTED_PROXIES only, unless one of these options asks uvicorn to.
PROXY_OPTIONS = ("--proxy-headers", "--no-proxy-headers", "--forwarded-allow-ips")


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def _option_value(options: list[str], name: str) -> str | None:
    """The value of `name` in a click command line (`--x value` or `--x=value`), else None."""
    for index, option in enumerate(options):
        if option == name:
            return options[index + 1] if index + 1 < len(options) else ""
        if option.startswith(f"{name}="):
            return option.partition("=")[2]
    return None


def uvicorn_args(options: list[str]) -> list[str]:
    """uvicorn's arguments for `python -m app <options>`: the bounded head unless `--http` says
    otherwise (an import string, so that `--workers` processes load the class too)."""
    http = _option_value(options, "--http")
    if http is None:
        options = ["--http", HTTP_PROTOCOL, *options]
    elif http == "h11" and _option_value(options, H11_LIMIT_OPTION) is None:
        options = [H11_LIMIT_OPTION, str(MAX_HEAD_BYTES), *options]
    if not any(option.startswith(PROXY_OPTIONS) for option in options):
        options = [*options, "--no-proxy-headers"]
    return ["app.main:app", *options]


def check_settings() -> None:
    """Exit 3 with the reason on stderr if the environment holds settings the app refuses."""
    try:
        Settings()
    except InvalidSettings as error:
        print(describe_invalid(error), file=sys.stderr)
        sys.exit(STARTUP_FAILURE)


def worker_count(options: list[str]) -> int:
    """How many worker processes uvicorn will run: `--workers`, else WEB_CONCURRENCY, else 1;
    one under `--reload`, which ignores both."""
    if "--reload" in options:
        return 1
    value = _option_value(options, "--workers") or os.environ.get("WEB_CONCURRENCY") or "1"
    try:
        return int(value)
    except ValueError:
        return 1  # uvicorn refuses it itself, with its own message


def main() -> None:
    check_settings()
    signal.signal(signal.SIGTERM, _exit_cleanly)
    options = sys.argv[1:]
    # Before uvicorn spawns the workers, which inherit the directory through the environment;
    # removed (if made here) once uvicorn has stopped them all.
    with prepared_directory(worker_count(options)):
        uvicorn.main(args=uvicorn_args(options), prog_name="python -m app")


if __name__ == "__main__":
    main()
