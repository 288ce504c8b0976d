# The ledger's processes (ingest, relay, CLI) as one image; docker-compose.yml runs it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY consumers consumers
COPY projections projections
COPY schemas schemas
RUN pip install --no-cache-dir . && useradd --system ledger
USER ledger
ENTRYPOINT ["ledger"]
