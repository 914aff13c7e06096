//! The shutdown signal shared by listeners and the admin server.

use tokio_util::sync::CancellationToken;

/// Cloneable; `trigger` once (e.g. on SIGTERM) and every holder sees it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once `trigger` was called (at once if it already was).
    pub async fn triggered(&self) {
        self.0.cancelled().await;
    }
}
