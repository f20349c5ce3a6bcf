//! This node's own limits ([`crate::limits`] shares them between nodes through Redis): token
//! buckets (the `governor` crate) for sends per user, sign-in attempts per client address and
//! per (address, user name), and [`Backoff`] for failed sign-ins per user name, which slows
//! them down but never refuses. A refusal says how long to wait.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{clock::Clock, clock::DefaultClock, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{config::RateLimits, error::ApiError};

pub struct Limiters {
    send: DefaultKeyedRateLimiter<String>,
    /// Per (client address, user name): sign-ins.
    auth: DefaultKeyedRateLimiter<String>,
    /// Per client address: sign-ups and sign-ins.
    auth_addr: DefaultKeyedRateLimiter<String>,
    /// Per user name: failed sign-ins.
    pub names: Backoff,
    clock: DefaultClock,
}

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v.max(1)).unwrap_or(NonZeroU32::MIN)
}

fn quota(interval: Duration, burst: u32) -> Quota {
    Quota::with_period(interval.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(nz(burst))
}

impl Limiters {
    pub fn new(cfg: &RateLimits) -> Limiters {
        Limiters {
            send: RateLimiter::keyed(quota(cfg.send_interval(), cfg.send_burst)),
            auth: RateLimiter::keyed(quota(cfg.auth_interval(), cfg.auth_burst)),
            auth_addr: RateLimiter::keyed(quota(cfg.auth_addr_interval(), cfg.auth_addr_burst)),
            names: Backoff::new(
                cfg.auth_interval(),
                cfg.auth_name_burst,
                Duration::from_millis(cfg.auth_name_max_delay_ms),
            ),
            clock: DefaultClock::default(),
        }
    }

    fn check(&self, limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), ApiError> {
        limiter.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited {
                retry_after_ms: (wait.as_millis() as u64).max(1),
            }
        })
    }

    pub fn check_send(&self, user_id: &str) -> Result<(), ApiError> {
        self.check(&self.send, user_id)
    }

    /// A sign-in attempt for one user name from one client address.
    pub fn check_auth(&self, key: &str) -> Result<(), ApiError> {
        self.check(&self.auth, key)
    }

    /// A sign-up or sign-in attempt from one client address.
    pub fn check_auth_addr(&self, key: &str) -> Result<(), ApiError> {
        self.check(&self.auth_addr, key)
    }

    /// Forgets buckets that are full again, so memory stays bounded by active keys.
    pub fn sweep(&self) {
        self.send.retain_recent();
        self.auth.retain_recent();
        self.auth_addr.retain_recent();
        self.names.sweep();
    }
}

/// Progressive slowdown per key (a user name) driven by failures: a GCRA "theoretical arrival
/// time" that each failure pushes one `interval` further. The first `burst` failures cost
/// nothing; every further one delays the key's next attempts by one `interval` more, up to
/// `max_delay`. Attempts are delayed, never refused, and the state is capped so that the delay
/// is gone within `max_delay + burst × interval` of the last failure.
pub struct Backoff {
    interval: Duration,
    burst: u32,
    max_delay: Duration,
    tat: Mutex<HashMap<String, Instant>>,
}

impl Backoff {
    pub fn new(interval: Duration, burst: u32, max_delay: Duration) -> Backoff {
        Backoff {
            interval,
            burst: burst.max(1),
            max_delay,
            tat: Mutex::new(HashMap::new()),
        }
    }

    fn allowance(&self) -> Duration {
        self.interval.saturating_mul(self.burst)
    }

    /// How long an attempt for `key` should wait now.
    pub fn delay(&self, key: &str) -> Duration {
        let now = Instant::now();
        let map = self
            .tat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(key) {
            Some(tat) => tat
                .saturating_duration_since(now)
                .saturating_sub(self.allowance())
                .min(self.max_delay),
            None => Duration::ZERO,
        }
    }

    /// Records a failure for `key`.
    pub fn fail(&self, key: &str) {
        let now = Instant::now();
        let mut map = self
            .tat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tat = map.entry(key.to_string()).or_insert(now);
        let next = (*tat).max(now) + self.interval;
        *tat = next.min(now + self.allowance() + self.max_delay);
    }

    /// Forgets keys whose failures have all been forgiven.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.tat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, tat| *tat > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits {
            send_per_sec: 1,
            send_burst: 3,
            auth_per_min: 1,
            auth_burst: 1,
            ..RateLimits::default()
        }
    }

    #[test]
    fn burst_then_refuse_with_retry_after() {
        let l = Limiters::new(&limits());
        for _ in 0..3 {
            l.check_send("u").unwrap();
        }
        match l.check_send("u") {
            Err(ApiError::RateLimited { retry_after_ms }) => {
                assert!((1..=1000).contains(&retry_after_ms));
            }
            other => panic!("expected rate limit, got {other:?}"),
        }
        l.check_send("other-user").unwrap();
    }

    #[test]
    fn a_send_interval_allows_rates_below_one_a_second() {
        let l = Limiters::new(&RateLimits {
            send_interval_ms: Some(3_600_000),
            send_burst: 2,
            ..limits()
        });
        l.check_send("u").unwrap();
        l.check_send("u").unwrap();
        match l.check_send("u") {
            Err(ApiError::RateLimited { retry_after_ms }) => {
                assert!(retry_after_ms > 3_500_000, "{retry_after_ms}");
            }
            other => panic!("expected rate limit, got {other:?}"),
        }
    }

    #[test]
    fn name_backoff_grows_with_failures_up_to_the_cap_and_never_refuses() {
        let b = Backoff::new(Duration::from_secs(60), 3, Duration::from_secs(150));
        for _ in 0..3 {
            assert_eq!(b.delay("alice"), Duration::ZERO);
            b.fail("alice");
        }
        // The allowance is spent only now: the fourth failure starts the delay.
        assert_eq!(b.delay("alice"), Duration::ZERO);
        b.fail("alice");
        let d1 = b.delay("alice");
        assert!(
            d1 > Duration::from_secs(55) && d1 <= Duration::from_secs(60),
            "{d1:?}"
        );
        b.fail("alice");
        let d2 = b.delay("alice");
        assert!(
            d2 > Duration::from_secs(115) && d2 <= Duration::from_secs(120),
            "{d2:?}"
        );
        for _ in 0..100 {
            b.fail("alice");
        }
        let capped = b.delay("alice");
        assert!(
            capped > Duration::from_secs(145) && capped <= Duration::from_secs(150),
            "capped: {capped:?}"
        );
        // The state itself is capped: a hundred more failures do not make it last longer.
        let tat = b.tat.lock().unwrap()["alice"];
        assert!(tat <= Instant::now() + Duration::from_secs(3 * 60 + 150));
        assert_eq!(b.delay("bob"), Duration::ZERO, "other names are not slowed");
    }
}
