//! Harness for ward end-to-end tests.
//!
//! - [`ward_bin`]: the `ward` binary under test.
//! - [`idp`]: the dev IdP (`ward dev-idp`) and a real OpenID Provider (node `oidc-provider`)
//!   as child processes on free loopback ports, killed on drop.
//! - [`http`]: a minimal HTTP client for driving them.
//! - [`verifier`]: ward's key store and authenticator, in process, to check tokens with.

pub mod http;
pub mod idp;
pub mod verifier;

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

/// True when running under CI (`CI=true`): prerequisites that are missing must fail the
/// test there, while a developer machine may skip with a message.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
