//! eBPF transparent capture: loading, attaching, pinning, and original-destination lookup.
//!
//! The kernel programs (`ebpf/`) redirect pods' connections to protected destinations to the
//! capture listener and record where they were going; this module loads them, keeps the
//! protected-destination map in sync with the policies, and answers "where was this accepted
//! connection going?". Programs, links and maps are pinned under `capture.pinPath`, so capture
//! outlives the agent: while the agent is down, connections to protected destinations fail
//! (they are still redirected, to a listener that is not there) instead of bypassing it.

mod addr;
mod bpffs;
mod cgroup;
mod error;
mod log;
pub mod metrics;
mod pins;
mod privileges;
pub mod targets;

use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, SockHash, lpm_trie::Key},
    programs::{CgroupAttachMode, CgroupSockAddr, SkMsg, SockOps, links::FdLink},
};
use aya_log::EbpfLogger;
pub use error::CaptureError;
pub use pins::UninstallReport;
use ward_common::{
    CONFIG_LISTEN4, CONFIG_LISTEN6, CONFIG_SK_MSG, CaptureConfig, OrigDst, SockTuple, TargetAddr, TargetPorts,
    map_names, program_names,
};

use crate::policy::model::Target;

/// The kernel object, when the build had the eBPF toolchain (see `agent/build.rs`).
#[cfg(not(ward_no_ebpf))]
static OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ward-ebpf")));
#[cfg(ward_no_ebpf)]
static OBJECT: Option<&[u8]> = None;

/// Whether this binary carries the kernel programs.
pub fn built_with_ebpf() -> bool {
    OBJECT.is_some()
}

/// `capture.skMsg` when not set. Off, although on Linux 6.18 the fast path nearly doubled
/// same-node throughput in bench/capture.sh: with a socket in the SOCKHASH, a *blocking*
/// `recv()` woken by the peer's FIN returns EAGAIN instead of EOF (`tcp_bpf_recvmsg`), which
/// breaks pod applications that use blocking sockets. See bench/RESULTS-capture.md.
pub const SK_MSG_DEFAULT: bool = false;

/// Attached (or adopted) transparent capture.
pub struct Capture {
    layout: pins::Layout,
    targets: Mutex<LpmTrie<MapData, TargetAddr, TargetPorts>>,
    orig: Mutex<HashMap<MapData, SockTuple, OrigDst>>,
    target_count: Arc<AtomicU64>,
    adopted: bool,
    sk_msg: bool,
    _log: Option<log::LogPump>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("pin_path", &self.layout.root)
            .field("adopted", &self.adopted)
            .field("sk_msg", &self.sk_msg)
            .field("protected_prefixes", &self.target_count.load(Ordering::Relaxed))
            .finish()
    }
}

/// The listeners as the kernel sees them.
#[derive(Debug, Clone, Copy)]
struct Listeners {
    v4: Option<SocketAddr>,
    v6: Option<SocketAddr>,
}

impl Listeners {
    fn from_config(cfg: &crate::config::Capture) -> Result<Self, CaptureError> {
        match (cfg.listen, cfg.listen_v6) {
            (l @ SocketAddr::V6(_), Some(v6)) => Err(CaptureError::ListenFamilies { listen: l, listen_v6: v6 }),
            (l @ SocketAddr::V4(_), v6) => Ok(Listeners { v4: Some(l), v6 }),
            (l @ SocketAddr::V6(_), None) => Ok(Listeners { v4: None, v6: Some(l) }),
        }
    }
}

