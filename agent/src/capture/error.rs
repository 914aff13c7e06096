//! Everything that can stop capture from working, each naming what is missing and what to do.

use std::{io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "ward was built without eBPF objects, so capture is unavailable: install bpf-linker and \
         the nightly rust-src component (cargo xtask setup) and rebuild, or remove `capture` \
         from the config to run with explicit listeners only"
    )]
    BuiltWithoutEbpf,

    #[error(
        "capture needs more privileges: missing {missing}. Run ward as root, or grant \
         CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (securityContext.capabilities.add)"
    )]
    MissingPrivileges { missing: String },

    #[error(
        "kernel {found} is too old for capture: cgroup BPF links and the helpers ward uses need \
         Linux 5.7 or newer"
    )]
    KernelTooOld { found: String },

    #[error(
        "no cgroup v2 filesystem is mounted (none in /proc/self/mountinfo): capture attaches to \
         cgroup v2; mount it (mount -t cgroup2 none /sys/fs/cgroup) or boot with cgroup v2"
    )]
    NoCgroup2,

    #[error(
        "capture.cgroup {path} does not exist (relative paths are taken under the cgroup2 mount \
         {mount}); check the path, e.g. kubepods.slice for systemd or kubepods for cgroupfs drivers"
    )]
    CgroupMissing { path: PathBuf, mount: PathBuf },

    #[error("cannot read the cgroup of this process from /proc/self/cgroup: {detail}")]
    OwnCgroup { detail: String },

    #[error(
        "capture.pinPath {path} is not on a bpf filesystem and none could be mounted ({detail}); \
         mount one (mount -t bpf bpf /sys/fs/bpf, or hostPath /sys/fs/bpf in the pod) or set \
         capture.pinPath under one"
    )]
    NoBpffs { path: PathBuf, detail: String },

    #[error(
        "capture.listen and capture.listenV6 are both IPv6 ({listen}, {listen_v6}); listen must \
         be the IPv4 listener when listenV6 is set"
    )]
    ListenFamilies { listen: std::net::SocketAddr, listen_v6: std::net::SocketAddr },

    #[error(
        "protected destination {prefix} would need {count} distinct ports (at most {max} per \
         address prefix, counting ports inherited from enclosing prefixes); list fewer ports or \
         leave `ports` empty to protect every port"
    )]
    TooManyPorts { prefix: String, count: usize, max: usize },

    #[error(
        "the policies name {count} distinct protected address prefixes; the kernel map holds at \
         most {max}: merge them into wider CIDRs"
    )]
    TooManyTargets { count: usize, max: usize },

    #[error(
        "the pins under {path} come from an incompatible ward build ({detail}); run `ward \
         uninstall --pin-path {path}` and start ward again"
    )]
    IncompatiblePins { path: PathBuf, detail: String },

    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),

    /// `detail` is the whole error chain: aya's top-level messages ("`bpf_link_create`
    /// failed") hide the errno that says what is wrong.
    #[error("{what} failed: {detail}")]
    Program { what: String, detail: String },

    #[error("{what} failed: {detail}")]
    Map { what: String, detail: String },

    #[error("{what} failed: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl CaptureError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        CaptureError::Io { what: what.into(), source }
    }

    pub(crate) fn program(what: impl Into<String>, source: aya::programs::ProgramError) -> Self {
        CaptureError::Program { what: what.into(), detail: chain(&source) }
    }

    pub(crate) fn map(what: impl Into<String>, source: aya::maps::MapError) -> Self {
        CaptureError::Map { what: what.into(), detail: chain(&source) }
    }
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
