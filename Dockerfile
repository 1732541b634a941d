# syntax=docker/dockerfile:1
# fraudlens in a container: the same release build as the README's set-up command
# (`cargo build --release --locked -p fraudlens`), on a small Debian runtime, as a non-root user.
#   docker build -t fraudlens .
#   docker run -p 8080:8080 -v fraudlens-data:/var/lib/fraudlens fraudlens serve --model /var/lib/fraudlens/model
# No Docker engine runs on the project's test machines, so the image is not built there:
# hadolint checks this file (scripts/deploy).

FROM rust:1.95-bookworm AS build
# fraudlens_build_info{commit}: docker build --build-arg FRAUDLENS_BUILD_COMMIT="$(git rev-parse --short HEAD)"
ARG FRAUDLENS_BUILD_COMMIT=unknown
WORKDIR /src
COPY . .
RUN FRAUDLENS_BUILD_COMMIT="$FRAUDLENS_BUILD_COMMIT" cargo build --release --locked -p fraudlens \
    && install -m 0755 target/release/fraudlens /usr/local/bin/fraudlens

FROM debian:bookworm-slim
# curl for the health check only
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fraudlens \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fraudlens --create-home fraudlens
COPY --from=build /usr/local/bin/fraudlens /usr/local/bin/fraudlens
USER 10001:10001
WORKDIR /var/lib/fraudlens
ENV FRAUDLENS_SERVE__LISTEN=0.0.0.0:8080 \
    FRAUDLENS_DETECT__METRICS_LISTEN=0.0.0.0:8001 \
    FRAUDLENS_LOG__FORMAT=json
EXPOSE 8080 8001
# HEALTH_PORT: 8001 for a detector (its probes listen on detect.metrics_listen)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS \"http://127.0.0.1:${HEALTH_PORT:-8080}/health/live\" || exit 1"]
ENTRYPOINT ["fraudlens"]
CMD ["serve"]
