# The ledger's processes (ingest, relay, project, serve, notify) and its CLI as one image;
# docker-compose.yml runs each as its own container. tools/ holds the auditor's standalone
# chain verifier (`--entrypoint python ... tools/verify_chain.py`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY consumers consumers
COPY projections projections
COPY schemas schemas
COPY tools tools
RUN pip install --no-cache-dir . && useradd --system --uid 10001 ledger
USER ledger
# `ledger serve` (LEDGER_API_PORT); it listens on LEDGER_API_HOST, 0.0.0.0 in the compose file.
EXPOSE 8600
ENTRYPOINT ["ledger"]
