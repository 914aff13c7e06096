//! Kernel-level capture tests: the real eBPF programs on a simulated node (network namespaces,
//! bridge, pod cgroups), with a plain TCP server standing in for the agent.
//!
//! Needs root; runs when CI=true (and fails loudly without root), skips otherwise.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use prometheus_client::registry::Registry;
use ward::{
    capture::{self, Capture},
    config,
    policy::model::Target,
};
use ward_e2e::{
    netns::{Node, Pod, Proc},
    require_root,
};

const TESTNODE: &str = env!("CARGO_BIN_EXE_ward-testnode");
const LISTEN_PORT: u16 = 15001;
const APP_PORT: u16 = 8080;
const OTHER_PORT: u16 = 9090;
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> &'static Path {
    Path::new(TESTNODE)
}

/// Unpins on drop, so a failing test leaves no programs attached.
struct Pins(PathBuf);
impl Drop for Pins {
    fn drop(&mut self) {
        let _ = capture::uninstall(&self.0);
    }
}

/// client, backend and other pods; an agent stand-in on the node (its own cgroup) listening on
/// the node's v4 and v6 addresses; servers on backend and other.
struct World {
    // Drop order: processes, then pods, then the node.
    agent: Option<Proc>,
    _backend_srv: Proc,
    _other_srv: Proc,
    client: Pod,
    backend: Pod,
    other: Pod,
    pins: Pins,
    node: Node,
}

impl World {
    fn new(test: &str) -> World {
        let node = Node::new();
        let client = node.add_pod("client");
        let backend = node.add_pod("backend");
        let other = node.add_pod("other");
        let backend_srv = serve(&backend, "backend", &[APP_PORT, OTHER_PORT]);
        let other_srv = serve(&other, "other", &[APP_PORT]);
        let pins = Pins(PathBuf::from(format!("/sys/fs/bpf/ward-test-{test}-{}", std::process::id())));
        let _ = capture::uninstall(&pins.0);
        let mut w =
            World { agent: None, _backend_srv: backend_srv, _other_srv: other_srv, client, backend, other, pins, node };
        w.start_agent_echo();
        w
    }

    fn listen_v4(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.node.gateway_v4()), LISTEN_PORT)
    }
    fn listen_v6(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(self.node.gateway_v6()), LISTEN_PORT)
    }

    fn start_agent_echo(&mut self) {
        let (v4, v6) = (self.listen_v4().to_string(), self.listen_v6().to_string());
        let p = self.node.spawn(&self.node.agent_cgroup, bin(), &["serve", "agent", &v4, &v6]);
        for _ in 0..2 {
            p.expect_line("listening line", WAIT, |l| l.starts_with("listening "));
        }
        self.agent = Some(p);
    }

    fn cfg(&self, sk_msg: bool) -> config::Capture {
        config::Capture {
            cgroup: self.node.pods_cgroup.path().to_path_buf(),
            listen: self.listen_v4(),
            listen_v6: Some(self.listen_v6()),
            sk_msg: Some(sk_msg),
            pin_path: self.pins.0.clone(),
        }
    }

    fn attach(&self, targets: &[Target], sk_msg: bool, registry: &mut Registry) -> Capture {
        Capture::attach_for_agent_cgroup(&self.cfg(sk_msg), targets, registry, self.node.agent_cgroup.path())
            .unwrap_or_else(|e| panic!("attach: {e}"))
    }

    fn agent(&self) -> &Proc {
        self.agent.as_ref().expect("agent stand-in running")
    }

    /// The (peer, local) of the agent stand-in's next accepted connection.
    fn agent_accepted(&self) -> (SocketAddr, SocketAddr) {
        let line = self.agent().expect_line("accepted line", WAIT, |l| l.starts_with("accepted "));
        let field = |k: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k))
                .unwrap_or_else(|| panic!("{k} missing in {line:?}"))
                .parse()
                .unwrap_or_else(|e| panic!("{k} in {line:?}: {e}"))
        };
        (field("peer="), field("local="))
    }
}

fn serve(pod: &Pod, name: &str, ports: &[u16]) -> Proc {
    let mut addrs: Vec<String> = Vec::new();
    for port in ports {
        addrs.push(SocketAddr::new(IpAddr::V4(pod.ipv4), *port).to_string());
        addrs.push(SocketAddr::new(IpAddr::V6(pod.ipv6), *port).to_string());
    }
    let mut args = vec!["serve", name];
    args.extend(addrs.iter().map(String::as_str));
    let p = pod.spawn(bin(), &args);
    for _ in &addrs {
        p.expect_line("listening line", WAIT, |l| l.starts_with("listening "));
    }
    p
}

#[derive(Debug, PartialEq, Eq)]
enum Reached {
    /// Server name and the client's local address.
    Server(String, SocketAddr),
    Failed(String),
}

