//! GitHub Actions, as CI sees the CLI. When a command runs in Actions (`GITHUB_ACTIONS=true`):
//! - a Markdown summary of what it did is appended to the file `$GITHUB_STEP_SUMMARY` names
//!   (the plan's table, the hosts of a deploy, the failed checks with their fixes);
//! - errors in a stack file become `::error file=…,line=…,col=…::` workflow commands, which
//!   GitHub shows as annotations at that key of the file in the run and the pull request;
//! - long steps are folded with `::group::` / `::endgroup::`.
//!
//! Workflow commands go to stderr (the runner reads commands from both streams), so stdout
//! stays exactly the same everywhere and `--json` output is unchanged. Outside Actions
//! [`detect`] returns `None` and nothing of this is written.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::check::{Outcome, Report};
use crate::error::CliError;
use crate::stack::{Diagnostic, StackError};

/// Running inside GitHub Actions: where the step summary goes.
#[derive(Debug, Clone)]
pub struct Actions {
    /// `$GITHUB_STEP_SUMMARY`, when the runner set it.
    summary: Option<PathBuf>,
}

/// The process's Actions environment, or `None` outside Actions.
pub fn detect() -> Option<Actions> {
    from_env(|k| std::env::var(k).ok())
}

/// [`detect`] over any environment (`GITHUB_ACTIONS` must be exactly `true`, as the runner
/// sets it; an empty `GITHUB_STEP_SUMMARY` means no summary file).
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Actions> {
    if get("GITHUB_ACTIONS").as_deref() != Some("true") {
        return None;
    }
    let summary = get("GITHUB_STEP_SUMMARY")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    Some(Actions { summary })
}

impl Actions {
    /// Appends Markdown to the step summary (GitHub renders every step's file after the job).
    /// A summary that cannot be written is a warning: it never fails the command.
    pub fn summary(&self, markdown: &str) {
        let Some(path) = &self.summary else { return };
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(markdown.as_bytes()));
        if let Err(e) = appended {
            eprintln!(
                "warning: cannot write the step summary {}: {e}",
                path.display()
            );
        }
    }

    /// Annotations for an error: one `::error` per stack-file diagnostic, at its line and
    /// column; other errors as one `::error` with the hint. Also summarised.
    pub fn report_error(&self, e: &CliError) {
        if let CliError::Stack(StackError::Invalid { path, diagnostics }) = e {
            for d in diagnostics {
                eprintln!("{}", stack_annotation(path, d));
            }
            self.summary(&stack_errors_markdown(path, diagnostics));
            return;
        }
        let mut message = e.to_string();
        if let Some(hint) = e.hint() {
            let _ = write!(message, "\nfix: {hint}");
        }
        eprintln!("{}", command("error", &[], &message));
    }
}

/// Folds what a long step prints under a title in the Actions log, until dropped. Outside
/// Actions it prints nothing.
#[must_use = "the group ends when this is dropped"]
pub struct Group {
    open: bool,
}

impl Group {
    /// Starts a group named `title` when running in Actions.
    pub fn start(title: &str) -> Self {
        let open = detect().is_some();
        if open {
            eprintln!("{}", command("group", &[], title));
        }
        Group { open }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.open {
            eprintln!("::endgroup::");
        }
    }
}

/// `::error file=…,line=…,col=…,title=…::message` for one stack-file diagnostic.
pub fn stack_annotation(path: &Path, d: &Diagnostic) -> String {
    let file = path.display().to_string();
    let line = d.line.to_string();
    let col = d.column.to_string();
    let title = if d.key.is_empty() {
        "stack file".to_string()
    } else {
        format!("stack file: {}", d.key)
    };
    let message = format!("{}\nfix: {}", d.message, d.hint);
    command(
        "error",
        &[
            ("file", &file),
            ("line", &line),
            ("col", &col),
            ("title", &title),
        ],
        &message,
    )
}

/// One workflow command line: `::name key=value,…::message`, escaped as the runner expects
/// (`%`, CR and LF everywhere; `:` and `,` in property values too), so a message can never end
/// the command early or inject another one.
pub fn command(name: &str, props: &[(&str, &str)], message: &str) -> String {
    let mut out = format!("::{name}");
    for (i, (k, v)) in props.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        let _ = write!(out, "{k}={}", escape_property(v));
    }
    let _ = write!(out, "::{}", escape_data(message));
    out
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// A Markdown table cell: pipes escaped, line breaks as `<br>`.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

/// The summary of a stack file that does not validate.
pub fn stack_errors_markdown(path: &Path, diags: &[Diagnostic]) -> String {
    let mut md = format!(
        "### Stack file `{}`: {} problem(s)\n\n| where | key | problem | fix |\n| --- | --- | --- | --- |\n",
        path.display(),
        diags.len()
    );
    for d in diags {
        let _ = writeln!(
            md,
            "| {}:{} | `{}` | {} | {} |",
            d.line,
            d.column,
            cell(&d.key),
            cell(&d.message),
            cell(&d.hint)
        );
    }
    md.push('\n');
    md
}

