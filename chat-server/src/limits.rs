//! Rate-limit policy of the node: sends per user, sign-ins and sign-ups per client address and
//! (address, name), the per-name sign-in backoff. With Redis each check is one atomic script
//! shared by every node ([`crate::cluster`]); alone, or while Redis is unreachable, this node's
//! own buckets ([`crate::ratelimit`]) answer.

use std::time::Duration;

use crate::{
    error::{ApiError, ApiResult},
    App,
};

impl App {
    /// Send-rate check: shared across nodes through Redis, local while it is unreachable.
    pub async fn limit_send(&self, user_id: &str) -> ApiResult<()> {
        let rl = &self.settings.rate_limit;
        let interval = rl.send_interval().as_secs_f64() * 1000.0;
        self.limit(&format!("send:{user_id}"), interval, rl.send_burst, |l| {
            l.check_send(user_id)
        })
        .await
    }

    /// Sign-up and sign-in attempts per client address (its [`crate::proxy::limit_key`]),
    /// shared like [`App::limit_send`].
    pub async fn limit_auth_addr(&self, client: &str) -> ApiResult<()> {
        let rl = &self.settings.rate_limit;
        let interval = rl.auth_addr_interval().as_secs_f64() * 1000.0;
        self.limit(
            &format!("auth:addr:{client}"),
            interval,
            rl.auth_addr_burst,
            |l| l.check_auth_addr(client),
        )
        .await
    }

    /// Sign-in attempts per (client address, user name), shared like [`App::limit_send`].
    pub async fn limit_auth_login(&self, client: &str, name: &str) -> ApiResult<()> {
        let rl = &self.settings.rate_limit;
        let interval = rl.auth_interval().as_secs_f64() * 1000.0;
        let key = format!("{client} {name}");
        self.limit(&format!("auth:login:{key}"), interval, rl.auth_burst, |l| {
            l.check_auth(&key)
        })
        .await
    }

    /// How long a sign-in for `name` is held back because of its recent failures from any
    /// address (zero within the allowance, at most `auth_name_max_delay_ms`).
    pub async fn auth_name_delay(&self, name: &str) -> Duration {
        let rl = &self.settings.rate_limit;
        if let Some(c) = &self.cluster {
            if let Some(ms) = c
                .backoff(
                    &format!("auth:name:{name}"),
                    rl.auth_interval().as_secs_f64() * 1000.0,
                    rl.auth_name_burst,
                    rl.auth_name_max_delay_ms,
                    false,
                )
                .await
            {
                return Duration::from_millis(ms);
            }
        }
        self.limiters.names.delay(name)
    }

    /// Counts a failed sign-in against `name`.
    pub async fn auth_name_failed(&self, name: &str) {
        let rl = &self.settings.rate_limit;
        if let Some(c) = &self.cluster {
            let recorded = c
                .backoff(
                    &format!("auth:name:{name}"),
                    rl.auth_interval().as_secs_f64() * 1000.0,
                    rl.auth_name_burst,
                    rl.auth_name_max_delay_ms,
                    true,
                )
                .await;
            if recorded.is_some() {
                return;
            }
        }
        self.limiters.names.fail(name);
    }

    async fn limit(
        &self,
        key: &str,
        interval_ms: f64,
        burst: u32,
        local: impl FnOnce(&crate::ratelimit::Limiters) -> ApiResult<()>,
    ) -> ApiResult<()> {
        if let Some(c) = &self.cluster {
            match c.rate_check(key, interval_ms, burst).await {
                Some(0) => return Ok(()),
                Some(wait) => {
                    return Err(ApiError::RateLimited {
                        retry_after_ms: wait,
                    })
                }
                None => {}
            }
        }
        local(&self.limiters)
    }
}
