//! `cargo xtask test`: the one test command (README and `.ci/run` both call it).

use std::process::Command;

use crate::{in_ci, is_root, root, setup, sh};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip the bootstrap step.
    #[arg(long)]
    no_setup: bool,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    if !args.no_setup {
        setup::run()?;
    }
    let root = root();
    if !is_root() {
        eprintln!("test: not root: the eBPF capture and network-namespace tests will skip (they run as root in CI)");
    } else if in_ci() {
        eprintln!("test: CI=true and root: eBPF capture tests must run and fail loudly if they cannot");
    }
    // Formatting (rustfmt.toml), then lints: the workspace's clippy settings, warnings are errors.
    sh(Command::new("cargo").args(["fmt", "--all", "--check"]).current_dir(&root))?;
    sh(Command::new("cargo")
        .args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])
        .current_dir(&root))?;
    // The end-to-end tests run the real `ward` binary.
    sh(Command::new("cargo").args(["build", "-p", "ward"]).current_dir(&root))?;
    sh(Command::new("cargo")
        .args(["test", "--workspace", "--no-fail-fast"])
        .arg("--")
        .args(&args.cargo_args)
        .env("WARD_BIN", crate::target_dir().join("debug/ward"))
        .current_dir(&root))?;
    // Manifests: schema validation against a pinned Kubernetes and `ward check-config` on the
    // embedded config; then the DaemonSet's capability set, exercised for real (root).
    for script in ["scripts/validate-manifests.sh", "deploy/tests/least-privilege.sh"] {
        sh(Command::new("bash")
            .arg(root.join(script))
            .env("WARD_BIN", crate::target_dir().join("debug/ward"))
            .current_dir(&root))?;
    }
    // Every fuzz target for a bounded time (a crash fails the run; the input is kept in
    // fuzz/artifacts/ to become a regression test).
    let seconds = std::env::var("WARD_FUZZ_SECONDS").unwrap_or_else(|_| "20".to_owned());
    sh(Command::new("bash").arg(root.join("fuzz/run.sh")).arg(&seconds).current_dir(&root))?;
    eprintln!("test: all suites passed");
    Ok(())
}
