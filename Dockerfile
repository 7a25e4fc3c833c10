# Home Assistant add-on image (also usable on its own, see docker-compose.yml).
# The base image is pinned to a docker-base release; Supervisor no longer passes
# BUILD_FROM (build.yaml is deprecated), so the default below is what gets built.
ARG BUILD_FROM=ghcr.io/home-assistant/base-python:3.13-alpine3.24-2026.06.1
FROM ${BUILD_FROM}

# Supervisor passes both; the defaults serve plain `docker build`.
ARG BUILD_ARCH=amd64
ARG BUILD_VERSION=0.1.0

# Build from the repository's own source, with every Python package at the
# version constraints.txt pins (scripts/update-constraints.sh renews it), so a
# rebuild installs the same packages. gcc and musl-dev are only needed while
# crcmod compiles its C extension (every other dependency ships musllinux
# wheels or is pure Python); they are removed in the same layer. Their versions
# come from the pinned Alpine release, so they are not pinned again (DL3018).
COPY pyproject.toml README.md constraints.txt /tmp/src/
COPY src /tmp/src/src
COPY protos /tmp/src/protos
# hadolint ignore=DL3018
RUN apk add --no-cache --virtual .build-deps gcc musl-dev \
    && pip install --no-cache-dir -c /tmp/src/constraints.txt /tmp/src \
    && apk del --no-network .build-deps \
    && rm -rf /tmp/src \
    && hoymiles-bridge --version

# s6-overlay service definitions (the base image's /init starts them).
COPY rootfs /

HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8099/health', timeout=8)"]

LABEL \
    io.hass.name="Hoymiles DTU Bridge" \
    io.hass.description="Local bridge between Hoymiles DTUs and MQTT with Home Assistant discovery" \
    io.hass.arch="${BUILD_ARCH}" \
    io.hass.type="app" \
    io.hass.version="${BUILD_VERSION}" \
    org.opencontainers.image.title="Hoymiles DTU Bridge" \
    org.opencontainers.image.description="Local bridge between Hoymiles DTUs and MQTT with Home Assistant discovery" \
    org.opencontainers.image.version="${BUILD_VERSION}" \
    org.opencontainers.image.source="https://github.com/hoymiles-dtu-bridge/hoymiles-dtu-bridge" \
    org.opencontainers.image.licenses="Apache-2.0" \
    org.opencontainers.image.authors="Hoymiles DTU Bridge developers"
