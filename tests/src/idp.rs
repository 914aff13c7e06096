//! Identity providers as child processes on loopback: the dev IdP (`ward dev-idp`) and a
//! real, OpenID Certified provider (`oidc-provider` on node, in `tests/idp`). Each is killed
//! (by its pid) when its handle drops.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, mpsc},
    time::Duration,
};

use serde_json::{Value, json};

use crate::http;

/// How long a child may take to print its `listening on` line. A safety net against a
/// hung start, not a measurement.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A child process whose stdout announced `listening on <url> ...`; stderr goes to a log
/// file, shown when a start fails and removed on drop.
#[derive(Debug)]
struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command) -> (Self, String) {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("ward-e2e-{}-{name}-{seq}.log", std::process::id()));
        let log_file = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keep draining stdout after the first line so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line);
                }
            }
        });
        let mut proc = Self { name, child: Some(child), log };
        match rx.recv_timeout(START_DEADLINE) {
            Ok(line) => {
                let url = line["listening on ".len()..].split_whitespace().next().unwrap_or_default().to_owned();
                (proc, url)
            }
            Err(_) => {
                proc.kill();
                let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
                panic!("{name} did not announce its address; its stderr:\n{log}");
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// JWKS and discovery fetch counts, as the dev IdP saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub discovery: u64,
    pub jwks: u64,
}

/// `ward dev-idp` on a loopback port.
#[derive(Debug)]
pub struct DevIdp {
    proc: Proc,
    args: Vec<String>,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The issuer it signs as (its URL unless `--issuer` was given).
    pub issuer: String,
}

impl DevIdp {
    /// Start on a free port with extra `ward dev-idp` arguments (`--alg ES256`, `--max-age 1`).
    pub fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", args.iter().map(|s| (*s).to_owned()).collect())
    }

    fn start_on(listen: &str, args: Vec<String>) -> Self {
        let mut cmd = Command::new(crate::ward_bin());
        cmd.arg("dev-idp").arg("--listen").arg(listen).args(&args).env("RUST_LOG", "info");
        let (proc, url) = Proc::spawn("dev-idp", cmd);
        let addr: SocketAddr = url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("dev IdP announced an unexpected URL {url:?}"));
        let issuer = args
            .iter()
            .position(|a| a == "--issuer")
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| url.clone());
        Self { proc, args, addr, url, issuer }
    }

    /// Kill the process: connections to its port are refused from now on.
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    /// Start again on the same port and arguments (with new keys).
    pub fn restart(&mut self) {
        self.proc.kill();
        *self = Self::start_on(&self.addr.to_string(), self.args.clone());
    }

    pub fn discovery_uri(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.url)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// A token for these claims (`iss`, `iat`, `exp` filled in unless given), signed with
    /// the current key.
    pub async fn mint(&self, claims: Value) -> String {
        self.mint_with(claims, "").await
    }

    /// `query`: `alg=ES256`, `kid=other`, `noKid=true`, `key=<kid>`.
    pub async fn mint_with(&self, claims: Value, query: &str) -> String {
        http::post_json(&format!("{}/mint?{query}", self.url), &claims).await.ok().body
    }

    /// Add a key and make it current; returns `{"current": kid, "published": [..]}`.
    pub async fn rotate(&self) -> Value {
        http::post_json(&format!("{}/rotate", self.url), &json!(null)).await.ok().json()
    }

    pub async fn retire_old(&self) -> Value {
        http::post_json(&format!("{}/retire-old", self.url), &json!(null)).await.ok().json()
    }

    /// `{"mode": "none"|"down"|"slow"|"stall"|"huge"|"garbage"|"5xx", "delayMillis": .., "sizeBytes": ..}`
    pub async fn fault(&self, fault: Value) {
        http::post_json(&format!("{}/fault", self.url), &fault).await.ok();
    }

    pub async fn stats(&self) -> Stats {
        let v = http::get(&format!("{}/stats", self.url)).await.ok().json();
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("stats without {k}: {v}"));
        Stats { discovery: n("discovery"), jwks: n("jwks") }
    }
}

/// The directory of the node test OP.
pub fn node_idp_dir() -> PathBuf {
    crate::workspace_root().join("tests").join("idp")
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `npm ci` once per test process, if `node_modules` is missing.
fn ensure_installed(dir: &Path) {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("node_modules").join("oidc-provider").is_dir() {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm ci in {}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "npm ci in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The client the test OP knows, and the resource whose access tokens are JWTs.
pub const NODE_CLIENT_ID: &str = "ward-test";
pub const NODE_CLIENT_SECRET: &str = "ward-test-secret";
pub const NODE_RESOURCE: &str = "urn:ward:agent-api";
pub const NODE_AUDIENCE: &str = "agent-api";

/// `oidc-provider` (tests/idp/server.mjs) on a loopback port.
#[derive(Debug)]
pub struct NodeIdp {
    proc: Proc,
    /// `http://127.0.0.1:PORT`, also its issuer.
    pub issuer: String,
}

impl NodeIdp {
    /// Start the OP. Without node/npm: panics under CI, otherwise prints why and gives None.
    pub fn start() -> Option<Self> {
        if !have("node") || !have("npm") {
            assert!(!crate::in_ci(), "node and npm are required for the interop tests under CI");
            eprintln!("SKIPPED: node/npm not found; the oidc-provider interop test needs them");
            return None;
        }
        let dir = node_idp_dir();
        ensure_installed(&dir);
        let mut cmd = Command::new("node");
        cmd.arg("server.mjs").arg("0").current_dir(&dir);
        let (proc, issuer) = Proc::spawn("oidc-provider", cmd);
        Some(Self { proc, issuer })
    }

    /// A JWT access token from the client-credentials grant (RFC 6749 §4.4) for the
    /// agent-api resource (RFC 8707).
    pub async fn client_credentials_token(&self) -> String {
        let reply = http::post_form(
            &format!("{}/token", self.issuer),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", NODE_CLIENT_ID),
                ("client_secret", NODE_CLIENT_SECRET),
                ("resource", NODE_RESOURCE),
                ("scope", "api:read"),
            ],
        )
        .await;
        assert_eq!(reply.status, 200, "token request failed: {}\nOP log:\n{}", reply.body, self.proc.log());
        let v = reply.json();
        assert_eq!(v["token_type"], "Bearer", "{v}");
        v["access_token"].as_str().unwrap_or_else(|| panic!("no access_token in {v}")).to_owned()
    }

    /// Put a new signing key first (the OP signs with it from now on); old keys stay published.
    pub async fn rotate(&self) -> Value {
        http::post_json(&format!("{}/admin/rotate", self.issuer), &json!(null)).await.ok().json()
    }

    /// Publish only the current key.
    pub async fn retire_old(&self) -> Value {
        http::post_json(&format!("{}/admin/retire-old", self.issuer), &json!(null)).await.ok().json()
    }
}
