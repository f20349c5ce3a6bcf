//! Per-key token buckets (the `governor` crate): sends per user, auth attempts per client
//! address and per user name. A refusal says how long to wait.

use std::num::NonZeroU32;

use governor::{clock::Clock, clock::DefaultClock, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{config::RateLimits, error::ApiError};

pub struct Limiters {
    send: DefaultKeyedRateLimiter<String>,
    auth: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Limiters {
    pub fn new(cfg: &RateLimits) -> Limiters {
        Limiters {
            send: RateLimiter::keyed(
                Quota::per_second(nz(cfg.send_per_sec)).allow_burst(nz(cfg.send_burst)),
            ),
            auth: RateLimiter::keyed(
                Quota::per_minute(nz(cfg.auth_per_min)).allow_burst(nz(cfg.auth_burst)),
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

    pub fn check_auth(&self, key: &str) -> Result<(), ApiError> {
        self.check(&self.auth, key)
    }

    /// Forgets buckets that are full again, so memory stays bounded by active keys.
    pub fn sweep(&self) {
        self.send.retain_recent();
        self.auth.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_with_retry_after() {
        let l = Limiters::new(&RateLimits {
            send_per_sec: 1,
            send_burst: 3,
            auth_per_min: 1,
            auth_burst: 1,
        });
        for _ in 0..3 {
            l.check_send("u").unwrap();
        }
        match l.check_send("u") {
            Err(ApiError::RateLimited { retry_after_ms }) => {
                assert!((1..=1000).contains(&retry_after_ms))
            }
            other => panic!("expected rate limit, got {other:?}"),
        }
        l.check_send("other-user").unwrap();
    }
}
