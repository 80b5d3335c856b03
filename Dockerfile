# drillbot: the bot (HTTP mode) in a small image, running as a non-root user.
#
#   docker build -t drillbot .
#   docker run --env-file .env -p 3000:3000 drillbot
#
# Port 3000 is Slack's (publish it); port 9300 serves /metrics for Prometheus (METRICS_PORT): scrape it
# over the container network and do not publish it. See deploy/prometheus.yml.
#
# Several replicas with PostgreSQL: see docker-compose.yml and docs/operations.md.

# -- build: wheels for drillbot and every dependency (PostgreSQL driver included) --------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY storage ./storage
RUN pip wheel --wheel-dir /wheels '.[postgres]'

# -- run ---------------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=3000 \
    METRICS_PORT=9300 \
    METRICS_HOST=0.0.0.0 \
    QUESTIONS_FILE=/app/questions.yaml
RUN groupadd --system --gid 10001 drillbot \
    && useradd --system --uid 10001 --gid drillbot --home-dir /app --no-create-home --shell /usr/sbin/nologin drillbot
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels 'drillbot[postgres]' && rm -rf /wheels
WORKDIR /app
COPY --chown=drillbot:drillbot questions.yaml ./
# /app is the bot's own (a SQLite DATABASE_URL such as sqlite:///drills.db lives here; mount a volume on
# /app/data and use sqlite:////app/data/drills.db to keep it, or use PostgreSQL).
RUN mkdir -p /app/data && chown -R drillbot:drillbot /app
USER drillbot
# 3000: Slack's requests, /healthz, /readyz. 9300: /metrics, for Prometheus on the container network only.
EXPOSE 3000 9300
# Ready = the scheduler runs and the database answers (GET /readyz); urlopen raises on a 503.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4)"]
# Exec form: drillbot is PID 1 and gets SIGTERM itself (it finishes in-flight work and exits within 10 s).
CMD ["drillbot", "run", "--http", "--port", "3000"]
