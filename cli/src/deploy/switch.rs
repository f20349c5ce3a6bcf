//! Blue/green on one host: the new release starts on the idle colour's port beside the live
//! one, gets no traffic until it passed its health gate (`/healthz`, `/readyz`, then a real
//! WebSocket round trip as the probe user, all through a port forwarded to the container's
//! loopback port), then Nginx is pointed at it (`nginx -t` before the reload, so a bad config
//! never replaces a good one), and only then the old release gets SIGTERM: it closes its
//! sockets with 1012 and its clients reconnect through Nginx to the new one.

use std::time::Instant;

use super::{NginxSetup, Plan, Target, STATE_ROOT};
use crate::check::Outcome;
use crate::commands::docker::{self, RunSpec};
use crate::commands::{files, nginx as nginx_cmd, Cmd};
use crate::error::CliError;
use crate::nginx::{render_site, Color, SiteParams};
use crate::runner::Runner;

/// Poll interval of the health gate: the release is asked again until it answers or the
/// deadline passes (a condition with a deadline, never a fixed sleep standing for "ready").
const GATE_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Lines of a failed release's log shown to the user.
pub const LOG_LINES: u32 = 40;

/// The container spec of the release on `color`.
pub fn spec(p: &Plan, t: &Target, color: Color, port: u16) -> RunSpec {
    let stack_label = |k: &str, v: &str| (k.to_string(), v.to_string());
    RunSpec {
        name: p.layout.container(color),
        image: t.image.clone(),
        host_port: port,
        container_port: p.container_port,
        env: p.env.plain.clone(),
        env_file: (!p.env.secrets.is_empty()).then(|| p.layout.env_file()),
        labels: vec![
            stack_label("fullslack.stack", &p.layout.stack),
            stack_label("fullslack.version", &t.version),
            stack_label("fullslack.color", super::color_name(color)),
        ],
        network: p.network.clone(),
        volumes: vec![(p.layout.data_volume(), data_dir(p))],
        restart: "unless-stopped".into(),
    }
}

/// The server's data directory inside the container (the stack's own setting wins over the
/// image's).
fn data_dir(p: &Plan) -> String {
    p.env
        .plain
        .iter()
        .find(|(k, _)| k == "FULLSLACK_DATA_DIR")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| {
            crate::image::offline::IMAGE_ENV
                .iter()
                .find(|(k, _)| *k == "FULLSLACK_DATA_DIR")
                .map_or_else(|| format!("{STATE_ROOT}/data"), |(_, v)| v.to_string())
        })
}

/// Starts the release on `color` (replacing a leftover container of that colour: an
/// interrupted deploy's, which never got traffic).
pub async fn start<R: Runner>(
    r: &R,
    p: &Plan,
    t: &Target,
    color: Color,
    port: u16,
) -> Result<(), CliError> {
    let name = p.layout.container(color);
    if exists(r, &name).await? {
        // On stderr, so that `--json` output stays one document.
        eprintln!(
            "{}: removing {name}, left by an interrupted deploy (it never had traffic)",
            r.host()
        );
        r.check(&docker::rm(&name)).await?;
    }
    r.check(&docker::run(&spec(p, t, color, port))).await?;
    Ok(())
}

