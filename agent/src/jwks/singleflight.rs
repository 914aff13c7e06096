//! At most one fetch per issuer at a time: whoever needs the keys while a fetch is in
//! flight waits for that fetch instead of starting another.

use std::{
    future::Future,
    sync::{Arc, Mutex},
};

use futures_util::future::{BoxFuture, FutureExt, Shared};

/// A flight's result: `None` when the work panicked or was aborted (runtime shutdown).
pub type Flight<T> = Shared<BoxFuture<'static, Option<T>>>;

type Slot<T> = Arc<Mutex<Option<(u64, Flight<T>)>>>;

#[derive(Debug)]
pub struct SingleFlight<T: Clone> {
    slot: Slot<T>,
    next_id: std::sync::atomic::AtomicU64,
}

impl<T: Clone> Default for SingleFlight<T> {
    fn default() -> Self {
        Self { slot: Arc::default(), next_id: std::sync::atomic::AtomicU64::new(0) }
    }
}

/// Empties the slot when the flight ends, however it ends (including a panic in the work).
struct Land<T: Clone> {
    slot: Slot<T>,
    id: u64,
}

impl<T: Clone> Drop for Land<T> {
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *slot = None;
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Join the flight in progress, or start `work` as a new one (the `bool` says which).
    ///
    /// The work runs on its own task, so it completes even if every caller gives up (a
    /// client disconnects mid-request): the result still lands in the cache, and the next
    /// caller does not start the fetch over. Must be called inside a Tokio runtime.
    pub fn run<F>(&self, work: impl FnOnce() -> F) -> (Flight<T>, bool)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, flight)) = slot.as_ref() {
            return (flight.clone(), false);
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let land = Land { slot: Arc::clone(&self.slot), id };
        let work = work();
        // The slot is emptied before callers see the result: anyone arriving after that
        // has a reason to fetch that may postdate this response, so they get a new flight.
        let task = tokio::spawn(async move {
            let out = work.await;
            drop(land);
            out
        });
        let flight: Flight<T> = async move { task.await.ok() }.boxed().shared();
        *slot = Some((id, flight.clone()));
        (flight, true)
    }

    /// The flight in progress, if any.
    pub fn current(&self) -> Option<Flight<T>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, f)| f.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_run() {
        let sf = Arc::new(SingleFlight::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let joined = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let mut callers = Vec::new();
        for _ in 0..64 {
            let (sf, runs, joined, gate) = (sf.clone(), runs.clone(), joined.clone(), gate.clone());
            callers.push(tokio::spawn(async move {
                let (flight, _) = sf.run(|| async move {
                    gate.notified().await;
                    runs.fetch_add(1, Ordering::SeqCst) + 1
                });
                joined.fetch_add(1, Ordering::SeqCst);
                flight.await
            }));
        }
        // Release the work only once every caller holds the flight.
        while joined.load(Ordering::SeqCst) < 64 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for c in callers {
            assert_eq!(c.await.expect("caller task"), Some(1), "every caller sees the one run's result");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "64 concurrent callers ran the work once");
    }

    #[tokio::test]
    async fn joins_while_in_flight_and_starts_anew_after_landing() {
        let sf = SingleFlight::<u32>::default();
        let gate = Arc::new(Notify::new());
        let g = gate.clone();
        let (first, started) = sf.run(|| async move {
            g.notified().await;
            1
        });
        assert!(started);
        let (second, started) = sf.run(|| async { 2 });
        assert!(!started, "a second caller must join the flight in progress");
        assert!(sf.current().is_some());
        gate.notify_one();
        assert_eq!(first.await, Some(1));
        assert_eq!(second.await, Some(1), "the joiner gets the first flight's result");
        assert!(sf.current().is_none(), "the slot is empty once the flight landed");
        let (third, started) = sf.run(|| async { 3 });
        assert!(started, "after landing, a new caller starts a new flight");
        assert_eq!(third.await, Some(3));
    }

    #[tokio::test]
    async fn completes_when_every_caller_gave_up() {
        let sf = SingleFlight::<u32>::default();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let (flight, _) = sf.run(|| async move {
            tokio::task::yield_now().await;
            d.fetch_add(1, Ordering::SeqCst);
            7
        });
        drop(flight);
        while sf.current().is_some() {
            tokio::task::yield_now().await;
        }
        assert_eq!(done.load(Ordering::SeqCst), 1, "abandoned work still ran to completion");
    }

    #[tokio::test]
    async fn a_panicking_flight_frees_the_slot() {
        let sf = SingleFlight::<u32>::default();
        let (flight, _) = sf.run(|| async { panic!("fetch panicked (expected by this test)") });
        assert_eq!(flight.await, None);
        assert!(sf.current().is_none());
        let (again, started) = sf.run(|| async { 1 });
        assert!(started);
        assert_eq!(again.await, Some(1));
    }
}
