//! REST setup: register (or log in) the bench users with bounded concurrency, cache their
//! tokens in a users file so later runs skip Argon2id, create channels and add members.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use fullslack_protocol::{
    rest::{Credentials, ErrorBody, InviteBody, NewChannelBody, TokenResponse},
    Channel, ChannelId, ChannelKind, UserId,
};
use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

pub const PASSWORD: &str = "bench-password-0001";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub id: UserId,
    pub token: String,
    /// Unix seconds at which the token expires.
    pub expires: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    users: BTreeMap<String, User>,
}

pub struct Rest {
    pub http: reqwest::Client,
    pub base: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time (`Z` or `+00:00`; fraction ignored).
pub fn parse_rfc3339_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b't' && b[10] != b' ')
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, se) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let tail = s[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if !(tail == "Z" || tail == "z" || tail == "+00:00") {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + h * 3600 + mi * 60 + se).ok()
}

async fn error_text(r: reqwest::Response) -> String {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    format!("{status}: {}", body.chars().take(300).collect::<String>())
}

/// How long a 429 asks us to wait (Retry-After seconds or retry_after_ms in the body).
async fn retry_after(r: reqwest::Response) -> Duration {
    let hdr = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let body: Option<ErrorBody> = r.json().await.ok();
    let ms = body
        .and_then(|b| b.error.retry_after_ms)
        .map(Duration::from_millis);
    ms.or(hdr)
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(50))
}

