# One image, every role: `api` (default), `worker`, `beat`, `migrate` — the litebase command.
#   docker build -t litebase .
#   docker run --env-file .env -p 8000:8000 litebase            # the API
#   docker run --env-file .env litebase worker --concurrency 4   # a Celery worker
#   docker run --env-file .env litebase migrate                  # migrations, then exit
# What it installs is uv.lock's runtime set, hashes checked: no dev tools and no embedded
# servers (the `dev` and `embedded` extras). tests/unit/test_image.py runs the same export.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never
WORKDIR /src
# uv itself, pinned and hash-checked; it stays in this stage.
COPY requirements/uv.txt requirements/uv.txt
RUN python -m pip install --require-hashes --no-deps -r requirements/uv.txt
# Every dependency ships wheels for linux/amd64 and arm64: no compiler in either stage. The
# project itself is not built (no unpinned build backend): its code is copied in below.
COPY pyproject.toml uv.lock ./
COPY clients/python/pyproject.toml clients/python/pyproject.toml
RUN python -m uv export --frozen --offline --no-dev --no-emit-workspace --format requirements-txt > requirements.txt \
 && python -m venv /opt/litebase \
 && python -m uv pip install --python /opt/litebase/bin/python --require-hashes --no-deps -r requirements.txt \
 && printf '#!/bin/sh\nexec /opt/litebase/bin/python -m backend.cli "$@"\n' > /opt/litebase/bin/litebase \
 && chmod 0755 /opt/litebase/bin/litebase \
 && find /opt/litebase -name '__pycache__' -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="litebase" \
      org.opencontainers.image.description="Litebase API, workers, beat and migrations"
RUN groupadd --system --gid 10001 litebase \
 && useradd --system --uid 10001 --gid litebase --home-dir /app --shell /usr/sbin/nologin litebase
COPY --from=build /opt/litebase /opt/litebase
WORKDIR /app
COPY backend ./backend
COPY workers ./workers
# Nothing is written to the image at run time: no bytecode, temporary files under /tmp (a
# tmpfs volume on ECS, so the root filesystem can be read-only).
ENV PATH=/opt/litebase/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITEBASE_ENV=prod \
    LITEBASE_DATA_DIR=/tmp/litebase \
    LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
ENTRYPOINT ["litebase"]
CMD ["api"]
