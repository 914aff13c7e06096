//! Rate limit for refetches caused by unknown `kid`s.
//!
//! An unknown kid usually means the IdP rotated, so the first one triggers a refetch at
//! once. But kids come from unauthenticated tokens: anyone can send a flood of random ones.
//! So a refetch for an unknown kid is allowed only once per cooldown, counted from the last
//! refetch *an unknown kid caused* (a start-up load or a scheduled refresh does not use up
//! the allowance: a rotation right after start-up is still followed at once). Kids still
//! missing after a refetch are remembered for a while (negative cache), so that a repeated
//! bogus kid does not take the next allowance from a genuinely new one.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Most remembered missing kids; beyond that the cooldown alone bounds the fetch rate.
const MAX_MISSED: usize = 1024;
/// Longer kids are not remembered (they are attacker-sized, and no IdP uses such kids).
const MAX_KID_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Refetch,
    /// Within the cooldown, or this kid was missing after a recent refetch.
    Suppressed,
}

#[derive(Debug)]
pub struct KidGate {
    cooldown: Duration,
    last_refetch: Option<Instant>,
    missed: HashMap<String, Instant>,
}

impl KidGate {
    pub fn new(cooldown: Duration) -> Self {
        Self { cooldown, last_refetch: None, missed: HashMap::new() }
    }

    pub fn set_cooldown(&mut self, cooldown: Duration) {
        self.cooldown = cooldown;
    }

    /// How long a kid found missing after a refetch is not refetched for.
    fn negative_ttl(&self) -> Duration {
        self.cooldown.saturating_mul(2)
    }

    /// A token's kid is not in the current key set and no fetch is in flight: may it cause
    /// one? `Refetch` also starts the cooldown.
    pub fn check(&mut self, kid: Option<&str>, now: Instant) -> Decision {
        if let Some(at) = kid.and_then(|k| self.missed.get(k))
            && now.saturating_duration_since(*at) < self.negative_ttl()
        {
            return Decision::Suppressed;
        }
        if let Some(last) = self.last_refetch
            && now.saturating_duration_since(last) < self.cooldown
        {
            return Decision::Suppressed;
        }
        self.last_refetch = Some(now);
        Decision::Refetch
    }

    /// The kid is still unknown after a refetch.
    pub fn missed(&mut self, kid: Option<&str>, now: Instant) {
        let Some(kid) = kid.filter(|k| k.len() <= MAX_KID_LEN) else { return };
        if self.missed.len() >= MAX_MISSED && !self.missed.contains_key(kid) {
            let ttl = self.negative_ttl();
            self.missed.retain(|_, at| now.saturating_duration_since(*at) < ttl);
            if self.missed.len() >= MAX_MISSED {
                return;
            }
        }
        self.missed.insert(kid.to_owned(), now);
    }

    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.missed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    #[test]
    fn first_unknown_kid_refetches_then_cooldown_from_that_refetch() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut g = KidGate::new(COOLDOWN);
        assert_eq!(g.check(Some("a"), at(0)), Decision::Refetch, "no previous kid refetch: go at once");
        assert_eq!(g.check(Some("b"), at(1)), Decision::Suppressed);
        assert_eq!(g.check(Some("c"), at(29)), Decision::Suppressed);
        assert_eq!(g.check(Some("d"), at(30)), Decision::Refetch, "cooldown over exactly at 30 s");
        assert_eq!(g.check(Some("e"), at(59)), Decision::Suppressed, "counted from the refetch at 30 s");
        assert_eq!(g.check(None, at(60)), Decision::Refetch, "tokens without kid share the allowance");
    }

    #[test]
    fn missed_kids_do_not_take_the_next_allowance() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut g = KidGate::new(COOLDOWN);
        assert_eq!(g.check(Some("bogus"), at(0)), Decision::Refetch);
        g.missed(Some("bogus"), at(0));
        assert_eq!(g.check(Some("bogus"), at(31)), Decision::Suppressed, "remembered for 2 x cooldown");
        assert_eq!(g.check(Some("new"), at(31)), Decision::Refetch, "a different kid still may");
        assert_eq!(g.check(Some("bogus"), at(62)), Decision::Refetch, "forgotten after 60 s, cooldown over");
    }

    #[test]
    fn flood_of_random_kids_is_bounded_by_the_cooldown() {
        let t0 = Instant::now();
        let mut g = KidGate::new(COOLDOWN);
        let mut refetches = 0;
        // 10 minutes, 100 random kids per second.
        for ms in (0..600_000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            let kid = format!("random-{ms}");
            if g.check(Some(&kid), now) == Decision::Refetch {
                refetches += 1;
                g.missed(Some(&kid), now);
            }
        }
        assert_eq!(refetches, 20, "600 s / 30 s cooldown");
        assert!(g.remembered() <= MAX_MISSED);
    }

    #[test]
    fn negative_cache_is_bounded() {
        let t0 = Instant::now();
        let mut g = KidGate::new(COOLDOWN);
        for i in 0..(MAX_MISSED * 3) {
            g.missed(Some(&format!("k{i}")), t0);
        }
        assert_eq!(g.remembered(), MAX_MISSED);
        g.missed(Some(&"x".repeat(MAX_KID_LEN + 1)), t0);
        assert_eq!(g.remembered(), MAX_MISSED);
        // Once the entries expire, room is made again.
        g.missed(Some("later"), t0 + COOLDOWN * 3);
        assert_eq!(g.remembered(), 1);
    }

    #[test]
    fn zero_cooldown_never_suppresses() {
        let t0 = Instant::now();
        let mut g = KidGate::new(Duration::ZERO);
        g.missed(Some("a"), t0);
        assert_eq!(g.check(Some("a"), t0), Decision::Refetch);
        assert_eq!(g.check(Some("a"), t0), Decision::Refetch);
    }
}