impl Rest {
    pub fn new(base: &str) -> Result<Rest> {
        let http = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Rest {
            http,
            base: base.to_string(),
        })
    }

    async fn auth(&self, path: &str, username: &str) -> Result<(StatusCode, Option<User>, String)> {
        for _ in 0..50 {
            let r = self
                .http
                .post(format!("{}{path}", self.base))
                .json(&Credentials {
                    username: username.into(),
                    password: PASSWORD.into(),
                    display_name: None,
                })
                .send()
                .await?;
            let status = r.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                tokio::time::sleep(retry_after(r).await).await;
                continue;
            }
            if status.is_success() {
                let a: TokenResponse = r.json().await.context("auth answer")?;
                let expires = parse_rfc3339_utc(&a.expires_at).unwrap_or(unix_now() + 3000);
                let u = User {
                    username: username.into(),
                    id: a.user.id,
                    token: a.token,
                    expires,
                };
                return Ok((status, Some(u), String::new()));
            }
            return Ok((status, None, error_text(r).await));
        }
        bail!("{path} for {username}: still rate limited after 50 tries")
    }

    /// Register `username`, or log in if it exists.
    async fn register_or_login(&self, username: &str) -> Result<User> {
        let (status, user, err) = self.auth("/api/auth/register", username).await?;
        if let Some(u) = user {
            return Ok(u);
        }
        if status != StatusCode::CONFLICT {
            bail!("register {username}: {err}");
        }
        let (_, user, err) = self.auth("/api/auth/login", username).await?;
        user.ok_or_else(|| anyhow!("login {username}: {err}"))
    }

    async fn token_works(&self, token: &str) -> bool {
        match self
            .http
            .get(format!("{}/api/me", self.base))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// `count` users named PREFIX-000000…; cached tokens are reused while they have at least
    /// `min_validity` left and the first one still answers `/api/me`.
    pub async fn ensure_users(
        &self,
        prefix: &str,
        count: usize,
        file: &Path,
        concurrency: usize,
        min_validity: Duration,
    ) -> Result<(Vec<User>, usize)> {
        let mut cache: UsersFile = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:06}")).collect();
        let deadline = unix_now() + min_validity.as_secs();
        if let Some(first) = names.first().and_then(|n| cache.users.get(n)) {
            if !self.token_works(&first.token).await {
                cache.users.clear(); // other server, new secret, or revoked: log in again
            }
        }
        let missing: Vec<String> = names
            .iter()
            .filter(|n| cache.users.get(*n).is_none_or(|u| u.expires < deadline))
            .cloned()
            .collect();
        let fresh = missing.len();
        if fresh > 0 {
            eprintln!(
                "setup: registering/logging in {fresh} of {count} users ({concurrency} at a time; Argon2id on the server)..."
            );
            let done = AtomicUsize::new(0);
            let results: Vec<Result<User>> = stream::iter(missing.iter())
                .map(|n| {
                    let done = &done;
                    async move {
                        let r = self.register_or_login(n).await;
                        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if d.is_multiple_of(1000) {
                            eprintln!("setup: {d}/{fresh} users");
                        }
                        r
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
            let mut first_err = None;
            for r in results {
                match r {
                    Ok(u) => {
                        cache.users.insert(u.username.clone(), u);
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(parent) = file.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            std::fs::write(file, serde_json::to_vec(&cache)?)
                .with_context(|| format!("writing {}", file.display()))?;
            if let Some(e) = first_err {
                return Err(e.context("user setup failed"));
            }
        }
        let users = names.iter().map(|n| cache.users[n].clone()).collect();
        Ok((users, fresh))
    }

    /// Create public channel `name` owned by `owner` with `members` (user ids, owner excluded),
    /// then add whoever the create call did not (invite, else join with the member's token).
    pub async fn create_channel(
        &self,
        name: &str,
        owner: &User,
        members: &[&User],
        concurrency: usize,
    ) -> Result<ChannelId> {
        let mut chunk = members.len();
        let ch: Channel = loop {
            let ids: Vec<UserId> = members[..chunk].iter().map(|u| u.id.clone()).collect();
            let r = self
                .http
                .post(format!("{}/api/channels", self.base))
                .bearer_auth(&owner.token)
                .json(&NewChannelBody {
                    name: name.into(),
                    kind: ChannelKind::Public,
                    topic: String::new(),
                    member_ids: ids,
                })
                .send()
                .await?;
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE && chunk > 0 {
                chunk /= 2;
                continue;
            }
            if !r.status().is_success() {
                bail!("create channel {name}: {}", error_text(r).await);
            }
            break r.json().await.context("channel answer")?;
        };
        let have: HashSet<&str> = ch.member_ids.iter().map(UserId::as_str).collect();
        let missing: Vec<&User> = members
            .iter()
            .copied()
            .filter(|u| !have.contains(u.id.as_str()))
            .collect();
        if !missing.is_empty() {
            eprintln!(
                "setup: channel {name}: adding {} more members one by one",
                missing.len()
            );
        }
        let id = ch.id.clone();
        let results: Vec<Result<()>> = stream::iter(missing)
            .map(|u| self.add_member(&id, owner, u))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(ch.id)
    }

    async fn add_member(&self, channel: &str, owner: &User, u: &User) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/api/channels/{channel}/members", self.base))
            .bearer_auth(&owner.token)
            .json(&InviteBody {
                user_id: u.id.clone(),
            })
            .send()
            .await?;
        if r.status().is_success() {
            return Ok(());
        }
        let r = self
            .http
            .post(format!("{}/api/channels/{channel}/join", self.base))
            .bearer_auth(&u.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("join {channel} as {}: {}", u.username, error_text(r).await);
        }
        Ok(())
    }
}

/// Default users file for a target: beside the spawned server's data dir, else per host:port.
pub fn default_users_file(spawned: bool, data_dir: &Path, base: &str) -> PathBuf {
    if spawned {
        data_dir.with_extension("users.json")
    } else {
        let tag: String = base
            .trim_start_matches("http://")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        PathBuf::from(format!("/tmp/fullslack-bench-users-{tag}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2000-03-01T00:00:01.123456Z"),
            Some(951_868_801)
        );
        assert_eq!(
            parse_rfc3339_utc("2026-11-23T11:00:00+00:00"),
            Some(1_795_431_600)
        );
        assert_eq!(parse_rfc3339_utc("2026-11-23T11:00:00+02:00"), None);
        assert_eq!(parse_rfc3339_utc("soon"), None);
    }
}
