//! Checks done before touching the kernel, so a missing capability or an old kernel gives one
//! clear error instead of an EPERM/EINVAL from deep inside program loading.

use std::fs;

use super::error::CaptureError;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

pub fn check_capabilities() -> Result<(), CaptureError> {
    let status =
        fs::read_to_string("/proc/self/status").map_err(|e| CaptureError::io("reading /proc/self/status", e))?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let missing = missing_capabilities(eff);
    if missing.is_empty() { Ok(()) } else { Err(CaptureError::MissingPrivileges { missing: missing.join(", ") }) }
}

fn missing_capabilities(eff: u64) -> Vec<&'static str> {
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    // CAP_SYS_ADMIN also grants what CAP_BPF does (and kernels before 5.8 have no CAP_BPF).
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    // Mounting bpffs and finding the log buffer of adopted programs by id need it.
    if !has(CAP_SYS_ADMIN) {
        missing.push("CAP_SYS_ADMIN");
    }
    missing
}

/// Linux 5.7: BPF links for cgroup programs (pinnable attachments).
pub fn check_kernel() -> Result<(), CaptureError> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_err(|e| CaptureError::io("reading /proc/sys/kernel/osrelease", e))?;
    let release = release.trim();
    if at_least(release, (5, 7)) { Ok(()) } else { Err(CaptureError::KernelTooOld { found: release.to_owned() }) }
}

fn at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    (major, minor) >= min
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert!(at_least("6.18.44-fc-v657", (5, 7)));
        assert!(at_least("5.7.0", (5, 7)));
        assert!(!at_least("5.4.0-150-generic", (5, 7)));
        assert!(!at_least("garbage", (5, 7)));
    }

    #[test]
    fn capability_names() {
        assert_eq!(missing_capabilities(0), vec!["CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]);
        let all = (1 << CAP_BPF) | (1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN);
        assert!(missing_capabilities(all).is_empty());
        assert_eq!(missing_capabilities(1 << CAP_SYS_ADMIN), vec!["CAP_NET_ADMIN"]);
    }
}
