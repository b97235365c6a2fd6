# weightguard images. No torch in the default targets; `torch` adds the probe suite for GPU hosts.
#   docker build --target core -t weightguard .                 # CLI: docker run --rm -v "$PWD/models:/models:ro" weightguard verify /models/m
#   docker build --target sidecar -t weightguard-sidecar .      # HTTP sidecar on :8080 (healthcheck on /healthz)
#   docker build --target torch -t weightguard-sidecar-gpu .    # sidecar + torch/transformers for trigger probes
# Replicas: WEIGHTGUARD_DATABASE=postgresql://USER:PASSWORD@HOST:5432/DB shares one job queue, rollout
# record and results cache between sidecars; deploy/compose.yaml runs 3 replicas and one PostgreSQL.
FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 weightguard \
 && mkdir -p /var/lib/weightguard && chown weightguard /var/lib/weightguard
WORKDIR /opt/weightguard
COPY pyproject.toml README.md ./
COPY weightguard ./weightguard
COPY policies ./policies

FROM base AS core
RUN pip install .
USER weightguard
WORKDIR /home/weightguard
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["weightguard", "--version"]
ENTRYPOINT ["weightguard"]
CMD ["--help"]

FROM base AS sidecar
RUN pip install '.[sidecar,postgres]'
USER weightguard
WORKDIR /home/weightguard
# The API token comes from WEIGHTGUARD_API_TOKEN or a mounted WEIGHTGUARD_API_TOKEN_FILE.
ENV WEIGHTGUARD_HOST=0.0.0.0 WEIGHTGUARD_PORT=8080 WEIGHTGUARD_DATABASE=sqlite:////var/lib/weightguard/rollout.db
VOLUME /var/lib/weightguard
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request;urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WEIGHTGUARD_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["weightguard"]
CMD ["serve"]

FROM sidecar AS torch
USER root
RUN pip install '.[sidecar,postgres,probes]'
USER weightguard
