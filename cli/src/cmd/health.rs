//! `fullslack health [URL]`: probes a running server (the URL, or the stack's first domain)
//! and prints the checks; exit 1 when one failed.

use std::time::Duration;

use super::{checks_result, usage};
use crate::args::HealthArgs;
use crate::error::CliError;
use crate::health::HealthOptions;
use crate::output::Reporter;
use crate::stack::Stack;

/// Runs the probes.
pub async fn run(a: &HealthArgs, r: &Reporter) -> Result<(), CliError> {
    let stack = a.stack.load()?;
    let url = probe_url(a, stack.as_ref())?;
    let from_env = crate::secret::from_env;
    let o = HealthOptions {
        url,
        probe_user: a.probe_user.clone(),
        probe_password: from_env(&a.probe_password_env),
        probe_token: from_env(&a.probe_token_env),
        register_probe: a.register_probe,
        timeout: Duration::from_secs(a.timeout),
        ca_file: a.ca_file.clone(),
        websocket: !a.no_websocket && stack.as_ref().is_none_or(|s| s.health.websocket),
        cert_min_days: a.cert_min_days,
    };
    let spinner = r.spinner(format!("probing {}", o.url));
    let report = crate::health::run(&o).await;
    spinner.finish_and_clear();
    report.print(r);
    if let Some(gh) = crate::actions::detect() {
        gh.summary(&crate::actions::checks_markdown("health", &report));
    }
    checks_result(&report)
}

/// The URL given, else the stack's first domain with the scheme its TLS setting implies.
fn probe_url(a: &HealthArgs, stack: Option<&Stack>) -> Result<reqwest::Url, CliError> {
    let url = match (&a.url, stack) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => {
            let scheme = if s.tls.enabled { "https" } else { "http" };
            format!(
                "{scheme}://{}",
                s.domains.first().map(String::as_str).unwrap_or("")
            )
        }
        (None, None) => {
            return Err(usage(
                "no URL to probe",
                "pass a URL (fullslack health https://chat.example.com) or --stack FILE",
            ))
        }
    };
    reqwest::Url::parse(&url).map_err(|e| {
        usage(
            format!("`{url}` is not a URL: {e}"),
            "write it with its scheme, e.g. https://chat.example.com",
        )
    })
}
