# syntax=docker/dockerfile:1
# stadtlink: one image for every adapter (`stadtlink run ADAPTER --config FILE`), the @context
# server of the Helm chart (`python -m stadtlink.adapters.core.context_server`) and the other CLI commands.
#
#   docker build -t ghcr.io/stadtlink/stadtlink:0.1.0 .
#   docker run --rm ghcr.io/stadtlink/stadtlink:0.1.0 adapters
#
# Base: the official Python 3.11 slim image on Debian 12, pinned by its full version tag. No digest
# is given because none could be checked when this was written; to pin one, resolve the tag with
# `docker buildx imagetools inspect python:3.11.13-slim-bookworm` and build with
# --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- stage 1: build the wheel and install it with its dependencies into a virtual environment -------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# exactly what the distribution is made of (tests/image/ builds the wheel from the same files)
COPY pyproject.toml setup.py README.md ./
COPY stadtlink ./stadtlink
COPY adapters ./adapters
COPY broker_client ./broker_client
COPY schemas ./schemas
# every runtime dependency ships manylinux wheels for CPython 3.11, so no compiler is needed here
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/stadtlink \
 && /opt/stadtlink/bin/python -m pip install /wheels/stadtlink-*.whl \
 && /opt/stadtlink/bin/python -m pip uninstall --yes pip setuptools wheel \
 && /opt/stadtlink/bin/python -m compileall -q /opt/stadtlink/lib \
 && /opt/stadtlink/bin/stadtlink adapters

# --- stage 2: the runtime: the venv, a non-root user, nothing to build or install with -------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="stadtlink" \
      org.opencontainers.image.description="Device data (parking, weather stations, river gauges, PV inverters) as FIWARE Smart Data Models entities in an NGSI-LD broker" \
      org.opencontainers.image.source="https://github.com/stadtlink/stadtlink" \
      org.opencontainers.image.licenses="Apache-2.0"
# the base image's own pip/setuptools/wheel go too: the final image installs nothing
RUN python -m pip uninstall --yes --quiet pip setuptools wheel 2>/dev/null || true \
 && groupadd --system --gid 10001 stadtlink \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin stadtlink
COPY --from=build /opt/stadtlink /opt/stadtlink
ENV PATH=/opt/stadtlink/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd
USER 10001:10001
WORKDIR /tmp
EXPOSE 9100 8080
ENTRYPOINT ["stadtlink"]
CMD ["--help"]