fn connect(pod: &Pod, to: SocketAddr, bytes: usize) -> Reached {
    let out = pod.run(bin(), &["connect", &to.to_string(), &bytes.to_string()]);
    let line = out.last().unwrap_or_else(|| panic!("connect {to} printed nothing"));
    if let Some(rest) = line.strip_prefix("ok ") {
        let field = |k: &str| {
            rest.split_whitespace().find_map(|f| f.strip_prefix(k)).unwrap_or_else(|| panic!("{k} in {line:?}"))
        };
        Reached::Server(field("server=").to_owned(), field("local=").parse().expect("local addr"))
    } else {
        Reached::Failed(line.clone())
    }
}

fn server_of(r: &Reached) -> &str {
    match r {
        Reached::Server(name, _) => name,
        Reached::Failed(e) => panic!("connection failed: {e}"),
    }
}

fn target(addrs: &[IpAddr], ports: &[u16]) -> Target {
    Target {
        addresses: addrs.iter().map(|a| a.to_string().parse().expect("cidr")).collect(),
        ports: ports.to_vec(),
        hosts: vec![],
    }
}

/// Value of one `ward_capture_*` series in the registry's text exposition.
fn metric(registry: &Registry, series: &str) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} not in metrics:\n{text}"))
}

const REDIRECTED: &str = "ward_capture_connect_total{verdict=\"redirected\"}";
const NOT_PROTECTED: &str = "ward_capture_connect_total{verdict=\"not_protected\"}";

#[test]
fn protected_v4_destination_lands_on_listener_and_original_dst_is_found() {
    if !require_root("protected_v4_destination_lands_on_listener_and_original_dst_is_found") {
        return;
    }
    let w = World::new("v4");
    let mut registry = Registry::with_prefix("ward");
    let backend = SocketAddr::new(IpAddr::V4(w.backend.ipv4), APP_PORT);
    let cap = w.attach(&[target(&[backend.ip()], &[APP_PORT])], false, &mut registry);
    assert!(cap.is_attached());

    let r = connect(&w.client, backend, 1000);
    assert_eq!(server_of(&r), "agent", "protected destination must land on the capture listener");
    let (peer, local) = w.agent_accepted();
    let Reached::Server(_, client_local) = r else { unreachable!() };
    assert_eq!(peer, client_local, "the agent sees the client's own address (no NAT)");
    assert_eq!(local, w.listen_v4());
    assert_eq!(cap.original_dst(peer, local), Some(backend), "original destination");
    assert_eq!(cap.original_dst(peer, local), None, "the entry is consumed by the lookup");

    // Same pod, unprotected port; and an unprotected pod: reached directly.
    assert_eq!(server_of(&connect(&w.client, SocketAddr::new(backend.ip(), OTHER_PORT), 10)), "backend");
    assert_eq!(server_of(&connect(&w.client, SocketAddr::new(IpAddr::V4(w.other.ipv4), APP_PORT), 10)), "other");
    assert_eq!(metric(&registry, REDIRECTED), 1);
    assert!(metric(&registry, NOT_PROTECTED) >= 2);
    assert_eq!(metric(&registry, "ward_capture_sock_ops_total{event=\"tuple_recorded\"}"), 1);
}

#[test]
fn ipv6_and_v4_mapped_destinations_are_captured() {
    if !require_root("ipv6_and_v4_mapped_destinations_are_captured") {
        return;
    }
    let w = World::new("v6");
    let mut registry = Registry::with_prefix("ward");
    let v4 = SocketAddr::new(IpAddr::V4(w.backend.ipv4), APP_PORT);
    let v6 = SocketAddr::new(IpAddr::V6(w.backend.ipv6), APP_PORT);
    let cap = w.attach(&[target(&[v4.ip(), v6.ip()], &[APP_PORT])], false, &mut registry);

    assert_eq!(server_of(&connect(&w.client, v6, 100)), "agent", "IPv6 destination");
    let (peer, local) = w.agent_accepted();
    assert_eq!(local, w.listen_v6(), "native IPv6 goes to the IPv6 listener");
    assert_eq!(cap.original_dst(peer, local), Some(v6));

    // A dual-stack (AF_INET6) socket connecting to ::ffff:a.b.c.d makes an IPv4 connection:
    // it must be matched against the IPv4 target and sent to the IPv4 listener.
    let mapped: SocketAddr = format!("[::ffff:{}]:{APP_PORT}", w.backend.ipv4).parse().expect("mapped");
    assert_eq!(server_of(&connect(&w.client, mapped, 100)), "agent", "v4-mapped destination");
    let (peer, local) = w.agent_accepted();
    assert_eq!(local, w.listen_v4());
    assert_eq!(cap.original_dst(peer, local), Some(v4), "v4-mapped comes back as IPv4");

    // Unprotected IPv6 pod: direct.
    assert_eq!(server_of(&connect(&w.client, SocketAddr::new(IpAddr::V6(w.other.ipv6), APP_PORT), 10)), "other");
}