impl Capture {
    /// Load (or adopt the pinned) programs, attach to the cgroup, fill the target map.
    ///
    /// The calling process's own cgroup is the agent's: its connections are never captured.
    pub fn attach(
        cfg: &crate::config::Capture,
        targets: &[Target],
        metrics_registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Capture, CaptureError> {
        let own = cgroup::find_mount()?.own_cgroup()?;
        Self::attach_for_agent_cgroup(cfg, targets, metrics_registry, &own)
    }

    /// [`Capture::attach`] with the agent's cgroup given: sockets of processes in it are never
    /// captured and (with sk_msg) get the fast path. Tests run the agent's stand-in in a cgroup
    /// of their own.
    pub fn attach_for_agent_cgroup(
        cfg: &crate::config::Capture,
        targets: &[Target],
        metrics_registry: &mut prometheus_client::registry::Registry,
        agent_cgroup: &Path,
    ) -> Result<Capture, CaptureError> {
        let object = OBJECT.ok_or(CaptureError::BuiltWithoutEbpf)?;
        privileges::check_capabilities()?;
        privileges::check_kernel()?;
        let mount = cgroup::find_mount()?;
        let cgroup_path = mount.resolve(&cfg.cgroup)?;
        let capture_cgroup_id = cgroup::id(&cgroup_path)?;
        let agent_cgroup_id = cgroup::id(agent_cgroup)?;
        let listeners = Listeners::from_config(cfg)?;
        let plan = targets::plan(targets)?;
        let sk_msg = cfg.sk_msg.unwrap_or(SK_MSG_DEFAULT);
        bpffs::ensure(&cfg.pin_path)?;
        let layout = pins::Layout::new(&cfg.pin_path);

        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&cfg.pin_path)
            .load(object)
            .map_err(|e| CaptureError::Load(Box::new(e)))?;
        check_map_layouts(&ebpf, &cfg.pin_path)?;

        let mut config_map: Array<MapData, CaptureConfig> = take_map(&mut ebpf, map_names::CONFIG)?;
        let previous = config_map.get(&0, 0).map_err(|e| CaptureError::map("reading the config map", e))?;
        let adopt = previous.capture_cgroup_id == capture_cgroup_id && layout.core_links_present();

        let capture = Capture {
            layout: layout.clone(),
            targets: Mutex::new(take_map(&mut ebpf, map_names::TARGETS)?),
            orig: Mutex::new(take_map(&mut ebpf, map_names::ORIG_BY_TUPLE)?),
            target_count: Arc::new(AtomicU64::new(0)),
            adopted: adopt,
            sk_msg,
            _log: None,
        };
        // Targets and config go in before any program is attached: a program that ran with an
        // empty config would let connections through uncaptured.
        capture.write_plan(&plan)?;
        let config = CaptureConfig {
            agent_cgroup_id,
            capture_cgroup_id,
            listen6_addr: listeners.v6.map(|a| addr::words(a.ip())).unwrap_or([0; 4]),
            listen4_addr: match listeners.v4.map(|a| a.ip()) {
                Some(IpAddr::V4(v4)) => addr::ip4_be(v4),
                _ => 0,
            },
            listen4_port: listeners.v4.map_or(0, |a| a.port()),
            listen6_port: listeners.v6.map_or(0, |a| a.port()),
            flags: listeners.v4.map_or(0, |_| CONFIG_LISTEN4)
                | listeners.v6.map_or(0, |_| CONFIG_LISTEN6)
                | if sk_msg { CONFIG_SK_MSG } else { 0 },
            _pad: 0,
        };
        config_map.set(0, config, 0).map_err(|e| CaptureError::map("writing the config map", e))?;

        let agent_inside = agent_cgroup.starts_with(&cgroup_path);
        let want_agent_sock_ops = sk_msg && !agent_inside;
        let logger = if adopt {
            adopt_agent_sock_ops(
                &layout,
                previous.agent_cgroup_id != agent_cgroup_id,
                want_agent_sock_ops,
                agent_cgroup,
            )?;
            let connect4 = CgroupSockAddr::from_pin(
                layout.prog(pins::CONNECT4),
                aya::programs::CgroupSockAddrAttachType::Connect4,
            )
            .map_err(|e| CaptureError::program("opening the pinned connect4 program", e))?;
            let id = connect4.info().map_err(|e| CaptureError::program("reading connect4's id", e))?.id();
            EbpfLogger::init_from_id_with_logger(id, log::ToTracing).ok()
        } else {
            // Whatever is pinned is partial or for another cgroup: start clean.
            let stale = layout.remove_links_and_programs()?;
            if !stale.is_empty() {
                tracing::warn!(?stale, "replaced outdated capture pins");
            }
            let result = attach_fresh(&mut ebpf, &layout, &cgroup_path, want_agent_sock_ops.then_some(agent_cgroup));
            if let Err(e) = result {
                let _ = layout.remove_links_and_programs();
                return Err(e);
            }
            EbpfLogger::init_with_logger(&mut ebpf, log::ToTracing).ok()
        };
        let log = match logger {
            Some(l) => log::LogPump::start(l).ok(),
            None => {
                tracing::warn!("kernel log buffer not found: capture programs' log lines will be lost");
                None
            }
        };

        let counters: PerCpuArray<MapData, u64> = take_map(&mut ebpf, map_names::COUNTERS)?;
        metrics_registry.register_collector(Box::new(metrics::CaptureCollector::new(
            counters,
            capture.target_count.clone(),
            layout.clone(),
        )));
        tracing::info!(
            cgroup = %cgroup_path.display(),
            pin_path = %cfg.pin_path.display(),
            adopted = adopt,
            sk_msg,
            protected_prefixes = plan.entries.len(),
            "capture attached"
        );
        Ok(Capture { _log: log, ..capture })
    }

