# weightguard image: the core scanner and verifier, no torch, non-root.
# Build: docker build -t weightguard .   Run: docker run --rm -v "$PWD/models:/models:ro" weightguard scan /models
FROM python:3.11-slim AS core

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

RUN useradd --create-home --uid 10001 weightguard
WORKDIR /opt/weightguard
COPY pyproject.toml README.md ./
COPY weightguard ./weightguard
COPY policies ./policies
RUN pip install .

USER weightguard
WORKDIR /home/weightguard
# The sidecar (`weightguard serve`) answers GET /healthz; the plain CLI image checks the binary runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["weightguard", "--version"]
ENTRYPOINT ["weightguard"]
CMD ["--help"]
