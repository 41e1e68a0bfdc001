# Dinosaurus: the API, its training worker and the shipped models in one small image.
# Build: docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)" -t dinosaurus .
# BASE_IMAGE must be Debian-like with python3 (3.11+) and its venv module; scripts/docker-smoke
# builds with a debootstrap stand-in where no image registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- builder: the package and its dependencies installed into a venv (no pip cache, no sources kept)
FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer stays cached while only the code changes.
COPY pyproject.toml ./
RUN python3 -m venv /opt/venv \
 && python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
    > /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
COPY README.md ./
COPY app ./app
COPY model_store/__init__.py ./model_store/
COPY model_store/dinos ./model_store/dinos
COPY model_store/shakespeare ./model_store/shakespeare
RUN /opt/venv/bin/pip install --no-cache-dir . \
 && /opt/venv/bin/python -I -c "from app.charlm.store import BUILTIN_DIR as d; assert str(d).startswith('/opt/venv/') and (d / 'dinos' / 'model.json').is_file(), d"

# --- runtime: the base image plus the venv, run as a numeric non-root user
FROM ${BASE_IMAGE}
ARG GIT_COMMIT=""
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DINO_STORE_DIR=/var/lib/dinosaurus \
    DINO_PORT=8000 \
    DINO_COMMIT=${GIT_COMMIT}
COPY --from=builder /opt/venv /opt/venv
RUN groupadd --system --gid 10001 dino \
 && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /var/lib/dinosaurus --shell /usr/sbin/nologin dino \
 && mkdir -p /var/lib/dinosaurus \
 && chown 10001:10001 /var/lib/dinosaurus
WORKDIR /var/lib/dinosaurus
USER 10001:10001
VOLUME ["/var/lib/dinosaurus"]
EXPOSE 8000
# Ready (models loaded) on the port the server listens on; DINO_PORT moves both.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['DINO_PORT']}/readyz\", timeout=2)"]
CMD ["dinosaurus", "serve", "--host", "0.0.0.0"]