/// The summary of `health` or `doctor`: a line of totals, the failures and warnings with their
/// fixes first (what the reader needs), then every check.
pub fn checks_markdown(title: &str, report: &Report) -> String {
    let mark = if report.ok { "✅" } else { "❌" };
    let mut md = format!(
        "### {mark} {title} `{}`: {}\n\n",
        cell(&report.target),
        report.summary()
    );
    let problems: Vec<_> = report
        .checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Fail | Outcome::Warn))
        .collect();
    if !problems.is_empty() {
        md.push_str("| | check | subject | found | fix |\n| --- | --- | --- | --- | --- |\n");
        for c in problems {
            let _ = writeln!(
                md,
                "| {} | `{}` | {} | {} | {} |",
                outcome_mark(c.outcome),
                c.name,
                cell(&c.subject),
                cell(&c.detail),
                cell(c.fix.as_deref().unwrap_or(""))
            );
        }
        md.push('\n');
    }
    md.push_str("<details><summary>every check</summary>\n\n| | check | subject | found |\n| --- | --- | --- | --- |\n");
    for c in &report.checks {
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {} |",
            outcome_mark(c.outcome),
            c.name,
            cell(&c.subject),
            cell(&c.detail)
        );
    }
    md.push_str("\n</details>\n\n");
    md
}

fn outcome_mark(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Warn => "warn",
        Outcome::Fail => "**FAIL**",
        Outcome::Skip => "skip",
    }
}

/// The summary of a plan: totals, one row per change (action, resource, what differs and
/// why a replacement is forced), notes and the monthly cost estimate.
pub fn plan_markdown(plan: &fullslack_aws::Plan) -> String {
    use fullslack_aws::Action;
    let (c, u, r, d) = plan.counts();
    let verb = if plan.destroy { "Destroy plan" } else { "Plan" };
    let mut md = format!(
        "### {verb} for stack `{}` ({}, {})\n\n{c} to create, {u} to update, {r} to replace, {d} to delete, {} unchanged.\n\n",
        plan.stack,
        plan.target,
        plan.region,
        plan.unchanged.len()
    );
    if plan.changes.is_empty() {
        md.push_str("No changes: AWS matches the stack.\n\n");
    } else {
        md.push_str("| action | resource | what changes |\n| --- | --- | --- |\n");
        for ch in &plan.changes {
            let action = match ch.action {
                Action::Create => "create",
                Action::Update => "update in place",
                Action::Replace => "**replace**",
                Action::Delete => "**delete**",
            };
            let mut what: Vec<String> = ch
                .changed
                .iter()
                .map(|k| match ch.forces.get(k) {
                    Some(why) => format!("`{k}` (forces replacement: {why})"),
                    None => format!("`{k}`"),
                })
                .collect();
            if what.is_empty() && ch.action == Action::Create {
                what.push("new".into());
            }
            let _ = writeln!(
                md,
                "| {action} | `{}` | {} |",
                cell(&ch.resource().label()),
                cell(&what.join(", "))
            );
        }
        md.push('\n');
    }
    for n in &plan.notes {
        let _ = writeln!(md, "> {}\n", cell(n));
    }
    let _ = writeln!(
        md,
        "<details><summary>cost estimate</summary>\n\n```\n{}```\n\n</details>\n",
        plan.cost.render()
    );
    md
}

/// The summary of `deploy` or `rollback`: one row per host that switched (release, the one
/// before, colour, image transfer, time), and the failure with its fix when one stopped it.
pub fn deploy_markdown(
    stack: &str,
    action: &str,
    done: &[crate::deploy::host::Outcome],
    failed: Option<&CliError>,
) -> String {
    let mark = if failed.is_none() { "✅" } else { "❌" };
    let mut md = format!(
        "### {mark} {action} of stack `{stack}`: {} host(s) switched\n\n",
        done.len()
    );
    if !done.is_empty() {
        md.push_str("| host | live | was | colour | image | time |\n| --- | --- | --- | --- | --- | --- |\n");
        for o in done {
            let image = if o.image_was_there {
                "already there".to_string()
            } else {
                format!("{} bytes sent", o.bytes_sent)
            };
            let _ = writeln!(
                md,
                "| {} | `{}` | {} | {:?} | {image} | {:.1} s |",
                cell(&o.host),
                cell(&o.version),
                o.from_version
                    .as_deref()
                    .map(|v| format!("`{}`", cell(v)))
                    .unwrap_or_else(|| "nothing".into()),
                o.color,
                o.duration_ms as f64 / 1000.0
            );
        }
        md.push('\n');
    }
    if let Some(e) = failed {
        let _ = writeln!(md, "**Failed:** {}\n", cell(&e.to_string()));
        if let Some(hint) = e.hint() {
            let _ = writeln!(md, "**Fix:** {}\n", cell(&hint));
        }
    }
    md
}

