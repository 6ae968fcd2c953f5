# syntax=docker/dockerfile:1
#
# Container image of the `hookline` binary: built with the official Rust
# image, run from Debian slim as an unprivileged user.
#
#   docker build -t hookline:0.1.0 .
#   docker run --rm -p 8080:8080 -e HOOKLINE_API__LISTEN=0.0.0.0:8080 hookline:0.1.0 serve
#
# The image sets no HOOKLINE_* variables, because they would override the
# configuration file that the Helm chart mounts.

# The workspace's minimum Rust version; the bookworm variant of the Rust
# image has the C compiler, make and zlib headers that the bundled
# librdkafka needs.
ARG RUST_VERSION=1.89
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The registry and target caches persist between builds on one machine; the
# binary is copied out of the target cache within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --package hookline --bin hookline \
    && install -D -m 0755 target/dist/hookline /out/hookline

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# The binary links glibc, libgcc_s and zlib dynamically; the slim image has
# all three. TLS roots are compiled in (webpki-roots), so ca-certificates is
# not needed.
RUN groupadd --system --gid 10001 hookline \
    && useradd --system --uid 10001 --gid hookline --home-dir /var/lib/hookline \
        --create-home --shell /usr/sbin/nologin hookline
COPY --from=build /out/hookline /usr/local/bin/hookline
# `hookline serve` keeps its SQLite data under ./hookline-data by default.
WORKDIR /var/lib/hookline
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hookline"]
CMD ["serve"]
