//! When a certificate is due, and the local order log that keeps `fullslack` itself under
//! Let's Encrypt's published rate limits (<https://letsencrypt.org/docs/rate-limits/>): the
//! CA's own counters are the authority, this log only stops the tool from being the one that
//! hits them (a renewal loop that fails every minute, a second issue nobody needed).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::inspect::{sorted_names, CertSummary};

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
/// One day in seconds.
pub const DAY: i64 = 24 * HOUR;

/// Where a renewal window comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowSource {
    /// `tls.renew_days_before` in the stack file.
    Configured,
    /// The CA's renewal information (ARI, RFC 9773).
    Ari,
    /// No ARI: the last third of the certificate's lifetime.
    ThirdOfLifetime,
}

/// When to renew: from `start` (the next renewal is due then) to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Start (Unix seconds).
    pub start: i64,
    /// End (Unix seconds).
    pub end: i64,
    /// Where it comes from.
    pub source: WindowSource,
}

impl Window {
    /// Whether a renewal is due at `now`.
    pub fn due(&self, now: i64) -> bool {
        now >= self.start
    }
}

/// The renewal window of `cert`: the configured number of days before expiry wins, then the
/// CA's ARI window, then the last third of the lifetime.
pub fn window(
    cert: &CertSummary,
    ari: Option<(i64, i64)>,
    renew_days_before: Option<u32>,
) -> Window {
    if let Some(days) = renew_days_before {
        return Window {
            start: cert.not_after - i64::from(days) * DAY,
            end: cert.not_after,
            source: WindowSource::Configured,
        };
    }
    if let Some((start, end)) = ari {
        return Window {
            start,
            end,
            source: WindowSource::Ari,
        };
    }
    Window {
        start: cert.not_after - cert.lifetime() / 3,
        end: cert.not_after,
        source: WindowSource::ThirdOfLifetime,
    }
}

/// How an order ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderOutcome {
    /// A certificate was issued.
    Issued,
    /// Validation (or the order) failed.
    Failed,
}

/// One order, as the log keeps it (JSON lines, nothing secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// When (Unix seconds).
    pub at: i64,
    /// ACME directory URL.
    pub directory: String,
    /// Names ordered, sorted.
    pub names: Vec<String>,
    /// Issued or failed.
    pub outcome: OrderOutcome,
    /// Serial of the issued certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// ACME problem type of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A limit the next order would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    /// Which limit, in words.
    pub limit: String,
    /// When the next order is allowed (Unix seconds).
    pub clears_at: i64,
}

/// Let's Encrypt: 5 certificates for the exact same set of names per 7 days.
pub const DUPLICATES: (usize, i64) = (5, 7 * DAY);
/// Let's Encrypt: 5 failed validations per name (and account) per hour.
pub const FAILED_VALIDATIONS: (usize, i64) = (5, HOUR);
/// Let's Encrypt: 300 new orders per account per 3 hours.
pub const NEW_ORDERS: (usize, i64) = (300, 3 * HOUR);
/// Backoff after consecutive failures: the second waits this long, each next one twice as
/// long, up to an hour.
pub const BACKOFF_START: i64 = MINUTE;

/// The local order log: one JSON line per order, per stack, beside the stack file.
#[derive(Debug, Clone)]
pub struct OrderLog {
    path: PathBuf,
    /// Every order recorded, oldest first.
    pub records: Vec<OrderRecord>,
}

impl OrderLog {
    /// Reads the log (a missing file is an empty log; lines that do not parse are skipped).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let records = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            records,
        })
    }

    /// Appends one order (one `write` of one line).
    pub fn append(&mut self, rec: OrderRecord) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut line = serde_json::to_string(&rec).map_err(std::io::Error::other)?;
        line.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(line.as_bytes())?;
        self.records.push(rec);
        Ok(())
    }

    /// Whether this tool issued the certificate with `serial` from `directory`.
    pub fn issued_here(&self, directory: &str, serial: &str) -> bool {
        self.records.iter().any(|r| {
            r.outcome == OrderOutcome::Issued
                && r.directory == directory
                && r.serial.as_deref() == Some(serial)
        })
    }

    /// The first limit a new order for `names` at `now` would exceed, if any.
    pub fn check(&self, directory: &str, names: &[String], now: i64) -> Option<LimitHit> {
        let names = sorted_names(names);
        let here: Vec<&OrderRecord> = self
            .records
            .iter()
            .filter(|r| r.directory == directory)
            .collect();
        let same = |r: &&&OrderRecord| r.names == names;
        let issued_same = here
            .iter()
            .filter(|r| r.outcome == OrderOutcome::Issued)
            .filter(same);
        if let Some(t) = count_limit(issued_same.map(|r| r.at), DUPLICATES, now) {
            return Some(LimitHit {
                limit: "duplicate certificates: at most 5 for the same set of names per 7 days"
                    .into(),
                clears_at: t,
            });
        }
        for name in &names {
            let failed = here
                .iter()
                .filter(|r| r.outcome == OrderOutcome::Failed && r.names.contains(name))
                .map(|r| r.at);
            if let Some(t) = count_limit(failed, FAILED_VALIDATIONS, now) {
                return Some(LimitHit {
                    limit: format!("failed validations: at most 5 for {name} per hour"),
                    clears_at: t,
                });
            }
        }
        if let Some(t) = count_limit(here.iter().map(|r| r.at), NEW_ORDERS, now) {
            return Some(LimitHit {
                limit: "new orders: at most 300 per account per 3 hours".into(),
                clears_at: t,
            });
        }
        self.backoff(&here, &names, now)
    }

    /// After n ≥ 2 consecutive failures for these names, wait 1, 2, 4 … (up to 60) minutes
    /// after the last one.
    fn backoff(&self, here: &[&OrderRecord], names: &[String], now: i64) -> Option<LimitHit> {
        let mut streak = 0u32;
        let mut last = 0;
        for r in here.iter().rev().filter(|r| r.names == names) {
            if r.outcome != OrderOutcome::Failed {
                break;
            }
            if streak == 0 {
                last = r.at;
            }
            streak += 1;
        }
        if streak < 2 {
            return None;
        }
        let wait = (BACKOFF_START << (streak - 2).min(6)).min(HOUR);
        (now < last + wait).then(|| LimitHit {
            limit: format!("backoff after {streak} failed validations in a row: {} minute(s) before the next try", wait / MINUTE),
            clears_at: last + wait,
        })
    }
}

