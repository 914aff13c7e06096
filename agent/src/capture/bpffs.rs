//! Making sure the pin path is on a bpf filesystem.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use super::error::CaptureError;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// The conventional bpffs mount point; the only place ward mounts one by itself (mounting
/// over an arbitrary directory named in a config file could hide it).
const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: statfs with a valid NUL-terminated path and a zeroed out-struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion, reason = "f_type is i64 on x86_64 but u32/i32 on other targets")]
    let f_type = i64::from(st.f_type);
    Ok(f_type == BPF_FS_MAGIC)
}

/// Create `pin_path` on bpffs, mounting bpffs at /sys/fs/bpf first if that is where it goes and
/// nothing is mounted there.
pub fn ensure(pin_path: &Path) -> Result<(), CaptureError> {
    let no = |detail: String| CaptureError::NoBpffs { path: pin_path.to_path_buf(), detail };
    let existing = nearest_existing(pin_path).ok_or_else(|| no("no parent directory exists".into()))?;
    let on_bpffs = is_bpffs(&existing).map_err(|e| no(format!("statfs {}: {e}", existing.display())))?;
    if !on_bpffs {
        let default = Path::new(DEFAULT_BPFFS);
        if !(pin_path.starts_with(default) && existing.starts_with(default) && default.is_dir()) {
            return Err(no(format!("{} is not bpffs", existing.display())));
        }
        mount_bpffs(default).map_err(|e| no(format!("mount -t bpf bpf {DEFAULT_BPFFS}: {e}")))?;
        tracing::info!(path = DEFAULT_BPFFS, "mounted the bpf filesystem");
    }
    std::fs::create_dir_all(pin_path).map_err(|e| CaptureError::io(format!("creating {}", pin_path.display()), e))
}

fn nearest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

fn mount_bpffs(at: &Path) -> io::Result<()> {
    let target = CString::new(at.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let kind = c"bpf";
    let opts = c"mode=0700";
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe { libc::mount(kind.as_ptr(), target.as_ptr(), kind.as_ptr(), 0, opts.as_ptr().cast()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_is_not_bpffs_and_is_never_mounted_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pin = dir.path().join("ward");
        assert!(!is_bpffs(dir.path()).expect("statfs works"));
        let err = ensure(&pin).unwrap_err();
        assert!(matches!(err, CaptureError::NoBpffs { .. }), "{err}");
        assert!(err.to_string().contains("mount -t bpf bpf /sys/fs/bpf"), "{err}");
        assert!(!pin.exists(), "nothing is created off bpffs");
    }
}
