//! `fullslack lock acquire|release|status`: the deploy lock on each of a stack's hosts, over
//! SSH (or locally for a `local` stack, or printed with `--dry-run`). An acquire that fails
//! part-way gives back what it took, so a half-taken lock never blocks everyone silently.

use std::path::PathBuf;

use crate::args::{LockArgs, LockCommand};
use crate::commands::{lock, Cmd};
use crate::error::CliError;
use crate::output::Reporter;
use crate::runner::{LocalRunner, RecordingRunner, RunError, Runner, SshRunner, SshTarget};
use crate::stack::{Stack, Target};

/// Runs the lock command on every host of the stack.
pub async fn run(c: LockCommand, r: &Reporter) -> Result<(), CliError> {
    let args = lock_args(&c);
    let mut s = crate::stack::load(&args.stack.stack)?;
    crate::hosts::resolve(&mut s).await?;
    let mut lines = Vec::new();
    if args.dry_run {
        let rec = RecordingRunner::new("dry-run");
        lock_on(&rec, &c, &s.name).await?;
        for cmd in rec.commands() {
            lines.push(cmd.to_string());
        }
    } else if s.target == Target::Local {
        lines.push(lock_on(&LocalRunner, &c, &s.name).await?);
    } else if s.hosts.is_empty() {
        return Err(CliError::Usage {
            message: format!("stack `{}` lists no hosts", s.name),
            hint: "add [[hosts]] to the stack file (EC2 hosts appear after `fullslack apply`)"
                .into(),
        });
    } else {
        lines = lock_over_ssh(&c, &s).await?;
    }
    if r.json {
        r.print_json(&serde_json::json!({"results": lines}));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

fn lock_args(c: &LockCommand) -> &LockArgs {
    match c {
        LockCommand::Acquire { args, .. }
        | LockCommand::Release { args }
        | LockCommand::Status { args } => args,
    }
}

/// One line per host; on a failed acquire, releases the hosts this run had locked.
async fn lock_over_ssh(c: &LockCommand, s: &Stack) -> Result<Vec<String>, CliError> {
    let args = lock_args(c);
    let acquiring = matches!(c, LockCommand::Acquire { .. });
    let targets = ssh_targets(s, args.known_hosts.as_ref());
    let mut lines = Vec::new();
    let mut taken: Vec<&SshTarget> = Vec::new();
    for t in &targets {
        let res = match SshRunner::connect(t).await {
            Ok(runner) => {
                let res = lock_on(&runner, c, &s.name).await;
                let _ = runner.close().await;
                res
            }
            Err(e) => Err(e.into()),
        };
        match res {
            Ok(line) => {
                lines.push(line);
                taken.push(t);
            }
            // A half-taken lock blocks everyone and says nothing: give back what this run
            // took, and say which hosts (if any) still hold it.
            Err(e) if acquiring && !taken.is_empty() => {
                let note = release_taken(args, &taken, &s.name).await;
                return Err(match e {
                    CliError::LockHeld { message } => CliError::LockHeld {
                        message: format!("{message}; {note}"),
                    },
                    other => CliError::Failed {
                        message: format!("{other}; {note}"),
                        hint: other.hint().unwrap_or_default(),
                    },
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(lines)
}

/// Releases the lock on the hosts this run took it on; says where it did and where not.
async fn release_taken(args: &LockArgs, taken: &[&SshTarget], stack: &str) -> String {
    let release = LockCommand::Release {
        args: LockArgs {
            stack: args.stack.clone(),
            dry_run: false,
            known_hosts: args.known_hosts.clone(),
            lock_root: args.lock_root.clone(),
        },
    };
    let mut released = Vec::new();
    let mut still = Vec::new();
    for t in taken {
        let ok = match SshRunner::connect(t).await {
            Ok(runner) => {
                let ok = lock_on(&runner, &release, stack).await.is_ok();
                let _ = runner.close().await;
                ok
            }
            Err(_) => false,
        };
        let name = format!("{}:{}", t.host, t.port);
        if ok {
            released.push(name);
        } else {
            still.push(name);
        }
    }
    if still.is_empty() {
        format!(
            "released the lock this run had taken on {}",
            released.join(", ")
        )
    } else {
        format!(
            "could not release the lock this run had taken on {}: run `fullslack lock release` for them{}",
            still.join(", "),
            if released.is_empty() { String::new() } else { format!(" (released on {})", released.join(", ")) }
        )
    }
}

/// The SSH targets of the stack's hosts (`~/` expanded; `--known-hosts` wins).
pub(crate) fn ssh_targets(s: &Stack, known_hosts: Option<&PathBuf>) -> Vec<SshTarget> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let expand = |p: &str| match (p.strip_prefix("~/"), &home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    };
    s.hosts
        .iter()
        .map(|h| {
            let mut t = SshTarget::new(
                h.address.clone(),
                h.user.clone().unwrap_or_else(|| s.ssh.user.clone()),
                h.port.unwrap_or(s.ssh.port),
            );
            t.identity_file = s.ssh.identity_file.as_deref().map(expand);
            t.known_hosts = known_hosts
                .cloned()
                .or_else(|| s.ssh.known_hosts.as_deref().map(expand));
            t.config_file = s.ssh.config_file.as_deref().map(expand);
            t
        })
        .collect()
}

/// Runs the lock command on one host; the line to print, or why it failed.
async fn lock_on<R: Runner>(runner: &R, c: &LockCommand, stack: &str) -> Result<String, CliError> {
    let lock_root = &lock_args(c).lock_root;
    let cmd: Cmd = match c {
        LockCommand::Acquire { message, .. } => {
            // No id: an operator's lock is given back by `lock release`, never conditionally.
            let h = lock::Holder {
                who: fullslack_aws::lock::whoami(),
                since: httpdate::fmt_http_date(std::time::SystemTime::now()),
                message: message.clone(),
                id: String::new(),
            };
            lock::acquire(lock_root, stack, &h)
        }
        LockCommand::Release { .. } => lock::release(lock_root, stack),
        LockCommand::Status { .. } => lock::status(lock_root, stack),
    };
    let out = runner.run(&cmd).await?;
    let failed = || -> CliError { RunError::failed(runner.host(), &cmd, &out).into() };
    match c {
        LockCommand::Acquire { .. } if !out.success() => {
            let holder = runner
                .run(&lock::status(lock_root, stack))
                .await
                .ok()
                .and_then(|o| lock::parse_holder(&o.stdout));
            match holder {
                Some(h) => Err(CliError::LockHeld {
                    message: format!(
                        "the deploy lock of `{stack}` on {} is held by {} since {} ({})",
                        runner.host(),
                        h.who,
                        h.since,
                        h.message
                    ),
                }),
                None => Err(failed()),
            }
        }
        LockCommand::Status { .. } => Ok(match lock::parse_holder(&out.stdout) {
            Some(h) => format!(
                "{}: held by {} since {} ({})",
                runner.host(),
                h.who,
                h.since,
                h.message
            ),
            None => format!("{}: free", runner.host()),
        }),
        _ if !out.success() => Err(failed()),
        LockCommand::Acquire { .. } => Ok(format!("{}: lock taken", runner.host())),
        LockCommand::Release { .. } => Ok(format!("{}: lock released", runner.host())),
    }
}
