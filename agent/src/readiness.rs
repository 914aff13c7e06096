//! Readiness as guards: each startup task holds a [`BlockReady`] until it has done what
//! readiness depends on (keys loaded, listeners bound, capture attached). `/readyz` is ready
//! only when no guard is held and every live check passes.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

#[derive(Debug, Clone, Default)]
pub struct Ready {
    pending: Arc<Mutex<BTreeSet<String>>>,
}

/// Held by a startup task; dropping it marks that task done.
#[derive(Debug)]
#[must_use = "readiness is released when the guard drops"]
pub struct BlockReady {
    name: String,
    pending: Arc<Mutex<BTreeSet<String>>>,
}

impl Ready {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a task that readiness waits for.
    pub fn register(&self, name: impl Into<String>) -> BlockReady {
        let name = name.into();
        self.lock().insert(name.clone());
        BlockReady { name, pending: self.pending.clone() }
    }

    /// Names of tasks not yet done (empty when ready).
    pub fn pending(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for BlockReady {
    fn drop(&mut self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_all_guards_drop() {
        let ready = Ready::new();
        let a = ready.register("keys");
        let b = ready.register("capture");
        assert_eq!(ready.pending(), vec!["capture".to_owned(), "keys".to_owned()]);
        drop(a);
        assert_eq!(ready.pending(), vec!["capture".to_owned()]);
        drop(b);
        assert!(ready.pending().is_empty());
    }
}