/// The certificate line of a deploy's summary (`tls.enabled` stacks).
pub fn certificate_markdown(c: &crate::deploy::certificate::CertificateReport) -> String {
    let mark = if c.result == "failed" { "⚠️ " } else { "" };
    format!("{mark}**Certificate:** {}\n\n", cell(&c.describe()))
}

/// The actions an `operate` round took (restarts, renewals, drift fixes), one row each; empty
/// when it took none.
pub fn operate_actions_markdown(actions: &[crate::operate::Event]) -> String {
    let mut md = String::new();
    for a in actions {
        if let crate::operate::Event::Action {
            host,
            action,
            target,
            ok,
            detail,
            ..
        } = a
        {
            if md.is_empty() {
                md.push_str("| | action | host | on | detail |\n| --- | --- | --- | --- | --- |\n");
            }
            let _ = writeln!(
                md,
                "| {} | `{}` | {} | {} | {} |",
                if *ok { "done" } else { "**FAILED**" },
                cell(action),
                cell(host),
                cell(target),
                cell(detail)
            );
        }
    }
    if !md.is_empty() {
        md.push('\n');
    }
    md
}

/// The summary of `certs status`: one row per domain and host.
pub fn certs_status_markdown(stack: &str, st: &[crate::certs::DomainStatus]) -> String {
    let mut md = format!(
        "### Certificates of stack `{stack}`\n\n| domain | host | issuer | serial | expires | days left | renewal due |\n| --- | --- | --- | --- | --- | --- | --- |\n"
    );
    for d in st {
        let domain = if d.covered {
            cell(&d.domain)
        } else {
            format!("{} (**not covered**)", cell(&d.domain))
        };
        match &d.certificate {
            None => {
                let _ = writeln!(
                    md,
                    "| {domain} | {} | **no certificate** | | | | |",
                    cell(&d.host)
                );
            }
            Some(c) => {
                let due = if c.due { " (**due now**)" } else { "" };
                let _ = writeln!(
                    md,
                    "| {domain} | {} | {} | `{}` | {} | {} | {}{due} |",
                    cell(&d.host),
                    cell(&c.issuer),
                    cell(&c.serial),
                    cell(&c.not_after),
                    c.days_left,
                    cell(&c.next_renewal_due)
                );
            }
        }
    }
    md.push('\n');
    md
}

/// The summary of `certs issue` / `certs renew`.
pub fn certs_outcome_markdown(stack: &str, out: &crate::certs::Outcome) -> String {
    use crate::certs::Outcome;
    let issued = |verb: &str, rep: &crate::certs::IssueReport| {
        let c = &rep.certificate;
        format!(
            "### ✅ Certificate {verb} for stack `{stack}`\n\n| names | serial | expires | issuer | hosts | time |\n| --- | --- | --- | --- | --- | --- |\n| {} | `{}` | {} | {} | {} | {:.1} s |\n\n",
            cell(&c.names.join(", ")),
            cell(&c.serial),
            crate::certs::rfc3339(c.not_after),
            cell(&c.issuer),
            cell(&rep.hosts.join(", ")),
            rep.seconds
        )
    };
    match out {
        Outcome::Issued(rep) => issued("issued", rep),
        Outcome::Renewed(rep) => issued("renewed", rep),
        Outcome::NotDue {
            certificate,
            window,
        } => format!(
            "### Certificate of stack `{stack}` not due\n\n{} (serial `{}`) expires {}; renewal is due from {}.\n\n",
            cell(&certificate.names.join(", ")),
            cell(&certificate.serial),
            crate::certs::rfc3339(certificate.not_after),
            crate::certs::rfc3339(window.start)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_github_actions_true_turns_it_on() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(from_env(env(&[])).is_none());
        assert!(from_env(env(&[("GITHUB_ACTIONS", "1")])).is_none());
        assert!(from_env(env(&[("GITHUB_ACTIONS", "true")])).is_some_and(|a| a.summary.is_none()));
        let a = from_env(env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", "/tmp/s.md"),
        ]))
        .expect("in actions");
        assert_eq!(a.summary, Some(PathBuf::from("/tmp/s.md")));
    }

    #[test]
    fn commands_escape_what_would_end_them() {
        assert_eq!(
            command(
                "error",
                &[("file", "a,b:c.toml"), ("line", "3")],
                "100% bad\nfix: x"
            ),
            "::error file=a%2Cb%3Ac.toml,line=3::100%25 bad%0Afix: x"
        );
        // A message cannot start a second command on a new line.
        let cmd = command("error", &[], "x\n::warning::injected");
        assert_eq!(cmd.lines().count(), 1);
    }

    #[test]
    fn markdown_cells_keep_the_table_shape() {
        assert_eq!(cell("a|b\nc"), "a\\|b<br>c");
    }
}
