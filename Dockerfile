# syntax=docker/dockerfile:1
# Purchase capture service: `docker compose up` (see compose.yaml) or
#   docker build -t purchase-capture .
# The base image is a build argument so that a mirror or a pinned digest can be used
# (and so that `make container-test` can build this same file on a machine without a registry).
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a venv with exactly what uv.lock pins for the runtime, the service's wheel in it ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_SYSTEM_CERTS=1
WORKDIR /src

# uv, at the version and hashes in requirements-uv.txt, in this stage only. UV_SYSTEM_CERTS:
# it trusts the image's CA store, as pip does (a build behind a proxy with its own CA works).
# UV_COMPILE_BYTECODE: the .pyc files ship in the venv, as pip's did; the runtime never writes
# them (PYTHONDONTWRITEBYTECODE), so without them every start would compile every module.
COPY requirements-uv.txt ./
RUN python -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements-uv.txt

# The runtime dependencies first, from uv.lock alone (--locked: a lock that disagrees with
# pyproject.toml fails the build), so that this slow layer is reused until the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --locked --no-dev --no-install-project --no-editable --python python

# Then the service itself, as a wheel (not editable: /src stays behind). The venv is copied
# whole: a COPY's cache key is its content, so a new wheel always reaches the runtime image (a
# RUN with a bind mount from this stage is cached by its command line alone in buildah, and
# kept installing the previous wheel). A venv made by uv holds no pip.
COPY README.md ./
COPY app ./app
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --locked --no-dev --no-editable --python python

# ---- runtime: the interpreter, a venv with the wheels, no compilers, no pip ------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    APP_ENVIRONMENT=prod \
    APP_LOG_FORMAT=json \
    APP_LOG_LEVEL=INFO \
    APP_STATIC_DIR=/app/static \
    WEB_CONCURRENCY=1
# No APP_ADMIN_TOKEN and no APP_DATABASE_URL here: both are given when the container starts,
# and the service refuses to start in prod without a token.

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
RUN python -c "import app.main, app.__main__"

WORKDIR /app
COPY alembic.ini ./
COPY alembic ./alembic
COPY static ./static
COPY deploy/uvicorn-logging.json ./

# Numeric, so that "runs as non-root" can be checked without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000

# python:*-slim has no curl; the interpreter is enough to ask /healthz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# `python -m app` (uvicorn with a bounded request head, exit 0 after a clean SIGTERM) runs as
# PID 1 (exec form), so SIGTERM reaches it: it stops accepting, finishes the
# requests in flight (at most UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN seconds) and exits.
# Worker processes: WEB_CONCURRENCY (uvicorn reads it for --workers). `--lifespan on` makes a
# failed startup (no APP_ADMIN_TOKEN, say) end the process instead of serving 500s. The log
# config leaves all output to the app's JSON logging (uvicorn's own plain startup lines, written
# before the app has configured logging, are dropped).
STOPSIGNAL SIGTERM
ENV UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=20
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "8000", "--lifespan", "on", \
     "--log-config", "/app/uvicorn-logging.json", "--proxy-headers", "--no-server-header"]
