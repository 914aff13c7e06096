//! End to end with transparent capture: the real `ward run` on a simulated node (network
//! namespaces, pod cgroups), the dev IdP, and HTTP servers in pods. A client pod calls the
//! backend pod's real address with no proxy settings; ward's eBPF capture brings the request to
//! ward, which enforces the policy.
//!
//! Needs root; runs when CI=true (and fails loudly without root), skips otherwise.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ward_e2e::{
    cgroup::TestCgroup,
    netns::{Node, Pod, Proc},
    require_root, ward_bin,
};

const TESTNODE: &str = env!("CARGO_BIN_EXE_ward-testnode");
const APP_PORT: u16 = 8080;
const IDP: &str = "127.0.0.1:9000";
const ADMIN: &str = "127.0.0.1:9901";

fn bin() -> &'static Path {
    Path::new(TESTNODE)
}

/// What a GET from a pod got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Status(u16, String),
    Failed(String),
}

fn get(pod: &Pod, to: SocketAddr, token: Option<&str>) -> Got {
    let to_s = to.to_string();
    let mut args = vec!["get", to_s.as_str(), "/hello"];
    if let Some(t) = token {
        args.push(t);
    }
    let out = pod.run(bin(), &args);
    let line = out.last().cloned().unwrap_or_default();
    match line.strip_prefix("status=") {
        Some(rest) => {
            let (code, body) = rest.split_once(" body=").unwrap_or((rest, ""));
            Got::Status(code.parse().unwrap_or(0), body.to_owned())
        }
        None => Got::Failed(line),
    }
}

/// Poll until `cond` holds (a deadline for a failing test, not a measurement).
fn eventually(what: &str, mut cond: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match cond() {
            None => return,
            Some(last) => last,
        };
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last: {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Pins(PathBuf);
impl Drop for Pins {
    fn drop(&mut self) {
        let _ = ward::capture::uninstall(&self.0);
    }
}

struct Scene {
    ward: Option<Proc>,
    _idp: Proc,
    backend_srv: Proc,
    _other_srv: Proc,
    client: Pod,
    backend: Pod,
    other: Pod,
    ward_cgroup: TestCgroup,
    idp_cgroup: TestCgroup,
    config: PathBuf,
    _dir: tempfile::TempDir,
    pins: Pins,
    node: Node,
}

impl Scene {
    fn backend_v4(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.backend.ipv4), APP_PORT)
    }
    fn backend_v6(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(self.backend.ipv6), APP_PORT)
    }

    fn config_yaml(&self, protect_backend: bool) -> String {
        let addresses = if protect_backend {
            format!("[\"{}\", \"{}\"]", self.backend.ipv4, self.backend.ipv6)
        } else {
            "[]".to_owned()
        };
        format!(
            r#"issuers:
- issuer: "http://{IDP}"
  audiences: [api]
policies:
- name: admins-only
  action: ALLOW
  target: {{addresses: {addresses}, ports: [{APP_PORT}]}}
  rules: [{{when: [{{key: "request.auth.claims[role]", values: [admin]}}]}}]
admin: {{listen: "{ADMIN}"}}
capture:
  cgroup: "{cgroup}"
  listen: "{gw4}:15001"
  listenV6: "[{gw6}]:15001"
  pinPath: "{pin}"
"#,
            cgroup = self.node.pods_cgroup.path().display(),
            gw4 = self.node.gateway_v4(),
            gw6 = self.node.gateway_v6(),
            pin = self.pins.0.display(),
        )
    }

    /// Replace the config file atomically (ward watches it).
    fn write_config(&self, protect_backend: bool) {
        let tmp = self.config.with_extension("tmp");
        fs::write(&tmp, self.config_yaml(protect_backend)).expect("write config");
        fs::rename(&tmp, &self.config).expect("replace config");
    }

    fn start_ward(&mut self) {
        let config = self.config.display().to_string();
        self.ward = Some(self.node.spawn(&self.ward_cgroup, &ward_bin(), &["run", "--config", &config]));
    }

    fn mint(&self, claims: &str) -> String {
        let out = self.node.run(&self.idp_cgroup, bin(), &["post", IDP, "/mint", claims]);
        let token = out.last().cloned().unwrap_or_default();
        assert_eq!(token.split('.').count(), 3, "mint returned {out:?}");
        token
    }

    fn backend_requests(&self) -> Vec<String> {
        self.backend_srv.lines_seen().into_iter().filter(|l| l.starts_with("request ")).collect()
    }
}

fn http_server(pod: &Pod, name: &str) -> Proc {
    let v4 = SocketAddr::new(IpAddr::V4(pod.ipv4), APP_PORT).to_string();
    let v6 = SocketAddr::new(IpAddr::V6(pod.ipv6), APP_PORT).to_string();
    let p = pod.spawn(bin(), &["http", name, &v4, &v6]);
    for _ in 0..2 {
        p.expect_line("listening line", Duration::from_secs(10), |l| l.starts_with("listening "));
    }
    p
}

