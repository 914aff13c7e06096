# syntax=docker/dockerfile:1
#
# ward agent image.
#
#   docker build -t ghcr.io/example/ward:0.1.0 .
#
# The builder compiles the kernel programs too: agent/build.rs builds ebpf/ with the nightly
# toolchain (rust-src, for core on bpfel-unknown-none) and bpf-linker, and embeds the object
# in the binary. CI=true makes a missing eBPF toolchain a build error, so this image can never
# contain a ward without capture.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
ENV DEBIAN_FRONTEND=noninteractive CARGO_TERM_COLOR=never

# Nightly with rust-src. build.rs runs `rustup run nightly`, so it must be the toolchain
# named "nightly"; its date decides the LLVM major that bpf-linker must be built against.
RUN rustup toolchain install nightly --profile minimal --component rust-src \
 && rustc +nightly -vV | sed -n 's/^LLVM version: \([0-9]*\)\..*/\1/p' > /llvm-major \
 && test -s /llvm-major \
 && echo "nightly $(rustc +nightly -V), LLVM $(cat /llvm-major)"

# LLVM of that major from apt.llvm.org (Debian bookworm's own LLVM is older), for bpf-linker.
RUN set -eu; major="$(cat /llvm-major)"; \
    curl -fsSL https://apt.llvm.org/llvm-snapshot.gpg.key | gpg --dearmor -o /usr/share/keyrings/llvm.gpg; \
    echo "deb [signed-by=/usr/share/keyrings/llvm.gpg] http://apt.llvm.org/bookworm/ llvm-toolchain-bookworm-${major} main" \
        > /etc/apt/sources.list.d/llvm.list; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends "llvm-${major}-dev" "libpolly-${major}-dev" clang; \
    rm -rf /var/lib/apt/lists/*

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    set -eu; major="$(cat /llvm-major)"; \
    LLVM_PREFIX="/usr/lib/llvm-${major}" PATH="/usr/lib/llvm-${major}/bin:$PATH" \
      cargo install bpf-linker --locked --no-default-features --features "llvm-${major}"; \
    bpf-linker --version

WORKDIR /src
COPY . .
# The binary is copied out inside the same step: the target dir is a cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CI=true cargo build --release --locked -p ward \
 && install -D -m 0755 target/release/ward /out/ward \
 && /out/ward --version

# glibc + libgcc + CA certificates (for HTTPS issuers), no shell, no package manager.
# Runs as uid 0 on purpose (pins in the host's bpffs): the DaemonSet drops every capability
# but BPF, NET_ADMIN and SYS_ADMIN; see deploy/base/daemonset.yaml and SECURITY.md.
FROM gcr.io/distroless/cc-debian12 AS runtime
COPY --from=builder /out/ward /ward
EXPOSE 15001 15020
ENTRYPOINT ["/ward"]
CMD ["run", "--config", "/etc/ward/ward.yaml"]
