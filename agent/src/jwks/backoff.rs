//! Retry spacing after a failed refresh: exponential, capped, with jitter so that the agents
//! of a whole cluster do not retry against a recovering IdP in lockstep.

use std::time::Duration;

/// First retry delay.
pub const BASE: Duration = Duration::from_secs(1);
/// Retries never wait longer than this (nor longer than the normal refresh interval), so
/// an outage ends for the node at most this long after it ends for the IdP.
pub const CAP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The wait before the next attempt after one more failure. `interval` is the normal
    /// refresh interval's lower bound (`minRefreshSeconds`): retrying is always at least as
    /// eager as refreshing.
    pub fn next_delay(&mut self, interval: Duration) -> Duration {
        let d = delay(self.failures, CAP.min(interval).max(BASE), rand::random::<f64>());
        self.failures = self.failures.saturating_add(1);
        d
    }
}

/// "Equal jitter": half of the exponential step is fixed, half random (`frac` in [0, 1)),
/// so delays still grow while spreading out.
fn delay(failures: u32, cap: Duration, frac: f64) -> Duration {
    let step = BASE.saturating_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX)).min(cap);
    let half = step / 2;
    half + half.mul_f64(frac.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_within_jitter_bounds() {
        let cap = Duration::from_secs(60);
        let expected_steps = [1, 2, 4, 8, 16, 32, 60, 60, 60];
        for (failures, step) in expected_steps.iter().enumerate() {
            let step = Duration::from_secs(*step);
            let failures = failures as u32;
            assert_eq!(delay(failures, cap, 0.0), step / 2, "lowest delay after {failures} failures");
            assert_eq!(delay(failures, cap, 1.0), step, "highest delay after {failures} failures");
            let mid = delay(failures, cap, 0.5);
            assert!(mid > step / 2 && mid < step, "jittered delay {mid:?} outside ({:?}, {step:?})", step / 2);
        }
        assert_eq!(delay(u32::MAX, cap, 1.0), cap, "no overflow after many failures");
    }

    #[test]
    fn never_slower_than_the_refresh_interval() {
        let mut b = Backoff::default();
        for _ in 0..20 {
            assert!(b.next_delay(Duration::from_secs(5)) <= Duration::from_secs(5));
        }
        b.reset();
        assert!(b.next_delay(Duration::from_millis(10)) <= BASE, "the cap never goes below the base delay");
        b.reset();
        assert_eq!(b.failures, 0);
    }
}
