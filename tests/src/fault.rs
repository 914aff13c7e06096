//! Pieces of the fault-injection suite (`tests/tests/fault_*.rs`): scraping ward's
//! `/metrics`, reading a process's fd count and RSS from `/proc`, and waiting for a
//! condition with a safety-net deadline (a hang guard, never an assertion about speed).

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Generous: these guard against hangs on a loaded 2-core CI machine.
pub const HANG_GUARD: Duration = Duration::from_secs(90);

/// One scrape of the Prometheus text exposition: `series -> value`, where a series is the
/// metric name with its label set exactly as ward printed it (`name{a="x",b="y"}`).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub series: BTreeMap<String, f64>,
    pub text: String,
}

impl Scrape {
    /// Parse the text format: comment lines are skipped, each sample line is
    /// `<name>[{labels}] <value> [timestamp]`.
    pub fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Label values may contain spaces; the value follows the closing brace, if any.
            let split_from = line.rfind('}').map_or(0, |i| i + 1);
            let rest = &line[split_from..];
            let Some(space) = rest.find(' ') else { panic!("metrics line without a value: {line:?}") };
            let name = &line[..split_from + space];
            let value = rest[space..].split_whitespace().next().unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("bad value in {line:?}: {e}")),
            };
            series.insert(name.to_owned(), value);
        }
        Self { series, text: text.to_owned() }
    }

    /// Sum of every series of metric `name` whose labels include all of `labels`
    /// (0 when none exists: counters with a label set appear only once incremented).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).fold(0.0, |acc, (_, v)| acc + v)
    }

    /// The value of the one series of `name` with `labels`; panics if absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self.matching(name, labels).collect();
        match found.as_slice() {
            [(_, v)] => *v,
            [] => panic!("no series {name}{labels:?} in /metrics:\n{}", self.text),
            many => panic!("several series match {name}{labels:?}: {many:?}"),
        }
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.series.iter().filter_map(move |(series, v)| {
            let (n, l) = series.split_once('{').map_or((series.as_str(), ""), |(n, l)| (n, l.trim_end_matches('}')));
            if n != name {
                return None;
            }
            let have = parse_labels(l);
            labels.iter().all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v)).then_some((series.as_str(), *v))
        })
    }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else { break };
        // Values are escaped with backslashes; find the closing quote.
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value));
        rest = &body[end..];
    }
    out
}

/// `GET http://<admin>/<path>`: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let stream =
        tokio::net::TcpStream::connect(admin).await.unwrap_or_else(|e| panic!("connect to admin {admin}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap_or_else(|e| panic!("admin handshake: {e}"));
    tokio::spawn(conn);
    let req =
        http::Request::get(path).header("host", admin.to_string()).body(Empty::<Bytes>::new()).expect("admin request");
    let resp = sender.send_request(req).await.unwrap_or_else(|e| panic!("GET {path} on admin {admin}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap_or_else(|e| panic!("admin body: {e}")).to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Scrape ward's `/metrics`.
pub async fn scrape(admin: SocketAddr) -> Scrape {
    let (status, body) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
    Scrape::parse(&body)
}

/// Poll `cond` until it returns `Some`; panic with `what` (and the last state it
/// describes) after [`HANG_GUARD`].
pub async fn wait_for<T, F, Fut>(what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        match cond().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("gave up waiting for {what}; last state: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}")).count()
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Raise this process's open-file soft limit to `want` (bounded by the hard limit, which
/// root may raise too). Returns the limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    let mut next = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max.max(want) };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &next) } != 0 {
        next = libc::rlimit { rlim_cur: want.min(lim.rlim_max), rlim_max: lim.rlim_max };
        // SAFETY: as above.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &next) };
        assert_eq!(rc, 0, "setrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
    }
    next.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = "# HELP ward_requests Requests.\n# TYPE ward_requests counter\n\
                    ward_requests_total{decision=\"allow\",reason=\"allowed\"} 7\n\
                    ward_requests_total{decision=\"unavailable\",reason=\"keys_unavailable\"} 2\n\
                    ward_jwks_stale{issuer=\"http://127.0.0.1:9 x\\\"y\"} 1\n\
                    ward_active_connections 3\n# EOF\n";
        let s = Scrape::parse(text);
        assert_eq!(s.sum("ward_requests_total", &[]), 9.0);
        assert_eq!(s.get("ward_requests_total", &[("reason", "keys_unavailable")]), 2.0);
        assert_eq!(s.get("ward_jwks_stale", &[("issuer", "http://127.0.0.1:9 x\"y")]), 1.0);
        assert_eq!(s.get("ward_active_connections", &[]), 3.0);
        assert_eq!(s.sum("ward_requests_total", &[("decision", "forbidden")]), 0.0);
    }
}

/// Settings of one fault-test stack, written into ward's config.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The issuer's `jwks:` block, as a YAML flow map.
    pub jwks: String,
    /// The `proxy:` block, as a YAML flow map.
    pub proxy: String,
    /// `ward dev-idp` arguments.
    pub idp_args: Vec<String>,
    /// Point the listener at this address instead of the logging upstream.
    pub upstream_override: Option<SocketAddr>,
    /// More fields of the issuer entry, each line indented by two spaces (`  maxTokenBytes: 10`).
    pub issuer_extra: String,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            jwks:
                "{minRefreshSeconds: 1, maxRefreshSeconds: 1, unknownKidCooldownSeconds: 1, fetchTimeoutMillis: 1000}"
                    .to_owned(),
            proxy: "{}".to_owned(),
            idp_args: ["--alg", "ES256", "--audience", "api", "--max-age", "1"].map(str::to_owned).to_vec(),
            upstream_override: None,
            issuer_extra: String::new(),
        }
    }
}

