# latent-he with its bundled models, for the Kubernetes manifest in
# deploy/k8s/ (and any container runtime):
#
#   docker build -t latent-he:latest .
#   docker run --rm latent-he:latest --help
#
# The binary runs the CPU backend anywhere; the GPU backend needs a Vulkan
# driver from the host (for NVIDIA, the container toolkit's).
# The toolchain the project is built and tested with.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY shaders shaders
COPY benches benches
COPY examples examples
COPY assets assets
RUN cargo build --release --locked --bin latent-he

FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libvulkan1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/latent-he /usr/local/bin/latent-he
COPY models /opt/latent-he/models
ENV LATENT_HE_CACHE_DIR=/var/cache/latent-he
ENTRYPOINT ["latent-he"]
