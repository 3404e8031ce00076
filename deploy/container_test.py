#!/usr/bin/env python3
"""`make container-test`: build the real Dockerfile, bring the real compose.yaml up, use it.

These machines have no Docker engine and reach no image registry, so the test runs the same
files with Debian's podman and PyPI's podman-compose, on local stand-ins for the two official
base images, built from Debian packages with debootstrap:

  localhost/standin/python:3.11-slim   Debian 12, python3 (3.11) + venv + pip, `python` command
  localhost/standin/postgres:17        Debian 13, PostgreSQL 17, with an entrypoint that follows
                                       the official image's contract (deploy/standin/)

They are kept in podman's own storage (so every clone on the machine shares them) and rebuilt
only when missing or when their recipe changes (a label holds the recipe's hash).
The python stand-in also trusts the extra CAs this host trusts (/usr/local/share/ca-certificates),
so that pip and uv inside the image build reach PyPI as the host does; the Dockerfile is untouched.
podman-compose runs podman through deploy/podman-compat, which supplies what Debian 12's podman
4.3 lacks for compose.yaml's depends_on conditions (see that file).

Steps, each timed: prerequisites (apt), stand-in images, image build (compose's `build:`; then
checks: non-root, health check, no build or dev tools (no pip, no uv), no secrets baked in, no
start without a token), compose without the required secrets, compose up (db -> migrate -> app,
the order checked from podman's timestamps), health, API round trip (page and /docs with their
assets, two purchases, one customer), app restart, JSON logs, SIGTERM stop, compose down -v.
Teardown runs whatever happens, also on SIGTERM or Ctrl-C.

Environment: APP_PORT (host port; default: a free one), CONTAINER_TEST_KEEP=1 (leave the stack
up on failure, for a look), DEBIAN_MIRROR (default http://deb.debian.org/debian),
PODMAN_COMPOSE (default .venv/bin/podman-compose).
The parts live in deploy/containertest/: common (paths, environment, timed steps), images
(prerequisites and stand-in base images), compose (the stack under podman-compose), checks
(what the steps verify) and run (the steps in order).
"""

from __future__ import annotations

import sys

from containertest.run import main

if __name__ == "__main__":
    sys.exit(main())
