//! Harness for ward end-to-end tests.
//!
//! - [`netns`]: a simulated node (network namespaces, bridge, per-pod cgroups) and processes
//!   running inside its pods; [`cgroup`]: cgroup v2 groups that clean up after themselves;
//! - [`ward_bin`] and [`ward::Ward`]: the real `ward` binary with a generated config;
//! - [`idp::TestIdp`]: an issuer on loopback that serves discovery and JWKS and mints
//!   tokens signed with its own key;
//! - [`upstream::Upstream`]: an HTTP/1.1 + HTTP/2 upstream that logs every request it
//!   receives (so tests prove refused requests never reached it).

pub mod cgroup;
pub mod idp;
pub mod netns;
pub mod stack;
pub mod upstream;
pub mod ward;

use std::path::PathBuf;

/// The `ward` binary: `$WARD_BIN`, else `<workspace>/target/debug/ward` (build it first
/// with `cargo build -p ward`).
pub fn ward_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WARD_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug").join("ward");
    assert!(bin.exists(), "{} not found: run `cargo build -p ward` first or set WARD_BIN", bin.display());
    bin
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local addr").port()
}

/// Whether a test that needs root can run. Without root it is skipped with a message, unless
/// `CI=true`, where it must run: then it fails loudly.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{test} needs root (network namespaces, cgroups, eBPF) and CI=true: run the tests as root"
    );
    eprintln!("skipping {test}: needs root (network namespaces, cgroups, eBPF)");
    false
}
