//! Check results shared by `health` and `doctor`: what was checked, the outcome, and for a
//! failure the fix.

use serde::Serialize;

use crate::output::{Reporter, Status};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Passed.
    Ok,
    /// Passed, but look at it.
    Warn,
    /// Failed.
    Fail,
    /// Not run (not applicable or skipped).
    Skip,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier (`dns.aaaa`, `ws.round_trip`).
    pub name: String,
    /// What it was about (`chat.example.com`).
    pub subject: String,
    /// Outcome.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
    /// How to fix it (failures and warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Time taken, when it measured something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

impl Check {
    /// A passing check.
    pub fn ok(name: &str, subject: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            subject: subject.into(),
            outcome: Outcome::Ok,
            detail: detail.into(),
            fix: None,
            latency_ms: None,
        }
    }

    /// A failing check with its fix.
    pub fn fail(
        name: &str,
        subject: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            subject: subject.into(),
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
            latency_ms: None,
        }
    }

    /// A warning with its fix.
    pub fn warn(
        name: &str,
        subject: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            outcome: Outcome::Warn,
            ..Self::fail(name, subject, detail, fix)
        }
    }

    /// A skipped check.
    pub fn skip(name: &str, subject: &str, detail: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Skip,
            ..Self::ok(name, subject, detail)
        }
    }

    /// With a measured latency.
    pub fn with_latency(mut self, d: std::time::Duration) -> Self {
        self.latency_ms = Some((d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0);
        self
    }
}

/// A list of checks and whether they all passed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was checked (URL or stack name).
    pub target: String,
    /// True when no check failed.
    pub ok: bool,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Builds a report.
    pub fn new(target: impl Into<String>, checks: Vec<Check>) -> Self {
        let ok = checks.iter().all(|c| c.outcome != Outcome::Fail);
        Self {
            target: target.into(),
            ok,
            checks,
        }
    }

    /// Prints as text or JSON.
    pub fn print(&self, r: &Reporter) {
        if r.json {
            r.print_json(self);
            return;
        }
        println!("{}", self.target);
        for c in &self.checks {
            let tag = r.tag(match c.outcome {
                Outcome::Ok => Status::Ok,
                Outcome::Warn => Status::Warn,
                Outcome::Fail => Status::Fail,
                Outcome::Skip => Status::Skip,
            });
            let latency = c
                .latency_ms
                .map(|ms| format!(" ({ms} ms)"))
                .unwrap_or_default();
            println!(
                "  {tag} {:<16} {}: {}{latency}",
                c.name, c.subject, c.detail
            );
            if let Some(fix) = &c.fix {
                println!("       fix: {fix}");
            }
        }
        println!("{}", self.summary());
    }

    /// One line: "all checks passed" only when every check ran and passed; skipped checks are
    /// named, so a skipped round trip never reads as a pass.
    pub fn summary(&self) -> String {
        let count = |o: Outcome| self.checks.iter().filter(|c| c.outcome == o).count();
        let failed = count(Outcome::Fail);
        let skipped: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Skip)
            .map(|c| c.name.as_str())
            .collect();
        let ran = self.checks.len() - skipped.len();
        let skipped_text = if skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped ({})", skipped.len(), skipped.join(", "))
        };
        match (failed, skipped.is_empty()) {
            (0, true) => "all checks passed".into(),
            (0, false) => format!("{ran} check(s) passed{skipped_text}"),
            _ => format!("{failed} check(s) failed{skipped_text}"),
        }
    }
}
