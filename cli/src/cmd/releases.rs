//! `fullslack releases`: per host, the releases kept for rollback (newest first) and which
//! one is live, read from the host's release log. An `ecs` stack lists its task definition
//! revisions instead ([`super::deploy_ecs::releases`]).

use crate::args::ReleasesArgs;
use crate::deploy::host::read_log;
use crate::deploy::releases::ReleaseLog;
use crate::deploy::Layout;
use crate::error::CliError;
use crate::output::Reporter;
use crate::runner::{LocalRunner, Runner, SshRunner};
use crate::stack::Target;

/// Lists each host's releases.
pub async fn run(a: &ReleasesArgs, r: &Reporter) -> Result<(), CliError> {
    let mut s = crate::stack::load(&a.stack.stack)?;
    if s.target == Target::Ecs {
        // No hosts: the task definition's revisions and the service.
        return super::deploy_ecs::releases(&s, r).await;
    }
    crate::hosts::resolve(&mut s).await?;
    let root = &a.connect.state_dir;
    let mut hosts = Vec::new();
    if s.target == Target::Local {
        let layout = Layout::of(root, &s.name, None);
        let log = read_log(&LocalRunner, &layout.releases_file()).await?;
        hosts.push((LocalRunner.host(), log));
    } else {
        let targets = super::lock::ssh_targets(&s, a.connect.known_hosts.as_ref());
        for (t, h) in targets.iter().zip(&s.hosts) {
            let layout = Layout::of(root, &s.name, Some(h));
            let runner = SshRunner::connect(t).await?;
            let log = read_log(&runner, &layout.releases_file()).await;
            let host = runner.host();
            let _ = runner.close().await;
            hosts.push((host, log?));
        }
    }
    if r.json {
        let v: Vec<_> = hosts
            .iter()
            .map(|(h, log)| serde_json::json!({"host": h, "live": log.live().map(|l| &l.version), "releases": log.releases}))
            .collect();
        r.print_json(&serde_json::json!({ "hosts": v }));
    } else {
        for (h, log) in &hosts {
            print_host(h, log);
        }
    }
    Ok(())
}

fn print_host(host: &str, log: &ReleaseLog) {
    println!("{host}:");
    if log.releases.is_empty() {
        println!("  no releases yet");
    }
    for (i, rel) in log.releases.iter().enumerate() {
        let mark = if i == 0 && log.live { "live" } else { "kept" };
        println!(
            "  {mark:4}  {:<32} {:<5} {}  {}",
            rel.version,
            crate::deploy::color_name(rel.color),
            rel.deployed_at,
            rel.image
        );
    }
}
