# aggregator: the daemon (poller + HTTP feeds) on SQLite in /data by default.
#   docker build -t aggregator .
#   docker run -d -p 8080:8080 -v aggregator-data:/data -e AGGREGATOR_BASE_URL=http://localhost:8080 aggregator
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AGGREGATOR_HTTP_HOST=0.0.0.0 \
    AGGREGATOR_HTTP_PORT=8080 \
    AGGREGATOR_DATABASE_URL=sqlite:////data/aggregator.db \
    AGGREGATOR_CONFIG=/app/config/aggregator.toml \
    AGGREGATOR_SOURCES_FILE=/app/config/sources.toml

WORKDIR /app
COPY pyproject.toml README.md ./
COPY aggregator ./aggregator
COPY config ./config
RUN pip install '.[postgres]' \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin aggregator \
    && mkdir -p /data \
    && chown aggregator:aggregator /data

USER aggregator
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AGGREGATOR_HTTP_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["aggregator"]
CMD ["run"]
