//! Processes for the simulated node's pods (run inside a pod's netns and cgroup by
//! `ward_e2e::netns`). Plain blocking sockets, no DNS, one thread per connection.
//!
//! - `serve NAME ADDR...`: on accept print `accepted name=NAME peer=P local=L`, send `NAME\n`,
//!   then echo everything back.
//! - `proxy NAME LISTEN UPSTREAM`: on accept print the same line, connect to UPSTREAM and
//!   splice both ways (an agent stand-in that forwards).
//! - `connect ADDR [BYTES]`: read the server's name line, then send BYTES deterministic bytes
//!   and check the echo. Prints `ok server=NAME local=L echoed=N` or `err kind=K msg=M`.
//! - `http NAME ADDR...`: a minimal HTTP/1.1 server (keep-alive, no request bodies beyond
//!   `content-length`): prints `request name=NAME method=M path=P peer=P auth=yes|no` per
//!   request and answers 200 `hello from NAME`.
//! - `get ADDR PATH [TOKEN]`: one HTTP/1.1 GET (`Connection: close`), prints
//!   `status=CODE body=FIRST_LINE` or `err kind=K msg=M`.
//! - `post ADDR PATH JSON`: one POST of a JSON body; prints the response body as is.
//!
//! Every server prints `listening ADDR` once bound.
//!
//! All reads retry on EAGAIN (WouldBlock) the way a readiness-based (tokio, epoll) reader
//! does: with ward's sk_msg fast path on, Linux 6.18's sockmap receive path returns EAGAIN from
//! a *blocking* recv() woken by the peer's FIN (see bench/RESULTS-capture.md). The client
//! reports how often that happened (`eagain=N`).

use std::{
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::Mutex,
    thread,
    time::Duration,
};

static OUT: Mutex<()> = Mutex::new(());
static EAGAIN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `read`, retrying EAGAIN on a blocking socket (counted). A read timeout, set only by the
/// client, still ends the wait: its deadline is checked here.
fn read_retrying(r: &mut impl io::Read, buf: &mut [u8], deadline: Option<std::time::Instant>) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                    return Err(e);
                }
                EAGAIN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

/// `io::copy` built on [`read_retrying`].
fn copy(r: &mut impl io::Read, w: &mut impl io::Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = read_retrying(r, &mut buf, None)?;
        if n == 0 {
            return Ok(total);
        }
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn say(line: &str) {
    let _g = OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.len() >= 3 => serve(&args[1], &args[2..]),
        Some("proxy") if args.len() == 4 => proxy(&args[1], &args[2], &args[3]),
        Some("http") if args.len() >= 3 => http_serve(&args[1], &args[2..]),
        Some("get") if args.len() >= 3 => http_get(&args[1], &args[2], args.get(3).map(String::as_str)),
        Some("post") if args.len() == 4 => http_post(&args[1], &args[2], &args[3]),
        Some("connect") if args.len() >= 2 => {
            connect(&args[1], args.get(2).map_or(0, |n| n.parse().expect("BYTES is a number")))
        }
        _ => {
            eprintln!(
                "usage: ward-testnode serve NAME ADDR... | proxy NAME LISTEN UPSTREAM | connect ADDR [BYTES] \
                 | http NAME ADDR... | get ADDR PATH [TOKEN] | post ADDR PATH JSON"
            );
            std::process::exit(2);
        }
    }
}

fn bind(addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().expect("ADDR is ip:port");
    let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    say(&format!("listening {}", l.local_addr().expect("local addr")));
    l
}

fn accepted(name: &str, s: &TcpStream) {
    let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
    say(&format!("accepted name={name} peer={peer} local={local}"));
}

