# syntax=docker/dockerfile:1
#
# f4a-indexer container image.
#
#   docker build -t f4a-indexer .
#   docker buildx build --platform linux/arm64,linux/amd64 -t <registry>/f4a-indexer:<tag> --push .
#
# Stages: chef (Rust + cargo-chef) -> planner (dependency recipe) -> builder (dependencies in
# their own layer, then the crate) -> runtime (distroless/cc: glibc, libgcc, CA certificates,
# tzdata, no shell, no package manager; runs as uid 65532).
#
# The builder runs on the target platform: buildx builds the non-native architecture under
# QEMU emulation (slow, ~5-10x; see README "Container image" for native builders).
# tests/deploy/container_test.sh builds the runtime stage below verbatim, with a locally built
# binary in place of the builder's.

ARG RUST_VERSION=1.94
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /app

# Only Cargo.toml/Cargo.lock shape the recipe, so source edits do not invalidate the dependency layer.
# benches/ is copied because Cargo.toml declares the `pipeline` bench: without its file cargo
# refuses to read the manifest.
FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Dependencies only: cached until Cargo.toml or Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin f4a-indexer
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin f4a-indexer \
    && ./target/release/f4a-indexer --version

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="f4a-indexer" \
      org.opencontainers.image.description="SQS-driven S3 -> Elasticsearch indexer with a token-bucket insert rate" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /app/target/release/f4a-indexer /usr/local/bin/f4a-indexer
# distroless "nonroot" (65532:65532). Numeric so that Kubernetes runAsNonRoot and ECS can verify it.
USER 65532:65532
ENV HEALTH_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json
EXPOSE 8080
# Exec form: there is no shell in the image. The subcommand GETs /healthz on HEALTH_ADDR's port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/f4a-indexer", "healthcheck"]
# SIGTERM drains for SHUTDOWN_TIMEOUT_SECS (25 s by default): give `docker stop` -t 35.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/f4a-indexer"]
