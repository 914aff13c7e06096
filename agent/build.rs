//! Builds the kernel programs (`ebpf/`, nightly, `bpfel-unknown-none`, bpf-linker) and leaves
//! the object in `OUT_DIR/ward-ebpf` for `aya::include_bytes_aligned!`.
//!
//! A developer machine without the eBPF toolchain still gets a working `ward` (explicit
//! listeners only): the build warns and sets `cfg(ward_no_ebpf)`, and the binary refuses
//! `capture` with a message naming `cargo xtask setup`. With `CI=true` a missing toolchain is
//! a hard error, so CI can never ship a binary that silently lacks capture.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ward_no_ebpf)");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=WARD_SKIP_EBPF");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("agent/ lives in the workspace root");
    let ebpf_dir = workspace.join("ebpf");
    let common_dir = workspace.join("common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let ci = env::var("CI").is_ok_and(|v| v == "true" || v == "1");

    // WARD_SKIP_EBPF=1: build without the kernel programs even where the toolchain exists
    // (faster builds of everything else; the same path as a machine without bpf-linker).
    let skip = env::var("WARD_SKIP_EBPF").is_ok_and(|v| v == "1");
    let result = match (skip, toolchain_problem()) {
        (true, _) => Err("WARD_SKIP_EBPF=1".to_owned()),
        (false, Some(problem)) => Err(problem),
        (false, None) => build(&ebpf_dir),
    };
    match result {
        Ok(()) => {}
        Err(problem) if ci => {
            panic!("CI=true but the eBPF programs cannot be built: {problem}. Run `cargo xtask setup`.")
        }
        Err(problem) => {
            println!(
                "cargo:warning=building ward without eBPF objects ({problem}); capture will be \
                 unavailable. Install the toolchain with `cargo xtask setup`."
            );
            println!("cargo:rustc-cfg=ward_no_ebpf");
        }
    }
}

fn build(ebpf_dir: &Path) -> Result<(), String> {
    let root_dir = ebpf_dir.to_str().ok_or("the ebpf/ path is not UTF-8")?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "ward-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::Nightly,
    )
    .map_err(|e| format!("building ebpf/ failed: {e:#}"))?;
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("ward-ebpf");
    if out.is_file() { Ok(()) } else { Err(format!("{} was not produced (AYA_BUILD_SKIP set?)", out.display())) }
}

/// What is missing to build the kernel programs, if anything.
fn toolchain_problem() -> Option<String> {
    if !on_path("bpf-linker") {
        return Some("bpf-linker is not on PATH".to_owned());
    }
    let sysroot =
        Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]).env_remove("RUSTC").output();
    let sysroot = match sysroot {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        Ok(_) => return Some("the nightly toolchain is not installed".to_owned()),
        Err(e) => return Some(format!("rustup cannot be run ({e})")),
    };
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Some("the nightly toolchain lacks the rust-src component".to_owned());
    }
    None
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|paths| env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