    /// Whether this instance adopted programs pinned by an earlier agent.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Replace the protected-target map contents (config reload) without a restart.
    pub fn sync_targets(&self, targets: &[Target]) -> Result<(), CaptureError> {
        let plan = targets::plan(targets)?;
        self.write_plan(&plan)
    }

    fn write_plan(&self, plan: &targets::Plan) -> Result<(), CaptureError> {
        if plan.without_addresses > 0 {
            tracing::warn!(
                count = plan.without_addresses,
                "policy targets without addresses cannot be captured transparently (hosts only)"
            );
        }
        let mut trie = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        // Insert/overwrite first, then remove what is gone: a destination protected before and
        // after the reload is never absent from the map in between.
        for (prefix, ports) in &plan.entries {
            trie.insert(&Key::new(prefix.len, prefix.words), *ports, 0)
                .map_err(|e| CaptureError::map(format!("protecting {prefix}"), e))?;
        }
        let stale: Vec<Key<TargetAddr>> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !plan.entries.contains_key(&targets::Prefix { words: k.data(), len: k.prefix_len() }))
            .collect();
        for key in stale {
            trie.remove(&key).map_err(|e| CaptureError::map("removing a protected prefix", e))?;
        }
        self.target_count.store(plan.entries.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The original destination of an accepted captured connection (then delete the entry).
    /// `peer` and `local` are the accepted socket's addresses.
    pub fn original_dst(&self, peer: SocketAddr, local: SocketAddr) -> Option<SocketAddr> {
        let key = addr::client_tuple(peer, local);
        let mut map = self.orig.lock().unwrap_or_else(|e| e.into_inner());
        let orig = map.get(&key, 0).ok()?;
        let _ = map.remove(&key);
        Some(addr::orig_dst(&orig))
    }

    pub fn is_attached(&self) -> bool {
        self.layout.core_links_present()
    }

    pub fn sk_msg(&self) -> bool {
        self.sk_msg
    }

    pub fn pin_path(&self) -> &Path {
        &self.layout.root
    }
}

/// `ward uninstall`: detach and unpin everything under the pin path.
pub fn uninstall(pin_path: &Path) -> Result<UninstallReport, CaptureError> {
    pins::uninstall(pin_path)
}

fn take_map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, CaptureError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or_else(|| CaptureError::IncompatiblePins {
        path: PathBuf::new(),
        detail: format!("map {name} missing from the object"),
    })?;
    T::try_from(map).map_err(|e| CaptureError::map(format!("opening map {name}"), e))
}

