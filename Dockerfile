# spanwatch image (docker-compose.yml builds it). tests/deploy/test_dockerfile.py runs this
# ENTRYPOINT + CMD from the project's venv and checks every COPY source exists.

FROM python:3.11-slim AS build
# A venv, so the runtime stage copies one directory and `spanwatch` is on PATH.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
# Every package of [tool.setuptools.packages.find] in pyproject.toml (the test checks this).
COPY spanwatch ./spanwatch
COPY ingest ./ingest
COPY metrics ./metrics
COPY detectors ./detectors
COPY rules ./rules
COPY notify ./notify
COPY flows ./flows
RUN pip install --no-cache-dir .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
# A fixed unprivileged user owning the state directory; a named volume mounted there starts
# with this ownership.
RUN useradd --system --uid 10001 --home-dir /var/lib/spanwatch --shell /usr/sbin/nologin spanwatch \
    && mkdir -p /var/lib/spanwatch \
    && chown spanwatch /var/lib/spanwatch
COPY --from=build /opt/venv /opt/venv
# Default rules; docker-compose.yml mounts ./alerts.toml over it.
COPY alerts.toml /etc/spanwatch/alerts.toml
ENV SPANWATCH_RULES_FILE=/etc/spanwatch/alerts.toml
# Relative state paths (spanwatch-state/, spanwatch-digests/, silences.json) land here.
WORKDIR /var/lib/spanwatch
USER spanwatch
# /metrics, /healthz, /readyz (SPANWATCH_HTTP_PORT)
EXPOSE 9464
ENTRYPOINT ["spanwatch"]
CMD ["run"]
