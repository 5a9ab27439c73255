FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY spanwatch ./spanwatch
COPY ingest ./ingest
COPY flows ./flows
COPY detectors ./detectors
COPY rules ./rules
RUN pip install --no-cache-dir .
ENTRYPOINT ["spanwatch"]
CMD ["run"]
