# One image, every role: `api` (default), `worker`, `beat`, `migrate` — the litebase command.
#   docker build -t litebase .
#   docker run --env-file .env -p 8000:8000 litebase            # the API
#   docker run --env-file .env litebase worker --concurrency 4   # a Celery worker
#   docker run --env-file .env litebase migrate                  # migrations, then exit
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/litebase
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY workers ./workers
# Every dependency ships wheels for linux/amd64 and arm64: no compiler in either stage.
RUN /opt/litebase/bin/pip install --upgrade pip \
 && /opt/litebase/bin/pip install . \
 && find /opt/litebase -name '__pycache__' -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="litebase" \
      org.opencontainers.image.description="Litebase API, workers, beat and migrations"
RUN groupadd --system --gid 10001 litebase \
 && useradd --system --uid 10001 --gid litebase --home-dir /app --shell /usr/sbin/nologin litebase
COPY --from=build /opt/litebase /opt/litebase
WORKDIR /app
# Nothing is written to the image at run time: no bytecode, temporary files under /tmp (a
# tmpfs volume on ECS, so the root filesystem can be read-only).
ENV PATH=/opt/litebase/bin:$PATH \
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
