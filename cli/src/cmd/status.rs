//! `fullslack status`: per host, the live release (from the host's release log), its
//! container's state and start time, `/readyz` and the open WebSocket connections
//! (`fullslack_ws_connections` from `/metrics`), both asked through a port forwarded to the
//! release's loopback port. Exit 1 when a host has no live release or it is not ready. An
//! `ecs` stack shows its service's live revision and deployments instead
//! ([`super::deploy_ecs::status`]).

use std::time::Duration;

use serde::Serialize;

use crate::args::ReleasesArgs;
use crate::commands::docker;
use crate::deploy::host::read_log;
use crate::deploy::{color_name, host_stack, Layout};
use crate::error::CliError;
use crate::nginx::{Color, SiteParams};
use crate::output::Reporter;
use crate::runner::{LocalRunner, Runner, SshRunner};
use crate::stack::Target;

/// One host's status.
#[derive(Debug, Serialize)]
struct HostStatus {
    host: String,
    live: Option<String>,
    color: Option<&'static str>,
    container: Option<String>,
    ready: bool,
    ws_connections: Option<u64>,
}

/// Prints each host's status.
pub async fn run(a: &ReleasesArgs, r: &Reporter) -> Result<(), CliError> {
    let mut s = crate::stack::load(&a.stack.stack)?;
    if s.target == Target::Ecs {
        // No hosts: the task definition's revisions and the service.
        return super::deploy_ecs::status(&s, r).await;
    }
    crate::hosts::resolve(&mut s).await?;
    let root = &a.connect.state_dir;
    let mut out = Vec::new();
    if s.target == Target::Local {
        let layout = Layout::of(root, &s.name, None);
        let site = SiteParams::from_stack(&s)?;
        out.push(host_status(&LocalRunner, &layout, &site).await?);
    } else {
        let targets = super::lock::ssh_targets(&s, a.connect.known_hosts.as_ref());
        for (t, h) in targets.iter().zip(&s.hosts) {
            let layout = Layout::of(root, &s.name, Some(h));
            let site = SiteParams::from_stack(&host_stack(&s, Some(h)))?;
            let runner = SshRunner::connect(t).await?;
            let st = host_status(&runner, &layout, &site).await;
            let _ = runner.close().await;
            out.push(st?);
        }
    }
    if r.json {
        r.print_json(&serde_json::json!({ "hosts": out }));
    } else {
        for h in &out {
            println!(
                "{}: {} ({}), {}, {}, {} WebSocket connections",
                h.host,
                h.live.as_deref().unwrap_or("no live release"),
                h.color.unwrap_or("-"),
                h.container.as_deref().unwrap_or("no container"),
                if h.ready { "ready" } else { "NOT ready" },
                h.ws_connections
                    .map_or_else(|| "?".to_string(), |n| format!("{n}"))
            );
        }
    }
    let bad = out.iter().filter(|h| !h.ready).count();
    if bad == 0 {
        Ok(())
    } else {
        Err(CliError::ChecksFailed(bad))
    }
}

async fn host_status<R: Runner>(
    r: &R,
    layout: &Layout,
    site: &SiteParams,
) -> Result<HostStatus, CliError> {
    let log = read_log(r, &layout.releases_file()).await?;
    let mut st = HostStatus {
        host: r.host(),
        live: None,
        color: None,
        container: None,
        ready: false,
        ws_connections: None,
    };
    let Some(live) = log.live() else {
        return Ok(st);
    };
    st.live = Some(live.version.clone());
    st.color = Some(color_name(live.color));
    let name = layout.container(live.color);
    let inspect = r
        .run(&docker::inspect(
            &name,
            "{{.State.Status}} since {{.State.StartedAt}}",
        ))
        .await?;
    st.container = Some(if inspect.success() {
        format!("{name} {}", inspect.stdout.trim())
    } else {
        format!("{name} missing")
    });
    let servers = match live.color {
        Color::Blue => &site.blue,
        Color::Green => &site.green,
    };
    let Some(port) = servers
        .first()
        .and_then(|s| s.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok())
    else {
        return Ok(st);
    };
    let local = r.reach(port).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| CliError::Failed {
            message: format!("HTTP client: {e}"),
            hint: "this is a bug: please report it".into(),
        })?;
    let base = format!("http://127.0.0.1:{local}");
    st.ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|resp| resp.status().is_success());
    if let Ok(resp) = http.get(format!("{base}/metrics")).send().await {
        let text = resp.text().await.unwrap_or_default();
        st.ws_connections = text
            .lines()
            .find_map(|l| l.strip_prefix("fullslack_ws_connections "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64);
    }
    Ok(st)
}