/// Waits until the release on `port` passes the gate; `Err` carries the last failure.
pub async fn wait_healthy<R: Runner>(
    r: &R,
    p: &Plan,
    container: &str,
    port: u16,
) -> Result<(), String> {
    let local = r.reach(port).await.map_err(|e| e.to_string())?;
    let mut probe = p.gate.probe.clone();
    probe.url = reqwest::Url::parse(&format!("http://127.0.0.1:{local}/"))
        .map_err(|e| format!("probe URL: {e}"))?;
    let websocket = probe.websocket;
    let start = Instant::now();
    loop {
        let state = r
            .run(&docker::state(container))
            .await
            .map_err(|e| e.to_string())?;
        let state = state.stdout.trim().to_string();
        // A release that crashed while starting is not going to pass (Docker restarting
        // it is for crashes of a release that was healthy): fail now, not at the deadline.
        if matches!(state.as_str(), "exited" | "dead" | "restarting") {
            return Err(format!("the container {container} stopped ({state})"));
        }
        // HTTP first: the round trip signs in, and sign-ins are rate limited.
        probe.websocket = false;
        let mut report = crate::health::run(&probe).await;
        if report.checks.iter().all(|c| c.outcome == Outcome::Ok) && websocket {
            probe.websocket = true;
            report = crate::health::run(&probe).await;
        }
        let last = match report
            .checks
            .iter()
            .find(|c| c.outcome == Outcome::Fail || c.outcome == Outcome::Skip)
        {
            None => return Ok(()),
            Some(c) => format!("{}: {}", c.name, c.detail),
        };
        if start.elapsed() >= p.gate.deadline {
            return Err(format!(
                "not healthy after {} s (last: {last})",
                p.gate.deadline.as_secs()
            ));
        }
        tokio::time::sleep(GATE_POLL).await;
    }
}

/// The last log lines of a failed release, then the container removed.
pub async fn discard<R: Runner>(r: &R, container: &str) -> String {
    let logs = match r.run(&docker::logs_tail(container, LOG_LINES)).await {
        Ok(o) => format!("{}{}", o.stdout, o.stderr),
        Err(e) => format!("(no logs: {e})"),
    };
    let _ = r.run(&docker::rm(container)).await;
    logs
}

/// Points Nginx at `color`: writes the site, `nginx -t`, reload. On a failed test the previous
/// site file is put back, so Nginx keeps what it serves. A `tls.enabled` site is rendered
/// HTTP-only while the host has no certificate Nginx could serve ([`servable_certificate`]):
/// that variant still serves the ACME challenge and proxies to the release, so the deploy's
/// certificate step can get one. Returns whether the site serves HTTPS.
pub async fn point_nginx<R: Runner>(
    r: &R,
    nginx: &NginxSetup,
    color: Color,
) -> Result<bool, CliError> {
    let site = site_for(r, nginx, color).await?;
    let text = render_site(&site)?;
    let path = &nginx.site_path;
    let before = r.run(&files::read(path)).await?;
    r.check(&files::write(path, &text, 0o644)).await?;
    let tested = r.run(&nginx_cmd::test(&nginx.paths)).await?;
    if !tested.success() {
        let restore = if before.success() {
            files::write(path, &before.stdout, 0o644)
        } else {
            files::remove(path)
        };
        r.check(&restore).await?;
        return Err(CliError::Failed {
            message: format!(
                "nginx -t on {} refused the new site: {}",
                r.host(),
                tested.stderr.trim()
            ),
            hint: "the previous site was put back and the live release keeps serving; fix the Nginx setup (`fullslack nginx render`) and deploy again".into(),
        });
    }
    r.check(&nginx_cmd::reload(&nginx.paths)).await?;
    Ok(site.tls)
}

/// The site Nginx should serve on this host with `color` live: the stack's site, HTTP-only
/// while a `tls.enabled` host has no certificate Nginx could serve. What `point_nginx` writes
/// and what `operate` compares the host's file with.
pub async fn site_for<R: Runner>(
    r: &R,
    nginx: &NginxSetup,
    color: Color,
) -> Result<SiteParams, CliError> {
    let mut site = nginx.site.clone();
    site.active = color;
    if site.tls && !servable_certificate(r, &site.cert_dir).await? {
        site.tls = false;
    }
    Ok(site)
}

/// Whether `cert_dir` on the host holds a certificate Nginx can serve: a chain that parses and
/// has not expired, and a key. Names and issuer do not matter here: a certificate for other
/// names still serves the names it has, and HTTPS is never dropped for one (the certificate
/// step replaces it).
pub async fn servable_certificate<R: Runner>(r: &R, cert_dir: &str) -> Result<bool, CliError> {
    let dir = cert_dir.trim_end_matches('/');
    let chain = r.run(&files::read(&format!("{dir}/fullchain.pem"))).await?;
    if !chain.success() {
        return Ok(false);
    }
    match crate::certs::inspect::summarize(&chain.stdout) {
        Ok(c) if c.not_after > crate::certs::now() => {}
        _ => return Ok(false),
    }
    let key = Cmd::new("test").args(["-s", &format!("{dir}/privkey.pem")]);
    Ok(r.run(&key).await?.success())
}

