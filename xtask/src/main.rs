//! `cargo xtask`: bootstrap, test and demo helpers for ward.
//!
//! - `cargo xtask setup`: install what building and testing need (idempotent; prints what it installs).
//! - `cargo xtask test`:  setup, then every test suite CI runs.
//! - `cargo xtask demo`:  setup, build, then the transparent-enforcement demo.

mod demo;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install build and test prerequisites (apt packages, nightly rust-src, bpf-linker, npm and pip packages).
    Setup,
    /// Run every test suite (what CI runs).
    Test(test::TestArgs),
    /// Run the transparent-enforcement demo (as root; without root, through an explicit listener).
    Demo(demo::DemoArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test(args) => test::run(&args),
        Command::Demo(args) => demo::run(&args),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_owned()
}

/// Cargo's target directory (honours CARGO_TARGET_DIR, which CI points at a cache).
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root().join("target"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Run a command, echoing it; fail with its exit status.
pub fn sh(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    eprintln!("+ {}", render(cmd));
    let status = cmd.status().map_err(|e| anyhow::anyhow!("cannot run {}: {e}", render(cmd)))?;
    anyhow::ensure!(status.success(), "{} failed with {status}", render(cmd));
    Ok(())
}

pub fn render(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