#[test]
fn target_map_updates_take_effect_without_reattach() {
    if !require_root("target_map_updates_take_effect_without_reattach") {
        return;
    }
    let w = World::new("sync");
    let mut registry = Registry::with_prefix("ward");
    let backend = SocketAddr::new(IpAddr::V4(w.backend.ipv4), APP_PORT);
    let cap = w.attach(&[], false, &mut registry);
    assert_eq!(server_of(&connect(&w.client, backend, 10)), "backend", "nothing protected yet");

    cap.sync_targets(&[target(&[IpAddr::V4(w.backend.ipv4)], &[])]).expect("sync");
    assert_eq!(server_of(&connect(&w.client, backend, 10)), "agent", "now protected (any port)");
    assert_eq!(
        server_of(&connect(&w.client, SocketAddr::new(backend.ip(), OTHER_PORT), 10)),
        "agent",
        "empty ports protect every port"
    );
    assert_eq!(metric(&registry, "ward_capture_protected_prefixes"), 1);

    // A wider prefix with one port, plus the /32 with another: the /32 inherits the wider port.
    let net = w.node.gateway_v4().octets();
    let wide: Target = Target {
        addresses: vec![format!("{}.{}.{}.0/24", net[0], net[1], net[2]).parse().expect("cidr")],
        ports: vec![OTHER_PORT],
        hosts: vec![],
    };
    cap.sync_targets(&[wide, target(&[backend.ip()], &[APP_PORT])]).expect("sync");
    assert_eq!(server_of(&connect(&w.client, backend, 10)), "agent");
    assert_eq!(
        server_of(&connect(&w.client, SocketAddr::new(backend.ip(), OTHER_PORT), 10)),
        "agent",
        "inherited port"
    );
    assert_eq!(
        server_of(&connect(&w.client, SocketAddr::new(IpAddr::V4(w.other.ipv4), OTHER_PORT), 10)),
        "agent",
        "wide prefix"
    );
    assert_eq!(server_of(&connect(&w.client, SocketAddr::new(IpAddr::V4(w.other.ipv4), APP_PORT), 10)), "other");

    cap.sync_targets(&[]).expect("sync");
    assert_eq!(server_of(&connect(&w.client, backend, 10)), "backend", "protection removed");
    assert_eq!(metric(&registry, "ward_capture_protected_prefixes"), 0);
}

#[test]
fn connections_fail_closed_while_the_listener_is_gone() {
    if !require_root("connections_fail_closed_while_the_listener_is_gone") {
        return;
    }
    let mut w = World::new("closed");
    let mut registry = Registry::with_prefix("ward");
    let backend = SocketAddr::new(IpAddr::V4(w.backend.ipv4), APP_PORT);
    let _cap = w.attach(&[target(&[backend.ip()], &[APP_PORT])], false, &mut registry);
    let mut agent = w.agent.take().expect("agent");
    agent.kill();

    match connect(&w.client, backend, 10) {
        Reached::Failed(e) => {
            assert!(e.contains("ConnectionRefused"), "expected a refused connection, got {e}")
        }
        Reached::Server(name, _) => panic!("protected destination reached {name} with the agent down"),
    }
    assert!(
        !w._backend_srv.lines_seen().iter().any(|l| l.starts_with("accepted ")),
        "the backend must not see the connection"
    );
    assert_eq!(server_of(&connect(&w.client, SocketAddr::new(backend.ip(), OTHER_PORT), 10)), "backend");
}

#[test]
fn pinned_capture_outlives_its_owner_and_is_adopted_once() {
    if !require_root("pinned_capture_outlives_its_owner_and_is_adopted_once") {
        return;
    }
    let w = World::new("adopt");
    let backend = SocketAddr::new(IpAddr::V4(w.backend.ipv4), APP_PORT);
    let targets = [target(&[backend.ip()], &[APP_PORT])];
    {
        let mut registry = Registry::with_prefix("ward");
        let first = w.attach(&targets, false, &mut registry);
        assert!(!first.adopted());
    }
    // The agent process is gone (its Capture dropped): capture stays in force.
    assert_eq!(server_of(&connect(&w.client, backend, 10)), "agent");
    let (peer, local) = w.agent_accepted();

    let mut registry = Registry::with_prefix("ward");
    let second = w.attach(&targets, false, &mut registry);
    assert!(second.adopted(), "a restarted agent adopts the pins");
    assert_eq!(second.original_dst(peer, local), Some(backend), "state recorded before the restart is found");

    let (redirected, not_protected) = (metric(&registry, REDIRECTED), metric(&registry, NOT_PROTECTED));
    assert_eq!(server_of(&connect(&w.client, backend, 10)), "agent");
    let _ = w.agent_accepted();
    // Attached twice, the second connect program would see the already rewritten destination
    // and count it as not protected.
    assert_eq!(metric(&registry, REDIRECTED), redirected + 1);
    assert_eq!(metric(&registry, NOT_PROTECTED), not_protected, "programs attached exactly once");
}

