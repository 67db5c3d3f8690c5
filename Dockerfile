# One image, two processes: the sidecar (`predictive-autoscaler serve`, the default) and the GPU node
# agent (`python -m gpu_agent`, the DaemonSet's command). Build: docker build -t predictive-autoscaler:0.1.0 .

# Patch-level tag so rebuilds are reproducible; pin the digest too in a registry you mirror.
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY autoscaler ./autoscaler
COPY forecasting ./forecasting
COPY metrics_adapter ./metrics_adapter
COPY sidecar ./sidecar
COPY gpu_agent ./gpu_agent
COPY simulator ./simulator
# A virtualenv copied whole into the runtime stage: no compilers or pip caches there.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    # Matplotlib writes a font cache; the root filesystem is read-only in the cluster, /tmp is not.
    MPLCONFIGDIR=/tmp/matplotlib \
    HEALTH_URL=http://127.0.0.1:8080/healthz
# LightGBM's wheel links the system OpenMP runtime, which the slim base leaves out; without it
# `serve` fails at import. Not pinned: Debian keeps only a release's newest revision in its
# archive, so an exact pin would break the build at the next point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 autoscaler \
    && useradd --system --uid 10001 --gid autoscaler --no-create-home --shell /usr/sbin/nologin autoscaler
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
# 8080 health and /metrics, 6443 external metrics API (HTTPS), 9090 KEDA gRPC, 9400 GPU agent.
EXPOSE 8080 6443 9090 9400
# Kubernetes ignores HEALTHCHECK and uses the manifests' probes; this serves `docker run`. For the
# agent, pass -e HEALTH_URL=http://127.0.0.1:9400/healthz (nothing in the DaemonSet sets it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["predictive-autoscaler"]
CMD ["serve", "--config", "/etc/predictive-autoscaler/config.yaml"]