/// Pinned maps are reused by name; one left by a build with other key/value layouts would be
/// silently misread, so refuse it.
fn check_map_layouts(ebpf: &Ebpf, pin_path: &Path) -> Result<(), CaptureError> {
    use std::mem::size_of;
    let expected: [(&str, usize, usize); 6] = [
        (map_names::TARGETS, 4 + size_of::<TargetAddr>(), size_of::<TargetPorts>()),
        (map_names::CONFIG, 4, size_of::<CaptureConfig>()),
        (map_names::ORIG_BY_COOKIE, 8, size_of::<OrigDst>()),
        (map_names::ORIG_BY_TUPLE, size_of::<SockTuple>(), size_of::<OrigDst>()),
        (map_names::SK_MSG_STATE, size_of::<SockTuple>(), 1),
        (map_names::COUNTERS, 4, 8),
    ];
    for (name, key, value) in expected {
        let info = match ebpf.map(name) {
            Some(aya::maps::Map::LpmTrie(m)) => m.info(),
            Some(aya::maps::Map::Array(m)) => m.info(),
            Some(aya::maps::Map::LruHashMap(m)) => m.info(),
            Some(aya::maps::Map::PerCpuArray(m)) => m.info(),
            _ => {
                return Err(CaptureError::IncompatiblePins {
                    path: pin_path.to_path_buf(),
                    detail: format!("map {name} has an unexpected type"),
                });
            }
        }
        .map_err(|e| CaptureError::map(format!("reading map {name}"), e))?;
        if info.key_size() as usize != key || info.value_size() as usize != value {
            return Err(CaptureError::IncompatiblePins {
                path: pin_path.to_path_buf(),
                detail: format!(
                    "map {name} has key/value sizes {}/{}, this build uses {key}/{value}",
                    info.key_size(),
                    info.value_size()
                ),
            });
        }
    }
    Ok(())
}

fn open_dir(path: &Path) -> Result<File, CaptureError> {
    File::open(path).map_err(|e| CaptureError::io(format!("opening cgroup {}", path.display()), e))
}

/// Flags for `bpf_link_create` on a cgroup: links always coexist with other programs (kernel
/// "multi" semantics) and the kernel rejects the BPF_F_ALLOW_* flags there, which is what
/// aya's `Single` (no flags) gives.
const LINK_MODE: CgroupAttachMode = CgroupAttachMode::Single;