#[test]
fn uninstall_removes_everything() {
    if !require_root("uninstall_removes_everything") {
        return;
    }
    let w = World::new("uninst");
    let backend = SocketAddr::new(IpAddr::V4(w.backend.ipv4), APP_PORT);
    let mut registry = Registry::with_prefix("ward");
    let cap = w.attach(&[target(&[backend.ip()], &[APP_PORT])], true, &mut registry);
    assert_eq!(server_of(&connect(&w.client, backend, 10)), "agent");

    // Even while an agent still holds the links open, uninstall detaches them.
    let report = capture::uninstall(&w.pins.0).expect("uninstall");
    assert!(report.removed_dir, "{report:?}");
    assert_eq!(report.links.len(), 4, "connect4, connect6, sock_ops, sock_ops_agent: {report:?}");
    assert!(report.maps.len() >= 7, "{report:?}");
    assert!(!w.pins.0.exists());
    assert!(!cap.is_attached());
    assert_eq!(server_of(&connect(&w.client, backend, 10)), "backend", "capture is gone");
    assert_eq!(capture::uninstall(&w.pins.0).expect("idempotent"), capture::UninstallReport::default());
}

/// Through an agent stand-in that forwards to the backend: client -> agent -> backend, all
/// sockets local. With sk_msg on, payload skips TCP; with it off, it does not; the bytes are
/// the same either way.
fn forward_through_agent(sk_msg: bool, agent_inside_pods: bool) -> (Registry, Reached) {
    let mut w = World::new(if sk_msg { "skmsg-on" } else { "skmsg-off" });
    let backend = SocketAddr::new(IpAddr::V4(w.backend.ipv4), APP_PORT);
    w.agent.take().expect("echo agent").kill();
    let agent_cgroup =
        if agent_inside_pods { w.node.pods_cgroup.child("ward-agent") } else { w.node.agent_cgroup.child("proxy") };
    let proxy =
        w.node.spawn(&agent_cgroup, bin(), &["proxy", "agent", &w.listen_v4().to_string(), &backend.to_string()]);
    proxy.expect_line("listening line", WAIT, |l| l.starts_with("listening "));

    let mut registry = Registry::with_prefix("ward");
    let cfg = w.cfg(sk_msg);
    let _cap = Capture::attach_for_agent_cgroup(
        &cfg,
        &[target(&[backend.ip()], &[APP_PORT])],
        &mut registry,
        agent_cgroup.path(),
    )
    .unwrap_or_else(|e| panic!("attach: {e}"));
    let r = connect(&w.client, backend, 4 << 20);
    drop(proxy);
    drop(agent_cgroup);
    (registry, r)
}

#[test]
fn sk_msg_on_and_off_deliver_identical_bytes() {
    if !require_root("sk_msg_on_and_off_deliver_identical_bytes") {
        return;
    }
    let (off, r) = forward_through_agent(false, false);
    assert_eq!(server_of(&r), "backend", "via the agent to the backend, 4 MiB echoed intact");
    assert_eq!(metric(&off, "ward_capture_sk_msg_total{verdict=\"redirected\"}"), 0);
    assert_eq!(metric(&off, "ward_capture_sock_ops_total{event=\"sock_inserted\"}"), 0);

    let (on, r) = forward_through_agent(true, false);
    assert_eq!(server_of(&r), "backend", "same bytes with sk_msg on");
    assert!(metric(&on, "ward_capture_sock_ops_total{event=\"sock_inserted\"}") >= 2);
    assert!(metric(&on, "ward_capture_sk_msg_total{verdict=\"redirected\"}") > 0, "the fast path was used");
}

#[test]
fn agent_inside_the_captured_cgroup_is_not_captured() {
    if !require_root("agent_inside_the_captured_cgroup_is_not_captured") {
        return;
    }
    // As on a node, where ward's own pod lives under kubepods: its upstream connection to the
    // protected backend must go out directly, not loop back into itself.
    let (registry, r) = forward_through_agent(false, true);
    assert_eq!(server_of(&r), "backend");
    assert_eq!(metric(&registry, REDIRECTED), 1, "only the client's connection");
    assert_eq!(metric(&registry, "ward_capture_connect_total{verdict=\"agent_socket\"}"), 1);
}
