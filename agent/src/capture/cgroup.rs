//! Finding cgroup v2: its mount point (from /proc/self/mountinfo, never assumed: hybrid hosts
//! mount it at /sys/fs/cgroup/unified), the configured directory, and cgroup ids.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::error::CaptureError;

/// The cgroup2 mount point and the cgroup path it shows as its root (non-`/` inside a cgroup
/// namespace or a bind mount).
#[derive(Debug, Clone)]
pub struct Cgroup2Mount {
    pub mount_point: PathBuf,
    pub root: PathBuf,
}

pub fn find_mount() -> Result<Cgroup2Mount, CaptureError> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").map_err(|e| CaptureError::io("reading /proc/self/mountinfo", e))?;
    parse_mountinfo(&info).ok_or(CaptureError::NoCgroup2)
}

fn parse_mountinfo(info: &str) -> Option<Cgroup2Mount> {
    info.lines().find_map(|line| {
        // "id parent major:minor root mount_point options [optional...] - fstype source super"
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split_whitespace();
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        Some(Cgroup2Mount { mount_point: unescape(mount_point).into(), root: unescape(root).into() })
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v as char);
            i += 4;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

impl Cgroup2Mount {
    /// `capture.cgroup`: absolute paths as given, relative ones under the mount point.
    pub fn resolve(&self, configured: &Path) -> Result<PathBuf, CaptureError> {
        let path = if configured.is_absolute() { configured.to_path_buf() } else { self.mount_point.join(configured) };
        if path.is_dir() {
            Ok(path)
        } else {
            Err(CaptureError::CgroupMissing { path, mount: self.mount_point.clone() })
        }
    }

    /// The directory of this process's own cgroup (from `/proc/self/cgroup`, line `0::`).
    pub fn own_cgroup(&self) -> Result<PathBuf, CaptureError> {
        let text =
            fs::read_to_string("/proc/self/cgroup").map_err(|e| CaptureError::OwnCgroup { detail: e.to_string() })?;
        let rel = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| CaptureError::OwnCgroup { detail: "no cgroup v2 (0::) line".into() })?;
        let rel = Path::new(rel);
        let rel = rel.strip_prefix(&self.root).unwrap_or(rel);
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        Ok(self.mount_point.join(rel))
    }
}

/// The cgroup id the kernel reports from `bpf_get_current_cgroup_id()`: on cgroup v2 it is
/// the inode number of the cgroup's directory.
pub fn id(path: &Path) -> Result<u64, CaptureError> {
    fs::metadata(path).map(|m| m.ino()).map_err(|e| CaptureError::io(format!("reading cgroup {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_cgroup2_mount() {
        let info = "\
25 1 0:23 / /sys rw,nosuid - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let m = parse_mountinfo(info).unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(m.root, Path::new("/"));
    }

    #[test]
    fn optional_fields_and_escapes() {
        let info = "30 23 0:26 /kube\\040pods /sys/fs/cgroup rw shared:4 master:1 - cgroup2 cgroup2 rw\n";
        let m = parse_mountinfo(info).unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup"));
        assert_eq!(m.root, Path::new("/kube pods"));
    }

    #[test]
    fn no_cgroup2_is_none() {
        assert!(parse_mountinfo("35 25 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw\n").is_none());
    }

    #[test]
    fn relative_cgroup_resolves_under_mount_and_missing_is_clear() {
        let m = find_mount().expect("this machine has cgroup2");
        let err = m.resolve(Path::new("ward-no-such-cgroup-xyz")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&m.mount_point.display().to_string()), "{msg}");
        assert!(m.resolve(Path::new("")).is_ok(), "the mount root itself is a cgroup");
    }
}
