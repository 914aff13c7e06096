//! What lives under `capture.pinPath`, and removing it (`ward uninstall`).
//!
//! Layout: maps are pinned by their names (`WARD_*`, by aya's loader), programs as `prog_*`,
//! cgroup links as `link_*`. A link pin keeps its program attached after the agent exits; the
//! pinned SOCKHASH keeps the sk_msg program attached to it.

use std::{
    ffi::CString,
    fs, io,
    os::{fd::FromRawFd as _, fd::OwnedFd, unix::ffi::OsStrExt as _},
    path::{Path, PathBuf},
};

use super::error::CaptureError;

pub const CONNECT4: &str = "connect4";
pub const CONNECT6: &str = "connect6";
pub const SOCK_OPS: &str = "sock_ops";
/// sock_ops on the agent's own cgroup (only with sk_msg, and only when the agent's cgroup is
/// not inside the captured one).
pub const SOCK_OPS_AGENT: &str = "sock_ops_agent";
pub const SK_MSG: &str = "sk_msg";

/// Links without which capture is not in force.
pub const CORE_LINKS: [&str; 3] = [CONNECT4, CONNECT6, SOCK_OPS];

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Layout { root: root.to_path_buf() }
    }
    pub fn prog(&self, name: &str) -> PathBuf {
        self.root.join(format!("prog_{name}"))
    }
    pub fn link(&self, name: &str) -> PathBuf {
        self.root.join(format!("link_{name}"))
    }
    pub fn core_links_present(&self) -> bool {
        CORE_LINKS.iter().all(|l| self.link(l).exists())
    }

    /// Detach and unpin every link and program, keeping the maps (used before a fresh attach
    /// over partial or outdated state).
    pub fn remove_links_and_programs(&self) -> Result<UninstallReport, CaptureError> {
        let mut report = UninstallReport::default();
        for entry in entries(&self.root)? {
            let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with("link_") {
                detach_link(&entry)?;
                report.links.push(name);
            } else if name.starts_with("prog_") {
                remove(&entry)?;
                report.programs.push(name);
            }
        }
        Ok(report)
    }
}

/// What `uninstall` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UninstallReport {
    pub links: Vec<String>,
    pub programs: Vec<String>,
    pub maps: Vec<String>,
    /// The pin directory itself was removed.
    pub removed_dir: bool,
}

impl UninstallReport {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.programs.is_empty() && self.maps.is_empty() && !self.removed_dir
    }
}

/// `ward uninstall`: detach every link (even if a running agent still holds it open), unpin
/// programs and maps, remove the directory. Capture stops at once: connections to protected
/// destinations go direct again.
pub fn uninstall(pin_path: &Path) -> Result<UninstallReport, CaptureError> {
    if !pin_path.exists() {
        return Ok(UninstallReport::default());
    }
    let layout = Layout::new(pin_path);
    // Links first: while they are attached, removing maps under them changes nothing, but
    // detaching first means no connection is redirected by half-removed state.
    let mut report = layout.remove_links_and_programs()?;
    for entry in entries(pin_path)? {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        remove(&entry)?;
        report.maps.push(name);
    }
    fs::remove_dir(pin_path).map_err(|e| CaptureError::io(format!("removing {}", pin_path.display()), e))?;
    report.removed_dir = true;
    Ok(report)
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    let read = fs::read_dir(dir).map_err(|e| CaptureError::io(format!("listing {}", dir.display()), e))?;
    let mut out = Vec::new();
    for e in read {
        out.push(e.map_err(|e| CaptureError::io(format!("listing {}", dir.display()), e))?.path());
    }
    out.sort();
    Ok(out)
}

fn remove(path: &Path) -> Result<(), CaptureError> {
    fs::remove_file(path).map_err(|e| CaptureError::io(format!("unpinning {}", path.display()), e))
}

/// BPF_LINK_DETACH, then unpin. Detaching explicitly matters: a link stays attached while any
/// process (a running agent) holds an fd to it, so unpinning alone would not stop capture.
fn detach_link(path: &Path) -> Result<(), CaptureError> {
    let fd = obj_get(path).map_err(|e| CaptureError::io(format!("opening pinned link {}", path.display()), e))?;
    link_detach(&fd).map_err(|e| CaptureError::io(format!("detaching link {}", path.display()), e))?;
    remove(path)
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;

#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkDetachAttr {
    link_fd: u32,
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let attr = ObjGetAttr { pathname: c.as_ptr() as u64, ..Default::default() };
    // SAFETY: bpf(2) with a valid attr of the declared size; `c` outlives the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &attr as *const ObjGetAttr, std::mem::size_of::<ObjGetAttr>())
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

fn link_detach(fd: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let attr = LinkDetachAttr { link_fd: fd.as_raw_fd() as u32 };
    // SAFETY: bpf(2) with a valid attr of the declared size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &attr as *const LinkDetachAttr,
            std::mem::size_of::<LinkDetachAttr>(),
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
