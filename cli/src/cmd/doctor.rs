//! `fullslack doctor`: runs the stack's checks ([`crate::doctor`]) and prints them; exit 1
//! when one failed.

use std::time::Duration;

use super::checks_result;
use crate::args::DoctorArgs;
use crate::check::Check;
use crate::doctor::DoctorOptions;
use crate::error::CliError;
use crate::output::Reporter;

/// Runs the checks.
pub async fn run(a: &DoctorArgs, r: &Reporter) -> Result<(), CliError> {
    let mut s = crate::stack::load(&a.stack.stack)?;
    // An ec2 stack's hosts come from AWS; when they cannot be found, doctor still runs the
    // checks that need no host and says why the host checks are missing.
    let lookup = crate::hosts::resolve(&mut s).await.err();
    let o = DoctorOptions {
        dns_server: a.dns_server,
        http_port: a.http_port,
        https_port: a.https_port,
        timeout: Duration::from_secs(a.timeout),
        skip: a.skip.clone(),
        ca_file: a.ca_file.clone(),
        cert_min_days: a.cert_min_days,
        ..Default::default()
    };
    let spinner = r.spinner(format!("checking stack {}", s.name));
    let mut report = crate::doctor::run(&s, &o).await;
    spinner.finish_and_clear();
    if let Some(e) = lookup {
        let message = e.to_string();
        let hint = e
            .hint()
            .unwrap_or_else(|| "check the AWS credentials (doctor's aws check)".into());
        report
            .checks
            .insert(0, Check::fail("ec2.hosts", &s.name, message, hint));
        report.ok = false;
    }
    report.print(r);
    if let Some(gh) = crate::actions::detect() {
        gh.summary(&crate::actions::checks_markdown("doctor", &report));
    }
    checks_result(&report)
}
