//! Live reload. The config file's directory is watched (inotify through `notify`), which
//! also sees Kubernetes' ConfigMap update: the kubelet writes a new timestamped directory and
//! atomically swaps the `..data` symlink, so the file's own inode never changes. A slow poll
//! backs the watcher up (some filesystems send no events), and SIGHUP forces a reload.
//!
//! A file that fails to load is refused: the last good config stays in force, the error is
//! logged with file:line:column and `ward_config_last_reload_successful` drops to 0.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{Config, load_file, metrics::ReloadMetrics};

/// Applies a validated config; an `Err` (e.g. the kernel map could not be updated) counts
/// as a failed reload.
pub type Apply = Arc<dyn Fn(Arc<Config>) -> Result<u64, String> + Send + Sync>;

/// How often the file is re-read even without events.
const POLL: Duration = Duration::from_secs(5);
/// Events come in bursts (the kubelet's swap is several renames): settle before reading.
const SETTLE: Duration = Duration::from_millis(150);

pub struct Watcher {
    path: PathBuf,
    last: u64,
    metrics: Arc<ReloadMetrics>,
    apply: Apply,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("path", &self.path).finish_non_exhaustive()
    }
}

fn content_hash(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

impl Watcher {
    /// `path` is the file as given on the command line (it may be a symlink).
    pub fn new(path: PathBuf, metrics: Arc<ReloadMetrics>, apply: Apply) -> Self {
        let last = content_hash(&path).unwrap_or(0);
        Self { path, last, metrics, apply }
    }

    /// Run until the process exits.
    pub async fn run(mut self) {
        let (tx, mut rx) = mpsc::channel::<()>(16);
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
        let events_tx = tx.clone();
        // Keep the watcher alive for the life of this task.
        let _fs_watcher = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = events_tx.try_send(());
            }
        }) {
            Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; falling back to polling every {}s", POLL.as_secs());
                    None
                }
            },
            Err(e) => {
                warn!(error = %e, "no file watcher available; polling the config every {}s", POLL.as_secs());
                None
            }
        };
        let hup_tx = tx.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                let _ = hup_tx.send(()).await;
            }
        });
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(()) = rx.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = poll.tick() => {}
            }
            self.check().await;
        }
    }

    /// Reload if the content changed since the last attempt.
    async fn check(&mut self) {
        let path = self.path.clone();
        let hash = tokio::task::spawn_blocking(move || content_hash(&path)).await.ok().flatten();
        let Some(hash) = hash else {
            if self.last != 0 {
                self.last = 0;
                self.metrics.failure();
                error!(path = %self.path.display(), "config file disappeared; keeping the last good config");
            }
            return;
        };
        if hash == self.last {
            return;
        }
        self.last = hash;
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || load_file(&path)).await;
        match loaded {
            Ok(Ok(config)) => match (self.apply)(Arc::new(config)) {
                Ok(generation) => {
                    self.metrics.success(generation);
                    info!(path = %self.path.display(), generation, "config reloaded");
                }
                Err(e) => {
                    self.metrics.failure();
                    error!(path = %self.path.display(), error = %e, "config valid but could not be applied; keeping the last good config");
                }
            },
            Ok(Err(e)) => {
                self.metrics.failure();
                error!(error = %e, "config refused; keeping the last good config");
            }
            Err(e) => {
                self.metrics.failure();
                error!(error = %e, "config reload task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::fs::symlink,
        sync::atomic::{AtomicU64, Ordering},
    };

    use super::*;

    const GOOD_A: &str = "issuers: [{issuer: 'https://a.test', audiences: [x]}]\n";
    const GOOD_B: &str = "issuers: [{issuer: 'https://b.test', audiences: [x]}]\n";
    const BAD: &str = "issuers: [{issuer: 'https://c.test', audiences: [x], bogus: 1}]\n";

    async fn wait_for(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..200 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// The kubelet's ConfigMap layout: file -> ..data/file, ..data -> ..<timestamp>/.
    fn kubelet_write(dir: &Path, generation: u32, text: &str) {
        let ts = dir.join(format!("..2026_{generation}"));
        std::fs::create_dir(&ts).unwrap();
        std::fs::write(ts.join("ward.yaml"), text).unwrap();
        let tmp = dir.join("..data_tmp");
        symlink(ts.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    }

    #[tokio::test]
    async fn follows_configmap_symlink_swap_and_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        kubelet_write(dir.path(), 1, GOOD_A);
        let file = dir.path().join("ward.yaml");
        symlink("..data/ward.yaml", &file).unwrap();

        let applied = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let generation = Arc::new(AtomicU64::new(1));
        let (a, g) = (applied.clone(), generation.clone());
        let apply: Apply = Arc::new(move |c: Arc<Config>| {
            a.lock().unwrap().push(c.issuers[0].issuer.clone());
            Ok(g.fetch_add(1, Ordering::SeqCst) + 1)
        });
        let metrics = Arc::new(ReloadMetrics::default());
        tokio::spawn(Watcher::new(file.clone(), metrics.clone(), apply).run());

        kubelet_write(dir.path(), 2, GOOD_B);
        wait_for("reload of b", || applied.lock().unwrap().last().map(String::as_str) == Some("https://b.test")).await;
        assert_eq!(metrics.last_reload_ok.get(), 1);

        kubelet_write(dir.path(), 3, BAD);
        wait_for("refusal", || {
            metrics.reloads.get_or_create(&super::super::metrics::ResultLabel { result: "error" }).get() == 1
        })
        .await;
        assert_eq!(metrics.last_reload_ok.get(), 0);
        assert_eq!(applied.lock().unwrap().len(), 1, "a bad file must never be applied");

        kubelet_write(dir.path(), 4, GOOD_A);
        wait_for("recovery", || applied.lock().unwrap().len() == 2).await;
        assert_eq!(metrics.last_reload_ok.get(), 1);
    }
}
