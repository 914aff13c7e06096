//! A small simulated node built from network namespaces and cgroups.
//!
//! - a "node" netns (created by the test, so nothing changes in the root namespace) with a
//!   bridge holding the node's addresses `10.A.B.1/24` and `fd00:A:B::1/64`;
//! - one netns per pod, joined by a veth to the bridge, with `10.A.B.k/24` and `fd00:A:B::k/64`
//!   and only the connected routes those give (no default route);
//! - cgroups: `<cgroup2>/ward-test-…/pods/<pod>` for pods (the captured subtree) and
//!   `…/agent` for the agent's stand-in.
//!
//! Processes run inside a pod (its netns and cgroup) or on the node (node netns, any test
//! cgroup). Names and subnets are unique per node so tests run in parallel; everything is
//! killed and removed on drop, panics included.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, Ipv6Addr},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::Duration,
};

use crate::cgroup::{TestCgroup, cgroup2_mount};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Run `ip` and panic with its stderr if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e} (is iproute2 installed?)"));
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    pub fn create(name: String) -> NetNs {
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// The node: its netns, bridge and cgroups. Declare it before its pods so the pods drop first.
#[derive(Debug)]
pub struct Node {
    id: String,
    net: (u8, u8),
    next_pod: AtomicU32,
    // Drop order: cgroups (killing their processes) before the namespaces.
    pub agent_cgroup: TestCgroup,
    pub pods_cgroup: TestCgroup,
    _cgroup_root: TestCgroup,
    ns: NetNs,
}

impl Node {
    pub fn new() -> Node {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("wt{pid}n{n}");
        let net = (100 + (n % 100) as u8, (pid % 250) as u8);
        let ns = NetNs::create(format!("{id}-node"));
        let root = TestCgroup::create(cgroup2_mount().join(format!("ward-test-{id}")));
        let pods_cgroup = root.child("pods");
        let agent_cgroup = root.child("agent");
        let node = Node { id, net, next_pod: AtomicU32::new(10), agent_cgroup, pods_cgroup, _cgroup_root: root, ns };
        let nsn = node.ns.name().to_owned();
        ip(&["-n", &nsn, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &nsn, "addr", "add", &format!("{}/24", node.gateway_v4()), "dev", "br0"]);
        ip(&["-n", &nsn, "-6", "addr", "add", &format!("{}/64", node.gateway_v6()), "dev", "br0", "nodad"]);
        ip(&["-n", &nsn, "link", "set", "br0", "up"]);
        node
    }

    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// The node's address on the pod network (where the capture listener goes).
    pub fn gateway_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net.0, self.net.1, 1)
    }
    pub fn gateway_v6(&self) -> Ipv6Addr {
        self.v6(1)
    }
    fn v6(&self, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, u16::from(self.net.0), u16::from(self.net.1), 0, 0, 0, 0, host)
    }

    /// A pod: own netns on the bridge, own cgroup under `pods_cgroup`.
    pub fn add_pod(&self, name: &str) -> Pod {
        let k = self.next_pod.fetch_add(1, Ordering::Relaxed);
        let ns = NetNs::create(format!("{}-{name}", self.id));
        let host_if = format!("vp{k}");
        let nodens = self.ns.name();
        ip(&["-n", nodens, "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", ns.name()]);
        ip(&["-n", nodens, "link", "set", &host_if, "master", "br0", "up"]);
        let ipv4 = Ipv4Addr::new(10, self.net.0, self.net.1, k as u8);
        let ipv6 = self.v6(k as u16);
        ip(&["-n", ns.name(), "addr", "add", &format!("{ipv4}/24"), "dev", "eth0"]);
        ip(&["-n", ns.name(), "-6", "addr", "add", &format!("{ipv6}/64"), "dev", "eth0", "nodad"]);
        ip(&["-n", ns.name(), "link", "set", "eth0", "up"]);
        let cgroup = self.pods_cgroup.child(name);
        Pod { name: name.to_owned(), ipv4, ipv6, cgroup, ns }
    }

    /// A process in the node's netns, in `cgroup`.
    pub fn spawn(&self, cgroup: &TestCgroup, program: &Path, args: &[&str]) -> Proc {
        Proc::spawn(&self.ns.path(), &cgroup.procs_file(), program, args)
    }
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub cgroup: TestCgroup,
    ns: NetNs,
}

impl Pod {
    /// A long-running process in this pod.
    pub fn spawn(&self, program: &Path, args: &[&str]) -> Proc {
        Proc::spawn(&self.ns.path(), &self.cgroup.procs_file(), program, args)
    }

    /// Run to completion in this pod; its stdout lines.
    pub fn run(&self, program: &Path, args: &[&str]) -> Vec<String> {
        let (mut cmd, _keep) = command_in(&self.ns.path(), &self.cgroup.procs_file(), program, args);
        let out =
            cmd.output().unwrap_or_else(|e| panic!("run {} {args:?} in pod {}: {e}", program.display(), self.name));
        assert!(
            out.status.success(),
            "{} {args:?} in pod {} failed: {}\n{}",
            program.display(),
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    pub fn ns(&self) -> &NetNs {
        &self.ns
    }
}

/// A command that, between fork and exec, joins the cgroup and the netns. The files are
/// returned so they stay open until the command has been spawned.
fn command_in(netns: &Path, cgroup_procs: &Path, program: &Path, args: &[&str]) -> (Command, (File, File)) {
    let ns = File::open(netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display()));
    let procs = OpenOptions::new()
        .write(true)
        .open(cgroup_procs)
        .unwrap_or_else(|e| panic!("open {}: {e}", cgroup_procs.display()));
    let (ns_fd, procs_fd) = (ns.as_raw_fd(), procs.as_raw_fd());
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: only async-signal-safe calls (write, setns) on fds opened before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // Join the cgroup before anything runs, so no socket of the child escapes capture.
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    (cmd, (ns, procs))
}

/// A long-running child; its stdout is collected line by line. Killed on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    lines: Mutex<mpsc::Receiver<String>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(netns: &Path, cgroup_procs: &Path, program: &Path, args: &[&str]) -> Proc {
        let (mut cmd, _keep) = command_in(netns, cgroup_procs, program, args);
        let mut child =
            cmd.stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                seen2.lock().unwrap_or_else(|e| e.into_inner()).push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines: Mutex::new(rx), seen }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line satisfying `pred`, waiting at most `within` (a deadline for a
    /// failing test, not a measurement).
    pub fn expect_line(&self, what: &str, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let rx = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => {
                    panic!("no {what} from pid {}; its output so far: {:#?}", self.pid(), self.lines_seen())
                }
            }
        }
    }

    /// Every stdout line so far.
    pub fn lines_seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Node {
    /// Run to completion in the node's netns, in `cgroup`; its stdout lines.
    pub fn run(&self, cgroup: &TestCgroup, program: &Path, args: &[&str]) -> Vec<String> {
        let (mut cmd, _keep) = command_in(&self.ns.path(), &cgroup.procs_file(), program, args);
        let out = cmd.output().unwrap_or_else(|e| panic!("run {} {args:?} on the node: {e}", program.display()));
        assert!(
            out.status.success(),
            "{} {args:?} on the node failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }
}
