//! The host's release log and audit entries.
//!
//! `releases.json` on the host says which release is live (and on which colour) and which
//! earlier ones are kept for rollback, newest first. It lives on the host, not on the laptop,
//! so that any operator (or CI) deploying next sees the same truth. Writes go through
//! [`crate::commands::files::write`] (atomic rename): a deploy cut off mid-write leaves the
//! previous log.

use serde::{Deserialize, Serialize};

use crate::nginx::Color;

/// One release that ran on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Version (the image tag).
    pub version: String,
    /// Image reference the container ran.
    pub image: String,
    /// Image id on the host (`sha256:…`).
    pub image_id: String,
    /// Colour it was started on.
    pub color: Color,
    /// When it went live (RFC 3339, UTC).
    pub deployed_at: String,
}

/// The host's releases: the live one first, then older ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseLog {
    /// Newest first; the first is live when `live` is true.
    pub releases: Vec<Release>,
    /// Whether the first release serves traffic.
    pub live: bool,
}

impl ReleaseLog {
    /// Parses the file's text; an empty text (no file yet) is an empty log.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(text).map_err(|e| format!("the release log is not valid: {e}"))
    }

    /// The live release.
    pub fn live(&self) -> Option<&Release> {
        self.releases.first().filter(|_| self.live)
    }

    /// Records `r` as live; keeps the newest `keep` releases (at least the live one). Returns
    /// the releases dropped, whose images may be removed unless a kept release uses them.
    pub fn went_live(&mut self, r: Release, keep: usize) -> Vec<Release> {
        self.releases.retain(|o| o.version != r.version);
        self.releases.insert(0, r);
        self.live = true;
        let keep = keep.max(1);
        if self.releases.len() > keep {
            self.releases.split_off(keep)
        } else {
            Vec::new()
        }
    }

    /// A kept release by version, or the one before the live one.
    pub fn rollback_target(&self, version: Option<&str>) -> Option<&Release> {
        match version {
            Some(v) => self.releases.iter().find(|r| r.version == v),
            None => self.releases.get(usize::from(self.live)),
        }
    }

    /// The text written to the host.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// One audit line: who did what, from which version, with which result. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it ended (RFC 3339, UTC).
    pub at: String,
    /// `user@machine`.
    pub who: String,
    /// `deploy` or `rollback`.
    pub action: String,
    /// Stack.
    pub stack: String,
    /// Host label.
    pub host: String,
    /// Version switched to.
    pub version: String,
    /// Version live before (none on a first deploy).
    pub from_version: Option<String>,
    /// `ok` or `failed`.
    pub result: String,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// Image bytes sent over the connection (0 when the host had the image).
    pub bytes_sent: u64,
}

impl AuditEntry {
    /// One JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default() + "\n"
    }
}

/// Now, RFC 3339 UTC.
pub fn now() -> String {
    crate::image::tag::rfc3339(time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(v: &str, c: Color) -> Release {
        Release {
            version: v.into(),
            image: format!("chat:{v}"),
            image_id: format!("sha256:{v}"),
            color: c,
            deployed_at: "2026-11-30T00:00:00Z".into(),
        }
    }

    #[test]
    fn releases_keep_the_newest_and_name_the_rollback_target() {
        let mut log = ReleaseLog::parse("").expect("empty");
        assert_eq!(log.live(), None);
        assert!(log.went_live(rel("v1", Color::Blue), 2).is_empty());
        assert!(log.went_live(rel("v2", Color::Green), 2).is_empty());
        let dropped = log.went_live(rel("v3", Color::Blue), 2);
        assert_eq!(dropped, vec![rel("v1", Color::Blue)]);
        assert_eq!(log.live().map(|r| r.version.as_str()), Some("v3"));
        assert_eq!(
            log.rollback_target(None).map(|r| r.version.as_str()),
            Some("v2")
        );
        assert_eq!(log.rollback_target(Some("v1")), None);
        // Redeploying a kept version moves it to the front instead of listing it twice.
        log.went_live(rel("v2", Color::Green), 2);
        let versions: Vec<&str> = log.releases.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["v2", "v3"]);
        let text = log.to_text();
        assert_eq!(ReleaseLog::parse(&text).expect("round trip"), log);
        assert!(ReleaseLog::parse("{").is_err());
    }
}
