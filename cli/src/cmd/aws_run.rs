//! What `plan`, `apply` and `destroy` share: plan files (JSON, no secret values), printing a
//! plan, asking before a change, running a plan and printing the addresses to point DNS at,
//! and the stack's lock around `apply`/`destroy` (released whatever the work returned).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use fullslack_aws::{Aws, AwsError, Plan};

use crate::args::LockOpts;
use crate::error::CliError;
use crate::output::Reporter;

/// The plan as text, or as JSON with `--json`.
pub(super) fn print_plan(plan: &Plan, r: &Reporter) {
    if r.json {
        r.print_json(plan);
    } else {
        print!("{}", plan.render());
    }
}

/// Saves a plan for `fullslack apply PLAN` (JSON: names and references, never secret values).
pub(super) fn write_plan(plan: &Plan, path: &Path) -> Result<(), CliError> {
    let json = serde_json::to_string_pretty(plan).map_err(|e| {
        AwsError::invalid(format!("cannot encode the plan: {e}"), "report this bug")
    })?;
    std::fs::write(path, json + "\n").map_err(|source| CliError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a plan saved by `fullslack plan --out`.
pub(super) fn read_plan(path: &Path) -> Result<Plan, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| {
        AwsError::invalid(
            format!("{} is not a fullslack plan: {e}", path.display()),
            "make one with `fullslack plan --stack FILE --out PLAN`",
        )
        .into()
    })
}

/// Asks on the terminal; only `yes` confirms. Refuses without a terminal (CI must say --yes).
pub(super) fn confirm(question: &str) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage {
            message: "refusing to change AWS without confirmation (standard input is not a terminal)".into(),
            hint: "review the plan above and pass --yes, or save it with `fullslack plan --out PLAN` and run `fullslack apply PLAN`".into(),
        });
    }
    eprint!("{question} Only `yes` is accepted: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|source| CliError::Io {
            action: "cannot read",
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    Ok(line.trim() == "yes")
}

/// Applies the plan, then prints the addresses to point DNS at (Elastic IPs, the ALB's name).
async fn run_plan(aws: &Aws, plan: &Plan, r: &Reporter) -> Result<(), CliError> {
    let json = r.json;
    let say = move |line: String| {
        if json {
            tracing::info!("{line}");
        } else {
            println!("  {line}");
        }
    };
    let group = crate::actions::Group::start(&format!(
        "apply: {} change(s) to stack {}",
        plan.changes.len(),
        plan.stack
    ));
    fullslack_aws::apply(aws, plan, &say).await?;
    drop(group);
    // What people need next: the addresses to point DNS at.
    let have = fullslack_aws::read_actual(aws, &plan.stack, &plan.target, &plan.lookup).await?;
    let outputs: Vec<serde_json::Value> = have
        .iter()
        .filter_map(|res| {
            let ip = res.input("public_ip");
            let dns = res.input("dns_name");
            match (res.kind, ip.is_empty(), dns.is_empty()) {
                (fullslack_aws::Kind::ElasticIp, false, _) => {
                    Some(serde_json::json!({"resource": res.label(), "public_ip": ip}))
                }
                (fullslack_aws::Kind::LoadBalancer, _, false) => {
                    Some(serde_json::json!({"resource": res.label(), "dns_name": dns}))
                }
                _ => None,
            }
        })
        .collect();
    if r.json {
        r.print_json(&serde_json::json!({"applied": plan.changes.len(), "outputs": outputs}));
    } else {
        let verb = if plan.destroy { "Destroyed" } else { "Applied" };
        println!(
            "{verb}: {} change(s) to stack `{}`.",
            plan.changes.len(),
            plan.stack
        );
        for o in &outputs {
            let v = o
                .get("public_ip")
                .or_else(|| o.get("dns_name"))
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            println!("  {}: {v}", o["resource"].as_str().unwrap_or_default());
        }
    }
    Ok(())
}

/// Takes the stack's lock (breaking a stale one first when asked).
async fn take_lock(
    aws: &Aws,
    stack: &str,
    command: &str,
    l: &LockOpts,
    r: &Reporter,
) -> Result<fullslack_aws::lock::Lock, CliError> {
    let json = r.json;
    let say = move |line: String| {
        if json {
            tracing::warn!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    if l.break_lock {
        match fullslack_aws::lock::break_lock(aws, stack).await? {
            Some(h) => say(format!(
                "broke the lock of stack `{stack}` held by {} since {} ({})",
                h.holder, h.since, h.command
            )),
            None => say(format!("stack `{stack}` was not locked")),
        }
    }
    Ok(fullslack_aws::lock::acquire(aws, stack, command, l.lock_wait, &say).await?)
}

/// Runs `work` under the stack's lock and releases it whatever `work` returned.
pub(super) async fn locked<F, Fut>(
    aws: &Aws,
    stack: &str,
    command: &str,
    l: &LockOpts,
    r: &Reporter,
    work: F,
) -> Result<(), CliError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let lock = take_lock(aws, stack, command, l, r).await?;
    let out = work().await;
    let released = fullslack_aws::lock::release(aws, &lock).await;
    match (out, released) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e.into()),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// The error of a declined prompt: nothing changed.
fn cancelled(what: &str) -> CliError {
    AwsError::invalid(
        format!("{what} cancelled"),
        "nothing was changed; only `yes` confirms",
    )
    .into()
}

/// What `apply` and `destroy` say around the plan they run.
pub(super) struct Prompt {
    /// The command, for "… cancelled".
    pub what: &'static str,
    /// The question asked before running the plan; `None`: do not ask (`--yes`, a saved plan).
    pub question: Option<String>,
    /// The line printed when the plan is empty.
    pub nothing: String,
}

/// Shows the plan, asks if the prompt says so, and runs it.
pub(super) async fn show_and_run(
    aws: &Aws,
    plan: &Plan,
    r: &Reporter,
    prompt: Prompt,
) -> Result<(), CliError> {
    if !r.json {
        print!("{}", plan.render());
        println!();
    }
    if let Some(gh) = crate::actions::detect() {
        gh.summary(&crate::actions::plan_markdown(plan));
    }
    if plan.is_empty() {
        if r.json {
            r.print_json(&serde_json::json!({"applied": 0, "outputs": []}));
        } else {
            println!("{}", prompt.nothing);
        }
        return Ok(());
    }
    if let Some(question) = &prompt.question {
        if !confirm(question)? {
            return Err(cancelled(prompt.what));
        }
    }
    run_plan(aws, plan, r).await
}
