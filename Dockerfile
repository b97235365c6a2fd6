# weightguard images. No torch in the default targets; `torch` adds the probe suite for GPU hosts.
#   docker build --target core -t weightguard .                 # CLI: docker run --rm -v "$PWD/models:/models:ro" weightguard verify /models/m
#   docker build --target sidecar -t weightguard-sidecar .      # HTTP sidecar on :8080 (healthcheck on /healthz)
#   docker build --target torch -t weightguard-sidecar-gpu .    # sidecar + torch/transformers for trigger probes
#
# Supply chain (issue 18):
# - The base image is pinned by digest: the multi-arch index of python:3.11.10-slim-bookworm, as recorded by
#   Renovate in nalabelle/build (images/digests.Dockerfile) and used by other public Dockerfiles, some of them
#   as python:3.11-slim@sha256:5148c0e4.... Move it forward deliberately (docker buildx imagetools inspect
#   python:3.11-slim, or a Renovate/Dependabot digest update), never by re-tagging.
# - Every dependency comes from a lock file with hashes (ci/lock-requirements runs pip-compile --generate-hashes),
#   installed with --require-hashes in its own layer before any source is copied, so code edits reuse that layer.
# - weightguard itself is built from this source into a wheel and installed with --no-deps --no-index: the name
#   "weightguard" on the public package index belongs to someone else and is never asked for.
# - The CLI image has no HEALTHCHECK (it is a one-shot command); only the long-running sidecar has one.

# Replicas: WEIGHTGUARD_DATABASE=postgresql://USER:PASSWORD@HOST:5432/DB shares one job queue, rollout
# record and results cache between sidecars; deploy/compose.yaml runs 3 replicas and one PostgreSQL.
FROM python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16 AS base
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="weightguard" \
      org.opencontainers.image.description="Model-weight supply-chain verifier: safe loading, integrity, signatures, conversion and backdoor probes." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="weightguard maintainers" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.10-slim-bookworm" \
      org.opencontainers.image.base.digest="sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 weightguard \
 && mkdir -p /var/lib/weightguard && chown weightguard /var/lib/weightguard
WORKDIR /opt/weightguard

# The wheel of this source, built with the locked build backend (no build isolation: nothing unpinned is fetched).
FROM base AS wheel
COPY requirements-build.lock ./
RUN pip install --require-hashes -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY weightguard ./weightguard
RUN pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /dist .

FROM base AS core
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY --from=wheel /dist /dist
COPY policies ./policies
RUN pip install --no-deps --no-index /dist/*.whl
USER weightguard
WORKDIR /home/weightguard
ENTRYPOINT ["weightguard"]
CMD ["--help"]

FROM base AS sidecar
COPY requirements-sidecar.lock ./
RUN pip install --require-hashes -r requirements-sidecar.lock
COPY --from=wheel /dist /dist
COPY policies ./policies
RUN pip install --no-deps --no-index /dist/*.whl
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

# The sidecar with torch/transformers: its own dependency layer (sidecar + probes extras), then the same wheel.
FROM base AS torch
COPY requirements-probes.lock ./
RUN pip install --require-hashes -r requirements-probes.lock
COPY --from=wheel /dist /dist
COPY policies ./policies
RUN pip install --no-deps --no-index /dist/*.whl
USER weightguard
WORKDIR /home/weightguard
ENV WEIGHTGUARD_HOST=0.0.0.0 WEIGHTGUARD_PORT=8080 WEIGHTGUARD_DATABASE=sqlite:////var/lib/weightguard/rollout.db
VOLUME /var/lib/weightguard
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request;urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WEIGHTGUARD_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["weightguard"]
CMD ["serve"]