/// With `max` events allowed per `period`: when the next one is allowed, if not now.
fn count_limit(
    times: impl Iterator<Item = i64>,
    (max, period): (usize, i64),
    now: i64,
) -> Option<i64> {
    let mut recent: Vec<i64> = times.filter(|t| *t > now - period).collect();
    if recent.len() < max {
        return None;
    }
    recent.sort_unstable();
    Some(recent[recent.len() - max] + period)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "https://acme.test/dir";

    fn rec(at: i64, outcome: OrderOutcome) -> OrderRecord {
        OrderRecord {
            at,
            directory: DIR.into(),
            names: vec!["a.example.com".into()],
            outcome,
            serial: None,
            problem: None,
        }
    }

    fn log(records: Vec<OrderRecord>) -> OrderLog {
        OrderLog {
            path: PathBuf::from("/nonexistent"),
            records,
        }
    }

    #[test]
    fn the_sixth_duplicate_in_a_week_waits_for_the_oldest_to_age_out() {
        let now = 100 * DAY;
        let names = vec!["a.example.com".to_string()];
        let five: Vec<_> = (0..5)
            .map(|i| rec(now - 6 * DAY + i * HOUR, OrderOutcome::Issued))
            .collect();
        let hit = log(five.clone()).check(DIR, &names, now).expect("limit");
        assert!(hit.limit.contains("duplicate"), "{hit:?}");
        assert_eq!(hit.clears_at, now - 6 * DAY + 7 * DAY);
        // Another directory (staging vs production) counts apart; four are fine.
        assert_eq!(
            log(five.clone()).check("https://other/dir", &names, now),
            None
        );
        assert_eq!(log(five[1..].to_vec()).check(DIR, &names, now), None);
    }

    #[test]
    fn failures_back_off_then_hit_the_hourly_limit() {
        let now = 10 * DAY;
        let names = vec!["a.example.com".to_string()];
        // One failure: retry at once (the fix may be done).
        assert_eq!(
            log(vec![rec(now - 5, OrderOutcome::Failed)]).check(DIR, &names, now),
            None
        );
        // Two in a row: a minute after the last.
        let two = log(vec![
            rec(now - 50, OrderOutcome::Failed),
            rec(now - 5, OrderOutcome::Failed),
        ]);
        let hit = two.check(DIR, &names, now).expect("backoff");
        assert!(hit.limit.contains("backoff after 2"), "{hit:?}");
        assert_eq!(hit.clears_at, now - 5 + MINUTE);
        // A success in between resets the streak.
        let reset = log(vec![
            rec(now - 50, OrderOutcome::Failed),
            rec(now - 40, OrderOutcome::Issued),
            rec(now - 5, OrderOutcome::Failed),
        ]);
        assert_eq!(reset.check(DIR, &names, now), None);
        // Five in the hour: the CA's limit, whatever the backoff says.
        let five = log((0..5)
            .map(|i| rec(now - 3000 + i * 600, OrderOutcome::Failed))
            .collect());
        let hit = five.check(DIR, &names, now).expect("limit");
        assert!(hit.limit.contains("failed validations"), "{hit:?}");
        assert_eq!(hit.clears_at, now - 3000 + HOUR);
    }

    #[test]
    fn windows_prefer_configuration_then_ari_then_a_third() {
        let cert = CertSummary {
            names: vec![],
            issuer: String::new(),
            serial: String::new(),
            not_before: 0,
            not_after: 90 * DAY,
            chain_len: 1,
            ari_id: None,
        };
        let w = window(&cert, None, None);
        assert_eq!(
            (w.start, w.source),
            (60 * DAY, WindowSource::ThirdOfLifetime)
        );
        assert!(!w.due(59 * DAY) && w.due(60 * DAY));
        let w = window(&cert, Some((10, 20)), None);
        assert_eq!((w.start, w.end, w.source), (10, 20, WindowSource::Ari));
        let w = window(&cert, Some((10, 20)), Some(30));
        assert_eq!((w.start, w.source), (60 * DAY, WindowSource::Configured));
    }
}
