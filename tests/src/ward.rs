//! The real `ward` binary, started with a generated config file.

use std::{
    fs,
    io::Read,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long ward may take to start listening (a debug build on a busy machine).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A running `ward run --config <file>`; killed on drop.
#[derive(Debug)]
pub struct Ward {
    child: Child,
    dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Ward {
    /// Write `config_yaml` and start ward. Returns once every address in `wait_for` accepts
    /// connections.
    pub fn start(config_yaml: &str, wait_for: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the ward config");
        let config = dir.path().join("ward.yaml");
        fs::write(&config, config_yaml).expect("write ward config");
        let stdout = fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let stderr = fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(crate::ward_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn ward");
        let mut ward = Self { child, dir, config };
        for addr in wait_for {
            ward.wait_listening(*addr);
        }
        ward
    }

    fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ward exited ({status}) before listening on {addr}; stderr:\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "ward not listening on {addr}; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size from /proc/<pid>/status, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    pub fn stderr(&self) -> String {
        read(self.dir.path().join("stderr"))
    }

    /// The audit log (ward's stdout).
    pub fn stdout(&self) -> String {
        read(self.dir.path().join("stdout"))
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Wait for ward to exit (after [`Self::terminate`]), at most `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for ward") {
                return status;
            }
            assert!(Instant::now() < end, "ward did not exit; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn read(path: PathBuf) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

impl Drop for Ward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
