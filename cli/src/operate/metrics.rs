//! `operate`'s own Prometheus metrics: what it checked, what failed, what it did, and how long
//! ago a round last passed; served as text on `GET /metrics` (axum, already built for the chat
//! server, with only the `http1` and `tokio` features it already has).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The counters, shared by the loop (writer) and the `/metrics` handler (reader).
#[derive(Debug, Default)]
pub struct Metrics {
    rounds: u64,
    checks: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
    actions: BTreeMap<(String, &'static str), u64>,
    last_success: Option<Instant>,
}

/// [`Metrics`] behind the lock both sides take.
pub type Shared = Arc<Mutex<Metrics>>;

/// Runs `f` on the metrics; a panic elsewhere while holding the lock leaves counters that are
/// still worth serving, so a poisoned lock is used as it is.
pub fn with<T>(m: &Shared, f: impl FnOnce(&mut Metrics) -> T) -> T {
    let mut guard = m.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut guard)
}

impl Metrics {
    /// One check ran; `failed` when it found a problem.
    pub fn check(&mut self, name: &str, failed: bool) {
        *self.checks.entry(name.to_string()).or_default() += 1;
        if failed {
            *self.failures.entry(name.to_string()).or_default() += 1;
        }
    }

    /// One action was taken (`ok`: it succeeded).
    pub fn action(&mut self, name: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        *self.actions.entry((name.to_string(), result)).or_default() += 1;
    }

    /// A round ended; `ok` when every check in it passed.
    pub fn round(&mut self, ok: bool, at: Instant) {
        self.rounds += 1;
        if ok {
            self.last_success = Some(at);
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, now: Instant) -> String {
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "fullslack_operate_rounds_total",
            "counter",
            "Rounds of checks run.",
        );
        let _ = writeln!(out, "fullslack_operate_rounds_total {}", self.rounds);
        family(
            &mut out,
            "fullslack_operate_checks_total",
            "counter",
            "Checks run, by check.",
        );
        for (check, n) in &self.checks {
            let _ = writeln!(
                out,
                "fullslack_operate_checks_total{{check=\"{}\"}} {n}",
                label(check)
            );
        }
        family(
            &mut out,
            "fullslack_operate_check_failures_total",
            "counter",
            "Checks that found a problem, by check.",
        );
        for (check, n) in &self.failures {
            let _ = writeln!(
                out,
                "fullslack_operate_check_failures_total{{check=\"{}\"}} {n}",
                label(check)
            );
        }
        family(
            &mut out,
            "fullslack_operate_actions_total",
            "counter",
            "Actions taken (restarts, renewals, drift fixes), by action and result.",
        );
        for ((action, result), n) in &self.actions {
            let _ = writeln!(
                out,
                "fullslack_operate_actions_total{{action=\"{}\",result=\"{result}\"}} {n}",
                label(action)
            );
        }
        family(
            &mut out,
            "fullslack_operate_seconds_since_last_success",
            "gauge",
            "Seconds since the end of the last round in which every check passed (+Inf before the first).",
        );
        let since = self.last_success.map_or_else(
            || "+Inf".to_string(),
            |t| format!("{:.3}", now.saturating_duration_since(t).as_secs_f64()),
        );
        let _ = writeln!(out, "fullslack_operate_seconds_since_last_success {since}");
        out
    }
}

/// A label value escaped as the text format wants (`\`, `"`, line feed).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, m: Shared) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = with(&m, |m| m.render(Instant::now()));
            async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_per_check_and_action_and_the_last_success_ages() {
        let mut m = Metrics::default();
        let start = Instant::now();
        assert!(m
            .render(start)
            .contains("fullslack_operate_seconds_since_last_success +Inf\n"));
        m.check("readyz", false);
        m.check("readyz", true);
        m.check("drift.nginx", true);
        m.action("restart", true);
        m.round(true, start);
        m.round(false, start);
        let text = m.render(start + std::time::Duration::from_millis(1500));
        for line in [
            "fullslack_operate_rounds_total 2\n",
            "fullslack_operate_checks_total{check=\"readyz\"} 2\n",
            "fullslack_operate_check_failures_total{check=\"readyz\"} 1\n",
            "fullslack_operate_check_failures_total{check=\"drift.nginx\"} 1\n",
            "fullslack_operate_actions_total{action=\"restart\",result=\"ok\"} 1\n",
            "fullslack_operate_seconds_since_last_success 1.500\n",
            "# TYPE fullslack_operate_actions_total counter\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in:\n{text}");
        }
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