/// Accept on every address, one thread per connection, until killed.
fn serve_each(name: &str, addrs: &[String], conn: fn(&str, TcpStream)) {
    let listeners: Vec<TcpListener> = addrs.iter().map(|a| bind(a)).collect();
    let mut handles = Vec::new();
    for l in listeners {
        let name = name.to_owned();
        handles.push(thread::spawn(move || {
            for s in l.incoming().flatten() {
                let name = name.clone();
                thread::spawn(move || conn(&name, s));
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}

fn serve(name: &str, addrs: &[String]) {
    serve_each(name, addrs, echo_conn);
}

fn echo_conn(name: &str, s: TcpStream) {
    accepted(name, &s);
    let mut w = s.try_clone().expect("clone");
    if w.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut r = s;
    let _ = copy(&mut r, &mut w);
    let _ = w.shutdown(Shutdown::Write);
}

fn proxy(name: &str, listen: &str, upstream: &str) {
    let l = bind(listen);
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM is ip:port");
    for s in l.incoming().flatten() {
        let name = name.to_owned();
        thread::spawn(move || {
            accepted(&name, &s);
            let up = match TcpStream::connect(upstream) {
                Ok(u) => u,
                Err(e) => {
                    say(&format!("upstream-error {upstream} {e}"));
                    return;
                }
            };
            let (mut c_r, mut c_w) = (s.try_clone().expect("clone"), s);
            let (mut u_r, mut u_w) = (up.try_clone().expect("clone"), up);
            let t = thread::spawn(move || {
                let _ = copy(&mut c_r, &mut u_w);
                let _ = u_w.shutdown(Shutdown::Write);
            });
            let _ = copy(&mut u_r, &mut c_w);
            let _ = c_w.shutdown(Shutdown::Write);
            let _ = t.join();
        });
    }
}

/// Byte `i` of the test payload: not periodic at any small power of two, so a reordering or a
/// dropped chunk shows.
fn payload_byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i % 251) as u8
}

fn connect(addr: &str, bytes: usize) {
    let addr: SocketAddr = addr.parse().expect("ADDR is ip:port");
    let s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("err kind={:?} msg={e}", e.kind()));
            return;
        }
    };
    // Bounds for a broken test, so it fails instead of hanging.
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(20)));
    let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut reader = BufReader::new(s.try_clone().expect("clone"));
    let mut name = String::new();
    if let Err(e) = reader.read_line(&mut name) {
        say(&format!("err kind={:?} msg=reading name: {e}", e.kind()));
        return;
    }
    let name = name.trim().to_owned();
    let mut w = s;
    let writer = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < bytes {
            let n = buf.len().min(bytes - sent);
            for (j, b) in buf[..n].iter_mut().enumerate() {
                *b = payload_byte(sent + j);
            }
            w.write_all(&buf[..n]).expect("send");
            sent += n;
        }
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = match read_retrying(&mut reader, &mut buf, Some(deadline)) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                say(&format!("err kind={:?} msg=reading echo at byte {got}: {e}", e.kind()));
                return;
            }
        };
        for (j, b) in buf[..n].iter().enumerate() {
            if *b != payload_byte(got + j) {
                say(&format!("err kind=Corrupt msg=echo differs at byte {}", got + j));
                return;
            }
        }
        got += n;
    }
    let _ = writer.join();
    if got != bytes {
        say(&format!("err kind=Short msg=echoed {got} of {bytes} bytes"));
        return;
    }
    let eagain = EAGAIN.load(std::sync::atomic::Ordering::Relaxed);
    say(&format!("ok server={name} local={local} echoed={got} eagain={eagain}"));
}

/// `WARD_TESTNODE_QUIET=1`: no per-request line (benchmarks).
fn quiet() -> bool {
    static QUIET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *QUIET.get_or_init(|| std::env::var("WARD_TESTNODE_QUIET").is_ok_and(|v| v == "1"))
}

fn http_serve(name: &str, addrs: &[String]) {
    serve_each(name, addrs, http_conn);
}

fn http_conn(name: &str, s: TcpStream) {
    let _ = s.set_nodelay(true);
    let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    loop {
        let mut request_line = String::new();
        match r.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut auth = false;
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.to_ascii_lowercase().as_str() {
                "authorization" => auth = true,
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !quiet() {
            say(&format!(
                "request name={name} method={method} path={path} peer={peer} auth={}",
                if auth { "yes" } else { "no" }
            ));
        }
        let reply = format!("hello from {name}\n");
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n",
            reply.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        // One write: head and body in two segments would meet Nagle and delayed ACKs (40 ms).
        let response = [head.as_bytes(), reply.as_bytes()].concat();
        if w.write_all(&response).is_err() || close {
            return;
        }
    }
}

/// One request with `Connection: close`; the whole response.
fn http_exchange(addr: &str, request: &[u8]) -> io::Result<String> {
    let addr: SocketAddr = addr.parse().map_err(io::Error::other)?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = read_retrying(&mut s, &mut buf, Some(std::time::Instant::now() + Duration::from_secs(20)))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn http_get(addr: &str, path: &str, token: Option<&str>) {
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}connection: close\r\n\r\n");
    match http_exchange(addr, req.as_bytes()) {
        Ok(resp) => {
            let status = resp.split_whitespace().nth(1).unwrap_or("none").to_owned();
            let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            say(&format!("status={status} body={}", body.lines().next().unwrap_or("")));
        }
        Err(e) => say(&format!("err kind={:?} msg={e}", e.kind())),
    }
}

fn http_post(addr: &str, path: &str, json: &str) {
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
        json.len()
    );
    match http_exchange(addr, req.as_bytes()) {
        Ok(resp) => say(resp.split_once("\r\n\r\n").map(|(_, b)| b.trim()).unwrap_or("")),
        Err(e) => say(&format!("err kind={:?} msg={e}", e.kind())),
    }
}