/// SIGTERM to the old release, which drains (closes its sockets with 1012) within
/// `drain_secs`, then its container is removed.
pub async fn retire<R: Runner>(r: &R, p: &Plan, color: Color) -> Result<(), CliError> {
    let name = p.layout.container(color);
    if exists(r, &name).await? {
        r.check(&docker::stop(&name, p.drain_secs)).await?;
        r.check(&docker::rm(&name)).await?;
    }
    Ok(())
}

/// Whether a container of that name exists on the host.
pub async fn exists<R: Runner>(r: &R, name: &str) -> Result<bool, CliError> {
    Ok(r.run(&docker::state(name)).await?.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::nginx::NginxPaths;
    use crate::deploy::{Gate, Layout, NginxSetup, Transfer, Wanted};
    use crate::secret::SecretString;
    use crate::stack::ContainerEnv;

    fn plan() -> Plan {
        let stack: crate::stack::Stack = toml::from_str(
            "name = \"chat\"\ndomains = [\"chat.example.com\"]\ntarget = \"ssh\"\n\
             [[hosts]]\naddress = \"203.0.113.7\"\n[image]\nname = \"chat/chat\"\n\
             [app]\nhost_port = 8100\n",
        )
        .expect("stack");
        let probe = crate::health::HealthOptions {
            url: reqwest::Url::parse("http://127.0.0.1/").expect("url"),
            probe_user: "probe".into(),
            probe_password: None,
            probe_token: None,
            register_probe: false,
            timeout: std::time::Duration::from_secs(1),
            ca_file: None,
            websocket: false,
            cert_min_days: 0,
        };
        Plan {
            action: "deploy",
            layout: Layout {
                root: "/var/lib/fullslack".into(),
                stack: "chat".into(),
                host: None,
            },
            wanted: Wanted::Rollback(None),
            transfer: Transfer::AlreadyThere,
            env: ContainerEnv {
                plain: vec![("RUST_LOG".into(), "info".into())],
                secrets: vec![(
                    "FULLSLACK_AUTH__JWT_SECRET".into(),
                    SecretString::from("never on a command line"),
                )],
            },
            container_port: 8080,
            network: None,
            nginx: NginxSetup {
                site_path: "/etc/nginx/conf.d/fullslack-chat.conf".into(),
                paths: NginxPaths::default(),
                site: SiteParams::from_stack(&stack).expect("site"),
            },
            gate: Gate {
                probe,
                deadline: std::time::Duration::from_secs(5),
            },
            keep: 3,
            drain_secs: 30,
            lock: super::super::lock::Policy::default(),
            who: "ci@runner".into(),
            install_missing: false,
        }
    }

    #[test]
    fn a_release_runs_with_its_volume_env_file_labels_and_restart_policy() {
        let p = plan();
        let t = Target {
            image: "chat/chat:v2".into(),
            version: "v2".into(),
            image_id: None,
        };
        assert_eq!(p.nginx.port(Color::Green), Some(8200));
        let line = docker::run(&spec(&p, &t, Color::Green, 8200)).to_shell();
        assert_eq!(
            line,
            "docker run --detach --restart unless-stopped --name chat-green \
             --publish 127.0.0.1:8200:8080 --volume chat-data:/data \
             --label fullslack.stack=chat --label fullslack.version=v2 \
             --label fullslack.color=green --env RUST_LOG=info \
             --env FULLSLACK_TRUSTED_PROXIES=127.0.0.1,::1,172.16.0.0/12,192.168.0.0/16 \
             --env-file /var/lib/fullslack/chat/env chat/chat:v2"
        );
        assert!(!line.contains("never on a command line"));
    }
}
