//! Harness for ward end-to-end tests.
//!
//! - [`netns`]: a simulated node (network namespaces, bridge, per-pod cgroups) and processes
//!   running inside its pods; [`cgroup`]: cgroup v2 groups that clean up after themselves;
//! - [`ward_bin`] and [`ward::Ward`]: the real `ward` binary with a generated config;
//! - [`issuer::TestIdp`]: an in-process issuer on loopback that serves discovery and JWKS and
//!   mints tokens signed with its own key;
//! - [`idp`]: the dev IdP (`ward dev-idp`) and a real OpenID Provider (node `oidc-provider`)
//!   as child processes on free loopback ports, killed on drop;
//! - [`upstream::Upstream`]: an HTTP/1.1 + HTTP/2 upstream that logs every request it
//!   receives (so tests prove refused requests never reached it);
//! - [`http`]: a minimal HTTP client; [`verifier`]: ward's key store and authenticator in process.

pub mod cgroup;
pub mod fault;
pub mod http;
pub mod idp;
pub mod issuer;
pub mod load;
pub mod netns;
pub mod stack;
pub mod upstream;
pub mod verifier;
pub mod ward;

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The `ward` binary: `$WARD_BIN`, else `$CARGO_TARGET_DIR/debug/ward`, else
/// `<workspace>/target/debug/ward`. Build it first with `cargo build -p ward`.
pub fn ward_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WARD_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let bin = target.join("debug").join("ward");
    assert!(
        bin.is_file(),
        "ward binary not found at {}: run `cargo build -p ward` first, or set WARD_BIN",
        bin.display()
    );
    bin
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local addr").port()
}

/// True when running under CI (`CI=true`): prerequisites that are missing must fail the
/// test there, while a developer machine may skip with a message.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether a test that needs root can run. Without root it is skipped with a message, unless
/// `CI=true`, where it must run: then it fails loudly.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    assert!(!in_ci(), "{test} needs root (network namespaces, cgroups, eBPF) and CI=true: run the tests as root");
    eprintln!("skipping {test}: needs root (network namespaces, cgroups, eBPF)");
    false
}
