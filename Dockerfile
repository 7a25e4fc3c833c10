# Home Assistant add-on image (also usable on its own, see docker-compose.yml).
# The base image is pinned to a docker-base release; Supervisor no longer passes
# BUILD_FROM (build.yaml is deprecated), so the default below is what gets built.
ARG BUILD_FROM=ghcr.io/home-assistant/base-python:3.13-alpine3.24-2026.06.1
# The architecture label follows the platform being built: the Supervisor and
# Home Assistant's builder pass BUILD_ARCH (aarch64, amd64); otherwise BuildKit's
# TARGETARCH (amd64, arm64) picks one of the stages below, which give Home
# Assistant's name for it. Any other platform has no stage and fails the build.
ARG TARGETARCH=amd64

FROM ${BUILD_FROM} AS platform-amd64
ENV HOYMILES_BRIDGE_ARCH=amd64

FROM ${BUILD_FROM} AS platform-arm64
ENV HOYMILES_BRIDGE_ARCH=aarch64

# The stage is one of ours above, built on the pinned BUILD_FROM (hence DL3006).
# hadolint ignore=DL3006
FROM platform-${TARGETARCH}

# Supervisor passes both; without them the label uses the platform's arch and
# the version below.
ARG BUILD_ARCH
ARG BUILD_VERSION=0.1.0

# s6 waits this long (ms) after SIGTERM before it kills the bridge: the
# bridge's goodbye is bounded at 10 s (MQTT) + 2 s (web server); config.yaml's
# timeout (Docker's wait before SIGKILL) is longer still.
ENV S6_SERVICES_GRACETIME=20000

# Build from the repository's own source, with every Python package at the
# version constraints.txt pins (scripts/update-constraints.sh renews it and checks
# that each has a musllinux wheel for both architectures), so a rebuild installs
# the same packages, and from wheels only: nothing compiles on a Raspberry Pi.
COPY pyproject.toml README.md constraints.txt /tmp/src/
COPY src /tmp/src/src
COPY protos /tmp/src/protos
RUN pip install --no-cache-dir --only-binary=:all: -c /tmp/src/constraints.txt /tmp/src \
    && rm -rf /tmp/src \
    && hoymiles-bridge --version

# s6-overlay service definitions (the base image's /init starts them).
COPY rootfs /

# curl comes with the base image (docker-base installs it). --start-interval
# checks every 5 s while the add-on starts, so it turns healthy soon after.
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --start-interval=5s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--max-time", "8", "--output", "/dev/null", "http://127.0.0.1:8099/health"]

LABEL \
    io.hass.name="Hoymiles DTU Bridge" \
    io.hass.description="Local bridge between Hoymiles DTUs and MQTT with Home Assistant discovery" \
    io.hass.arch="${BUILD_ARCH:-${HOYMILES_BRIDGE_ARCH}}" \
    io.hass.type="app" \
    io.hass.version="${BUILD_VERSION}" \
    org.opencontainers.image.title="Hoymiles DTU Bridge" \
    org.opencontainers.image.description="Local bridge between Hoymiles DTUs and MQTT with Home Assistant discovery" \
    org.opencontainers.image.version="${BUILD_VERSION}" \
    org.opencontainers.image.source="https://github.com/hoymiles-dtu-bridge/hoymiles-dtu-bridge" \
    org.opencontainers.image.licenses="Apache-2.0" \
    org.opencontainers.image.authors="Hoymiles DTU Bridge developers"
