//! Harness for ward end-to-end tests.
//!
//! - [`netns`]: a simulated node (network namespaces, bridge, per-pod cgroups) and processes
//!   running inside its pods.
//! - [`cgroup`]: cgroup v2 groups that clean up after themselves.

pub mod cgroup;
pub mod netns;

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