#[test]
fn captured_requests_are_enforced_end_to_end() {
    if !require_root("captured_requests_are_enforced_end_to_end") {
        return;
    }
    let node = Node::new();
    let client = node.add_pod("client");
    let backend = node.add_pod("backend");
    let other = node.add_pod("other");
    let backend_srv = http_server(&backend, "backend");
    let other_srv = http_server(&other, "other");
    let ward_cgroup = node.agent_cgroup.child("ward");
    let idp_cgroup = node.agent_cgroup.child("idp");
    let idp = node.spawn(&idp_cgroup, &ward_bin(), &["dev-idp", "--listen", IDP, "--issuer", &format!("http://{IDP}")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let pins = Pins(PathBuf::from(format!("/sys/fs/bpf/ward-e2e-{}", std::process::id())));
    let _ = ward::capture::uninstall(&pins.0);
    let mut s = Scene {
        ward: None,
        _idp: idp,
        backend_srv,
        _other_srv: other_srv,
        client,
        backend,
        other,
        ward_cgroup,
        idp_cgroup,
        config: dir.path().join("ward.yaml"),
        _dir: dir,
        pins,
        node,
    };
    eventually("the dev IdP", || {
        let out = s.node.run(&s.idp_cgroup, bin(), &["get", IDP, "/.well-known/openid-configuration"]);
        (!out.iter().any(|l| l.starts_with("status=200"))).then(|| format!("{out:?}"))
    });
    s.write_config(true);
    s.start_ward();

    let (v4, v6) = (s.backend_v4(), s.backend_v6());
    eventually("ward to capture and answer 401", || match get(&s.client, v4, None) {
        Got::Status(401, _) => None,
        other => Some(format!("{other:?}")),
    });
    // Requests made before ward had attached went straight to the backend; count from here.
    let baseline = s.backend_requests().len();
    let admin = s.mint(r#"{"sub":"alice","aud":"api","role":"admin"}"#);
    let viewer = s.mint(r#"{"sub":"bob","aud":"api","role":"viewer"}"#);

    let got = get(&s.client, v4, None);
    assert!(matches!(got, Got::Status(401, _)), "no token: {got:?}");
    let got = get(&s.client, v4, Some(&viewer));
    assert!(matches!(got, Got::Status(403, _)), "wrong claim: {got:?}");
    assert_eq!(get(&s.client, v4, Some(&admin)), Got::Status(200, "hello from backend".into()), "right token");
    let reached = s.backend_requests().split_off(baseline);
    assert_eq!(reached.len(), 1, "refused requests never reach the backend: {reached:?}");
    assert!(reached[0].contains("auth=yes"), "{reached:?}");
    assert!(reached[0].contains(&format!("peer={}:", s.node.gateway_v4())), "forwarded by ward: {reached:?}");

    // IPv6 too.
    let got = get(&s.client, v6, None);
    assert!(matches!(got, Got::Status(401, _)), "IPv6, no token: {got:?}");
    assert_eq!(get(&s.client, v6, Some(&admin)), Got::Status(200, "hello from backend".into()), "IPv6, right token");

    // Unprotected destination: reached directly, no token needed.
    let other = SocketAddr::new(IpAddr::V4(s.other.ipv4), APP_PORT);
    assert_eq!(get(&s.client, other, None), Got::Status(200, "hello from other".into()));

    // SIGKILL ward: capture stays, so the protected destination fails instead of bypassing.
    let before = s.backend_requests().len();
    s.ward.take().expect("ward").kill();
    match get(&s.client, v4, None) {
        Got::Failed(e) => assert!(e.contains("ConnectionRefused"), "{e}"),
        got => panic!("protected destination answered {got:?} with ward down"),
    }
    assert_eq!(s.backend_requests().len(), before, "nothing reached the backend while ward was down");

    // Restart: ward adopts the pins and enforcement resumes.
    s.start_ward();
    eventually("ward to resume enforcement", || match get(&s.client, v4, None) {
        Got::Status(401, _) => None,
        other => Some(format!("{other:?}")),
    });
    assert_eq!(get(&s.client, v4, Some(&admin)), Got::Status(200, "hello from backend".into()));

    // Reload: dropping the backend from the policy's target removes it from the kernel map
    // (direct again), adding it back restores capture; no restart.
    let pid = s.ward.as_ref().expect("ward").pid();
    s.write_config(false);
    eventually("reload to unprotect the backend", || match get(&s.client, v4, None) {
        Got::Status(200, _) => None,
        other => Some(format!("{other:?}")),
    });
    assert!(s.backend_requests().last().is_some_and(|l| l.contains("auth=no")), "reached directly");
    s.write_config(true);
    eventually("reload to protect the backend again", || match get(&s.client, v4, None) {
        Got::Status(401, _) => None,
        other => Some(format!("{other:?}")),
    });
    assert_eq!(s.ward.as_ref().expect("ward").pid(), pid, "same ward process throughout the reloads");
}