/// Load and attach every program, pinning programs and links.
///
/// Order matters: sk_msg and sock_ops go first, connect4/6 last, so no connection is ever
/// redirected without sock_ops recording its tuple for the agent.
fn attach_fresh(
    ebpf: &mut Ebpf,
    layout: &pins::Layout,
    cgroup: &Path,
    agent_cgroup: Option<&Path>,
) -> Result<(), CaptureError> {
    let cgroup_fd = open_dir(cgroup)?;

    // Programs refer to maps by the fds the loader opened: a map taken out of `ebpf` must stay
    // open until every program using it is loaded.
    let socks: SockHash<MapData, SockTuple> = take_map(ebpf, map_names::SOCKS)?;
    // sk_msg: attached to the pinned SOCKHASH; the map keeps it attached after we exit.
    {
        let prog: &mut SkMsg = program(ebpf, program_names::SK_MSG)?;
        prog.load().map_err(|e| CaptureError::program("loading sk_msg", e))?;
        let id = prog.attach(socks.fd()).map_err(|e| CaptureError::program("attaching sk_msg", e))?;
        let link = prog.take_link(id).map_err(|e| CaptureError::program("taking the sk_msg link", e))?;
        // Dropping the link would detach it; the attachment must live as long as the map.
        std::mem::forget(link);
        prog.pin(layout.prog(pins::SK_MSG)).map_err(|e| pin_error("sk_msg program", e))?;
    }

    {
        let prog: &mut SockOps = program(ebpf, program_names::SOCK_OPS)?;
        prog.load().map_err(|e| CaptureError::program("loading sock_ops", e))?;
        prog.pin(layout.prog(pins::SOCK_OPS)).map_err(|e| pin_error("sock_ops program", e))?;
        let id = prog
            .attach(&cgroup_fd, LINK_MODE)
            .map_err(|e| CaptureError::program(format!("attaching sock_ops to {}", cgroup.display()), e))?;
        pin_link(prog.take_link(id), layout.link(pins::SOCK_OPS))?;
        if let Some(agent) = agent_cgroup {
            let id = prog
                .attach(open_dir(agent)?, LINK_MODE)
                .map_err(|e| CaptureError::program(format!("attaching sock_ops to {}", agent.display()), e))?;
            pin_link(prog.take_link(id), layout.link(pins::SOCK_OPS_AGENT))?;
        }
    }

    for (name, pin) in [(program_names::CONNECT4, pins::CONNECT4), (program_names::CONNECT6, pins::CONNECT6)] {
        let prog: &mut CgroupSockAddr = program(ebpf, name)?;
        prog.load().map_err(|e| CaptureError::program(format!("loading {pin}"), e))?;
        prog.pin(layout.prog(pin)).map_err(|e| pin_error(pin, e))?;
        let id = prog
            .attach(&cgroup_fd, LINK_MODE)
            .map_err(|e| CaptureError::program(format!("attaching {pin} to {}", cgroup.display()), e))?;
        pin_link(prog.take_link(id), layout.link(pin))?;
    }
    Ok(())
}

/// On adoption only the agent-side sock_ops link may need changing: the agent may now run in
/// another cgroup, or sk_msg may have been switched.
fn adopt_agent_sock_ops(
    layout: &pins::Layout,
    agent_moved: bool,
    want: bool,
    agent_cgroup: &Path,
) -> Result<(), CaptureError> {
    let link = layout.link(pins::SOCK_OPS_AGENT);
    let have = link.exists();
    if have && (agent_moved || !want) {
        // Unpinning drops the last reference: the link detaches.
        std::fs::remove_file(&link).map_err(|e| CaptureError::io(format!("unpinning {}", link.display()), e))?;
    }
    if want && (!have || agent_moved) {
        let mut prog = SockOps::from_pin(layout.prog(pins::SOCK_OPS))
            .map_err(|e| CaptureError::program("opening the pinned sock_ops program", e))?;
        let id = prog
            .attach(open_dir(agent_cgroup)?, LINK_MODE)
            .map_err(|e| CaptureError::program(format!("attaching sock_ops to {}", agent_cgroup.display()), e))?;
        pin_link(prog.take_link(id), link)?;
    }
    Ok(())
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, CaptureError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or_else(|| CaptureError::IncompatiblePins {
        path: PathBuf::new(),
        detail: format!("program {name} missing from the object"),
    })?;
    prog.try_into().map_err(|e| CaptureError::program(format!("program {name}"), e))
}

fn pin_link<L>(link: Result<L, aya::programs::ProgramError>, path: PathBuf) -> Result<(), CaptureError>
where
    FdLink: TryFrom<L, Error = aya::programs::links::LinkError>,
{
    let link = link.map_err(|e| CaptureError::program("taking a link", e))?;
    let fd = FdLink::try_from(link).map_err(|e| CaptureError::Io {
        what: format!("converting the link for {} (kernel without BPF links?)", path.display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    fd.pin(&path).map_err(|e| pin_error(&path.display().to_string(), e))?;
    Ok(())
}

fn pin_error(what: &str, e: aya::pin::PinError) -> CaptureError {
    CaptureError::Io { what: format!("pinning {what}"), source: std::io::Error::other(e.to_string()) }
}
