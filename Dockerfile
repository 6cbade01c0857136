# syntax=docker/dockerfile:1
#
# The inferd container image. Needs BuildKit (Docker 23+, or `docker buildx build`):
#
#   docker build -t inferd .                                  # runtime: tract, trees, processing...
#   docker build --target onnxruntime -t inferd:onnxruntime . # + ONNX Runtime's libonnxruntime.so
#   docker build --target python -t inferd:python .           # + python3 and numpy (Python backend)
#   docker run --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 inferd   # serves the examples in /models
#
# Runs as uid/gid 10001, listens on 0.0.0.0: 8000 HTTP/REST, 8001 gRPC, 8002 Prometheus /metrics.
# Configure with `inferd serve` flags after the image name or their INFERD_* variables.
#
# This repository's machines have no container engine: this file is checked by
# e2e/test_deploy.py (stages, contract, paths) but not built there.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm
# The ONNX Runtime whose C API the `ort` crate is built against (api-23 in Cargo.toml) and that
# scripts/get_onnxruntime.py fetches by default.
ARG ORT_VERSION=1.23.2

# ---- build -------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# What the native parts of the build need (the image has most already; listed so a slimmer base
# fails here, not halfway through cargo):
# - rdkafka-sys compiles librdkafka from source with its own ./configure (a bash script) and make,
#   C and C++ (librdkafka++ is part of `make libs`), python3 for its lds-gen.py and version
#   script. Without its cmake feature (crates/streams/Cargo.toml), so no cmake; without ssl,
#   zlib, zstd, curl or sasl, so none of their -dev packages.
# - ring and SQLite (rusqlite's bundled feature): a C compiler.
# - No protoc: the .proto files are compiled by protox (Rust) in build.rs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash make gcc g++ libc6-dev python3 pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The workspace: every member's manifest must be there (bench/floor is one), sources, protos.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY bench/floor bench/floor
COPY proto proto
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p inferd \
 && install -D -m 0755 target/release/inferd /out/inferd

# ---- ONNX Runtime's shared library, from the PyPI wheel (sha256 checked against PyPI) --------
FROM debian:${DEBIAN_RELEASE}-slim AS onnxruntime-lib
ARG ORT_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/get_onnxruntime.py /tmp/get_onnxruntime.py
RUN ONNXRUNTIME_VERSION="${ORT_VERSION}" python3 /tmp/get_onnxruntime.py /opt/onnxruntime

# ---- what every variant shares ---------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS base
# ca-certificates: S3/MLflow sources, OTLP and JWKS over TLS verify against the system roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 inferd \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/inferd --shell /usr/sbin/nologin inferd
COPY --from=builder /out/inferd /usr/local/bin/inferd
# The default repository: the example models (read-only for the server's user). Mount your own
# over /models, or point INFERD_MODEL_REPOSITORY elsewhere.
COPY examples/models /models
# One variable per ENV line (e2e tests read them from this file).
ENV INFERD_HOST=0.0.0.0
ENV INFERD_LOG_FORMAT=json
ENV INFERD_MODEL_REPOSITORY=/models
EXPOSE 8000 8001 8002
# Docker's own health status (Kubernetes ignores HEALTHCHECK and uses the probes in
# deploy/kubernetes). There is no curl or wget in the slim base and inferd has no client
# subcommand for it, so bash's /dev/tcp sends the request: healthy while GET /v2/health/ready
# answers 200 on the HTTP port (INFERD_HTTP_PORT, default 8000; plain HTTP, so with --tls-cert
# this check reports unhealthy: use `docker run --no-healthcheck` or a TLS-aware probe then).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${INFERD_HTTP_PORT:-8000} && printf 'GET /v2/health/ready HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 2 status <&3 && [[ $status == 'HTTP/1.1 200'* ]]"]
USER 10001:10001
WORKDIR /home/inferd
ENTRYPOINT ["inferd"]
CMD ["serve"]

# ---- variant: ONNX Runtime backend ---------------------------------------------------------
# Models with `backend = "onnxruntime"` (or every model.onnx with INFERD_DEFAULT_BACKEND=onnxruntime).
FROM base AS onnxruntime
COPY --from=onnxruntime-lib /opt/onnxruntime/libonnxruntime.so /opt/onnxruntime/libonnxruntime.so
ENV INFERD_ONNXRUNTIME_LIB=/opt/onnxruntime/libonnxruntime.so

# ---- variant: Python backend (model.py; pickled scikit-learn with your own scikit-learn) ------
# Debian's python3 and numpy, the minimum the backend's workers need. A model whose code needs
# more names its own interpreter in config.toml (`[parameters] python = "/venv/bin/python"`): build
# FROM this stage and add a virtual environment.
FROM base AS python
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-numpy \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001

# ---- default target: the plain runtime ---------------------------------------------------------
FROM base AS runtime