/// ward's config for a fault test: one issuer, a DENY on `/admin*`, an ALLOW for any
/// authenticated caller, one listener and the admin endpoint.
pub fn fault_config(
    issuer: &str,
    listen: SocketAddr,
    upstream: SocketAddr,
    admin: SocketAddr,
    opts: &StackOptions,
) -> String {
    format!(
        r#"issuers:
- issuer: "{issuer}"
  audiences: [api]
  jwks: {jwks}
{issuer_extra}policies:
- name: deny-admin
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin*"]}}}}]}}]
- name: authenticated
  action: ALLOW
  rules: [{{from: [{{source: {{requestPrincipals: ["*"]}}}}]}}]
listeners:
- {{name: api, listen: "{listen}", upstream: "{upstream}"}}
admin: {{listen: "{admin}"}}
proxy: {proxy}
audit: {{enabled: false}}
"#,
        jwks = opts.jwks,
        proxy = opts.proxy,
        issuer_extra = opts.issuer_extra,
    )
}

/// The dev IdP, the logging upstream and ward (listener + admin), all on loopback.
#[derive(Debug)]
pub struct FaultStack {
    pub idp: crate::idp::DevIdp,
    pub upstream: crate::upstream::Upstream,
    pub ward: crate::ward::Ward,
    /// ward's enforcing listener.
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub opts: StackOptions,
    /// With the IdP started down: a token its first key signed before it was killed.
    pub minted_before_start: Option<String>,
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], crate::free_port()))
}

impl FaultStack {
    /// Start everything; with `idp_up: false` the IdP is started (to get its port and
    /// issuer) and killed before ward starts, so ward starts with its IdP unreachable.
    pub async fn start(opts: StackOptions, idp_up: bool) -> Self {
        let args = opts.idp_args.clone();
        let mut idp = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::idp::DevIdp::start(&args)
        })
        .await
        .expect("start dev IdP");
        let mut minted_before_start = None;
        if !idp_up {
            minted_before_start = Some(idp.mint(serde_json::json!({"sub": "early", "aud": "api"})).await);
            idp.stop();
        }
        let upstream = crate::upstream::Upstream::start().await;
        let (addr, admin) = (free_addr(), free_addr());
        let yaml = fault_config(&idp.issuer, addr, opts.upstream_override.unwrap_or(upstream.addr), admin, &opts);
        let ward = tokio::task::spawn_blocking(move || crate::ward::Ward::start(&yaml, &[addr, admin]))
            .await
            .expect("start ward");
        Self { idp, upstream, ward, addr, admin, opts, minted_before_start }
    }

    /// The config file text for this stack with other options (for reload tests).
    pub fn config_with(&self, opts: &StackOptions) -> String {
        fault_config(
            &self.idp.issuer,
            self.addr,
            opts.upstream_override.unwrap_or(self.upstream.addr),
            self.admin,
            opts,
        )
    }

    /// A valid token for subject `sub` from the IdP's current key.
    pub async fn token(&self, sub: &str) -> String {
        self.idp.mint(serde_json::json!({"sub": sub, "aud": "api"})).await
    }

    pub async fn scrape(&self) -> Scrape {
        scrape(self.admin).await
    }

    /// `/readyz` status.
    pub async fn readyz(&self) -> (u16, String) {
        admin_get(self.admin, "/readyz").await
    }

    /// Wait until `/readyz` says ready (keys loaded).
    pub async fn wait_ready(&self) {
        wait_for("ward /readyz 200", || async {
            let (status, body) = self.readyz().await;
            if status == 200 { Ok(()) } else { Err(format!("{status} {body}")) }
        })
        .await
    }

    /// One request on a fresh connection: the status (None on a transport error).
    pub async fn status(&self, path: &str, token: Option<&str>) -> Option<u16> {
        one_request(self.addr, path, token).await
    }

    /// Requests the upstream received whose `authorization` is not one of `valid`.
    pub fn unverified_upstream_requests(&self, valid: &std::collections::HashSet<String>) -> Vec<String> {
        self.upstream
            .requests()
            .into_iter()
            .filter(|r| {
                let auth = r
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                !auth.is_some_and(|t| valid.contains(t))
            })
            .map(|r| r.uri)
            .collect()
    }
}

/// One GET on its own connection, `Authorization: Bearer <token>` when given.
pub async fn one_request(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<u16> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "api");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = sender.send_request(req.body(Empty::<Bytes>::new()).expect("request")).await.ok()?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some(status)
}

/// Seconds since the Unix epoch, as a float (to compare with ward's timestamp gauges).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
