//! `fullslack logs` and `fullslack exec`: `docker logs` / `docker exec` on the live release's
//! container of each host (or of the one `--host`), found through the host's release log, its
//! output shown as it comes (through [`Runner::run_attached`]).

use super::usage;
use crate::args::{ExecArgs, HostConnect, LogsArgs};
use crate::commands::{docker, Cmd};
use crate::deploy::host::read_log;
use crate::deploy::Layout;
use crate::error::CliError;
use crate::runner::{LocalRunner, Runner, SshRunner};
use crate::stack::{Stack, Target};

/// `fullslack logs [--follow] [--since WHEN] [--tail N] [--host HOST]`.
pub async fn logs(a: &LogsArgs) -> Result<(), CliError> {
    let s = load(&a.stack.stack).await?;
    if a.follow && a.host.is_none() && s.target != Target::Local && s.hosts.len() > 1 {
        return Err(usage(
            "--follow shows one host's log at a time",
            format!("add --host with one of: {}", host_keys(&s).join(", ")),
        ));
    }
    let cmd = |container: &str| docker::logs(container, a.follow, a.since.as_deref(), a.tail);
    on_live_containers(&s, &a.connect, a.host.as_deref(), "logs", &cmd).await
}

/// `fullslack exec [--host HOST] -- CMD…`.
pub async fn exec(a: &ExecArgs) -> Result<(), CliError> {
    let s = load(&a.stack.stack).await?;
    let cmd = |container: &str| docker::exec(container, &a.command);
    on_live_containers(&s, &a.connect, a.host.as_deref(), "exec", &cmd).await
}

async fn load(path: &std::path::Path) -> Result<Stack, CliError> {
    let mut s = crate::stack::load(path)?;
    crate::hosts::resolve(&mut s).await?;
    Ok(s)
}

/// How each host is named on the command line: its `name`, else its address.
fn host_keys(s: &Stack) -> Vec<String> {
    s.hosts
        .iter()
        .map(|h| h.name.clone().unwrap_or_else(|| h.address.clone()))
        .collect()
}

/// Runs `cmd(container)` attached on every selected host, one after the other, with a header
/// line per host when there are several; the first non-zero exit fails the command.
async fn on_live_containers(
    s: &Stack,
    connect: &HostConnect,
    only: Option<&str>,
    verb: &str,
    cmd: &(dyn Fn(&str) -> Cmd + Sync),
) -> Result<(), CliError> {
    if s.target == Target::Local {
        let layout = Layout::of(&connect.state_dir, &s.name, None);
        return until_interrupted(verb, on_host(&LocalRunner, &layout, verb, cmd, false)).await;
    }
    let targets = super::lock::ssh_targets(s, connect.known_hosts.as_ref());
    let chosen: Vec<_> = targets
        .iter()
        .zip(&s.hosts)
        .filter(|(_, h)| only.is_none_or(|k| h.name.as_deref() == Some(k) || h.address == k))
        .collect();
    if chosen.is_empty() {
        return Err(match only {
            Some(k) => usage(
                format!("stack `{}` has no host `{k}`", s.name),
                format!("give one of: {}", host_keys(s).join(", ")),
            ),
            None => usage(
                format!("stack `{}` lists no hosts", s.name),
                "add [[hosts]] to the stack file (EC2 hosts appear after `fullslack apply`)",
            ),
        });
    }
    let header = chosen.len() > 1;
    for (t, h) in chosen {
        let layout = Layout::of(&connect.state_dir, &s.name, Some(h));
        let runner = SshRunner::connect(t).await?;
        let res = until_interrupted(verb, on_host(&runner, &layout, verb, cmd, header)).await;
        // Also after Ctrl-C: closing the connection ends the remote command and the SSH
        // master process, which would otherwise outlive this one.
        let _ = runner.close().await;
        res?;
    }
    Ok(())
}

/// `work`, unless Ctrl-C or SIGTERM comes first: then `logs` (which `--follow` ends that way)
/// succeeds and `exec` fails, and `work` is dropped (a local command is killed with it).
async fn until_interrupted(
    verb: &str,
    work: impl std::future::Future<Output = Result<(), CliError>>,
) -> Result<(), CliError> {
    tokio::select! {
        res = work => res,
        () = interrupted() => {
            if verb == "logs" {
                Ok(())
            } else {
                Err(CliError::Failed {
                    message: format!("{verb} interrupted"),
                    hint: "the command may still be running in the container".into(),
                })
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM (never, if neither can be listened for).
async fn interrupted() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn on_host<R: Runner>(
    r: &R,
    layout: &Layout,
    verb: &str,
    cmd: &(dyn Fn(&str) -> Cmd + Sync),
    header: bool,
) -> Result<(), CliError> {
    let log = read_log(r, &layout.releases_file()).await?;
    let Some(live) = log.live() else {
        return Err(CliError::Failed {
            message: format!(
                "{} has no live release of stack `{}`",
                r.host(),
                layout.stack
            ),
            hint: "deploy one with `fullslack deploy --stack FILE`".into(),
        });
    };
    let container = layout.container(live.color);
    if header {
        println!("==> {} {container} ({}) <==", r.host(), live.version);
    }
    let c = cmd(&container);
    let status = r.run_attached(&c).await?;
    if status != 0 {
        return Err(CliError::Failed {
            message: format!("`{c}` exited with status {status} on {}", r.host()),
            hint: format!("the {verb} output above says why"),
        });
    }
    Ok(())
}
