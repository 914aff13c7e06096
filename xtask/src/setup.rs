//! Idempotent bootstrap. Each step checks first and says what it installs.

use std::process::Command;

use anyhow::{Context, bail};

use crate::{in_ci, is_root, root, sh};

/// Debian packages: the eBPF toolchain (LLVM matching nightly's), test peers and tools.
const APT: &[(&str, &str)] = &[
    ("llvm-22-dev", "LLVM 22 for bpf-linker (nightly rustc's LLVM)"),
    ("libpolly-22-dev", "needed to link bpf-linker against LLVM 22"),
    ("clang", "C toolchain for -sys crates"),
    ("iproute2", "network namespaces and veth for the capture tests"),
    ("curl", "HTTP client used by tests and the demo"),
    ("jq", "JSON in scripts"),
    ("wrk", "load generator for benchmarks"),
    ("haproxy", "benchmark peer (jwt_verify)"),
    ("prometheus", "promtool, to check the /metrics output"),
];

pub fn run() -> anyhow::Result<()> {
    apt()?;
    nightly()?;
    bpf_linker()?;
    cargo_fuzz()?;
    npm()?;
    eprintln!("setup: done");
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<_> = APT.iter().filter(|(p, _)| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!("setup: Debian packages present");
        return Ok(());
    }
    for (p, why) in &missing {
        eprintln!("setup: installing {p} ({why})");
    }
    if !is_root() {
        let names: Vec<_> = missing.iter().map(|(p, _)| *p).collect();
        let msg = format!("setup: not root, cannot install: apt-get install {}", names.join(" "));
        if in_ci() {
            bail!(msg);
        }
        eprintln!("{msg}; continuing (steps that need them will say so)");
        return Ok(());
    }
    sh(Command::new("apt-get").args(["update", "-qq"]))?;
    sh(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(missing.iter().map(|(p, _)| *p)))
}

fn nightly() -> anyhow::Result<()> {
    let list = Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]).output();
    match list {
        Ok(o) if o.status.success() => {
            if String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with("rust-src")) {
                eprintln!("setup: nightly rust-src present");
                return Ok(());
            }
            eprintln!("setup: installing rust-src for nightly (to build core for bpfel-unknown-none)");
            sh(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        }
        _ => bail!(
            "setup: the nightly toolchain is missing; install it with `rustup toolchain install nightly` (the eBPF programs need it)"
        ),
    }
}

fn llvm_major_of_nightly() -> anyhow::Result<String> {
    let out = Command::new("rustc").args(["+nightly", "-vV"]).output().context("rustc +nightly -vV")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc +nightly -vV printed no LLVM version")?;
    Ok(version.split('.').next().unwrap_or_default().to_owned())
}

fn bpf_linker() -> anyhow::Result<()> {
    let present = Command::new("bpf-linker").arg("--version").output().is_ok_and(|o| o.status.success());
    if present {
        eprintln!("setup: bpf-linker present");
        return Ok(());
    }
    let major = llvm_major_of_nightly()?;
    let prefix = format!("/usr/lib/llvm-{major}");
    eprintln!(
        "setup: installing bpf-linker built against LLVM {major} (matches nightly rustc); this takes a few minutes"
    );
    let path = format!("{prefix}/bin:{}", std::env::var("PATH").unwrap_or_default());
    sh(Command::new("cargo").env("LLVM_PREFIX", &prefix).env("PATH", path).args([
        "install",
        "bpf-linker",
        "--locked",
        "--no-default-features",
        "--features",
        &format!("llvm-{major}"),
    ]))
}

fn cargo_fuzz() -> anyhow::Result<()> {
    let present = Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if present {
        eprintln!("setup: cargo-fuzz present");
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz (the fuzz targets in fuzz/ run in CI for a bounded time)");
    sh(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

fn npm() -> anyhow::Result<()> {
    let dir = root().join("tests/idp");
    if !dir.join("package.json").exists() {
        return Ok(());
    }
    if dir.join("node_modules/oidc-provider").exists() {
        eprintln!("setup: tests/idp node modules present");
        return Ok(());
    }
    eprintln!("setup: installing tests/idp node modules (oidc-provider, the real OIDC provider for interop tests)");
    sh(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(dir))
}
