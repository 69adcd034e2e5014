# aggregator: the daemon (poller + HTTP feeds) on SQLite in /data by default.
#   docker build -t aggregator .
#   docker run -d --name aggregator -p 8080:8080 --stop-timeout 30 \
#     -v aggregator-data:/data -v "$PWD/config:/config:ro" \
#     -e AGGREGATOR_BASE_URL=https://news.example.org aggregator
# --stop-timeout (compose: stop_grace_period) must exceed shutdown_grace (20 s) so
# in-flight polls finish before Docker's SIGKILL; the default 10 s cuts them off.
# /config holds aggregator.toml and sources.toml: mount your own folder there (a
# folder, not single files, so an edited sources.toml is seen and reloaded).

# A fixed release; bump it (and rebuild) for Python security fixes.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AGGREGATOR_HTTP_HOST=0.0.0.0 \
    AGGREGATOR_HTTP_PORT=8080 \
    AGGREGATOR_DATABASE_URL=sqlite:////data/aggregator.db \
    AGGREGATOR_CONFIG=/config/aggregator.toml \
    AGGREGATOR_SOURCES_FILE=/config/sources.toml

WORKDIR /app

# Dependencies first, from the lock file: a code change rebuilds only the layers below.
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock

COPY pyproject.toml README.md ./
COPY aggregator ./aggregator
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin aggregator \
    && mkdir -p /data \
    && chown aggregator:aggregator /data

COPY config /config

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# The daemon stops cleanly on SIGTERM (in-flight polls get shutdown_grace seconds).
STOPSIGNAL SIGTERM
# /healthz is 200 while the database answers, also when feeds fail ("degraded"):
# restarting the container mends no feed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AGGREGATOR_HTTP_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["aggregator"]
CMD ["run"]
