//! A host's programs before its first release: the Docker Engine and Nginx, installed when
//! missing on a host reached over SSH (never on this machine: a `local` stack only checks).
//!
//! Order: probe (one round trip: which of `docker` / `nginx` are missing, who we are, which
//! package manager and init system the host has) → when something is missing and the host
//! runs cloud-init, wait for it first (an `ec2` instance installs both from its user data on
//! first boot, and a deploy right after `apply` would race it for the package lock) → install
//! what is still missing with `apt-get` or `dnf`, as root or through `sudo -n` (never a
//! password prompt), enable and start the services → probe again. Nothing here runs when both
//! programs answer, so a deploy to a set-up host costs one extra command.

use crate::commands::{Cmd, StdinData};
use crate::error::CliError;
use crate::runner::Runner;

/// What the probe found on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// `docker` is not on the PATH.
    pub no_docker: bool,
    /// `nginx` is neither on the PATH nor in /usr/sbin.
    pub no_nginx: bool,
    /// The login is root.
    pub root: bool,
    /// `sudo -n true` succeeds (passwordless sudo).
    pub sudo: bool,
    /// `cloud-init` is installed.
    pub cloud_init: bool,
    /// `apt-get` or `dnf`, if either.
    pub package_manager: Option<String>,
}

impl Found {
    /// The programs missing, by their usual names.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.no_docker {
            m.push("docker");
        }
        if self.no_nginx {
            m.push("nginx");
        }
        m
    }
}

/// One command that reports the facts, one per line (`missing:docker`, `root`, …).
pub fn probe() -> Cmd {
    Cmd::new("sh").args(["-c", PROBE])
}

const PROBE: &str = "command -v docker >/dev/null 2>&1 || echo missing:docker; \
     { command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx; } || echo missing:nginx; \
     [ \"$(id -u)\" = 0 ] && echo root; \
     sudo -n true >/dev/null 2>&1 && echo sudo; \
     command -v cloud-init >/dev/null 2>&1 && echo cloud-init; \
     if command -v apt-get >/dev/null 2>&1; then echo pm:apt-get; \
     elif command -v dnf >/dev/null 2>&1; then echo pm:dnf; fi; true";

/// Parses [`probe`]'s output.
pub fn parse(out: &str) -> Found {
    let mut f = Found::default();
    for line in out.lines().map(str::trim) {
        match line {
            "missing:docker" => f.no_docker = true,
            "missing:nginx" => f.no_nginx = true,
            "root" => f.root = true,
            "sudo" => f.sudo = true,
            "cloud-init" => f.cloud_init = true,
            _ => {
                if let Some(pm) = line.strip_prefix("pm:") {
                    f.package_manager = Some(pm.to_string());
                }
            }
        }
    }
    f
}

/// The install script, run by `sh -s -- PROGRAMS…` as root with the script on stdin. It maps
/// program names to the distribution's packages, installs them, enables and starts the
/// services (systemd, else the `service` wrapper, else Nginx started directly), and adds the
/// sudo user to the `docker` group.
const INSTALL: &str = r#"set -eu
pkgs=""
for p in "$@"; do
  case "$p" in
    docker) if command -v apt-get >/dev/null 2>&1; then pkgs="$pkgs docker.io"; else pkgs="$pkgs docker"; fi ;;
    nginx) pkgs="$pkgs nginx" ;;
  esac
done
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs
elif command -v dnf >/dev/null 2>&1; then
  dnf install -y -q $pkgs
else
  echo "neither apt-get nor dnf on this host" >&2
  exit 4
fi
for p in "$@"; do
  if [ -d /run/systemd/system ]; then
    systemctl enable --now "$p"
  elif command -v service >/dev/null 2>&1; then
    service "$p" start
  elif [ "$p" = nginx ]; then
    nginx
  fi
done
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  usermod -aG docker "$SUDO_USER"
fi
"#;

/// Installs `programs` on the host (as root, or through `sudo -n`).
pub fn install(programs: &[&str], as_root: bool) -> Cmd {
    let mut c = if as_root {
        Cmd::new("sh")
    } else {
        Cmd::new("sudo").args(["-n", "sh"])
    };
    c = c.args(["-s", "--"]).args(programs.iter().copied());
    c.stdin(StdinData::Plain(INSTALL.to_string()))
}

/// `cloud-init status --wait`, bounded: its exit status says how first boot went, which is
/// not ours to judge (the probe after it is).
pub fn wait_for_cloud_init() -> Cmd {
    Cmd::new("sh").args([
        "-c",
        "timeout 900 cloud-init status --wait >/dev/null 2>&1; true",
    ])
}

/// Makes sure the host has Docker and Nginx; installs what is missing when `install` (hosts
/// reached over SSH), else says how. Returns the programs installed.
pub async fn ensure_programs<R: Runner>(
    r: &R,
    install_missing: bool,
) -> Result<Vec<&'static str>, CliError> {
    let mut found = parse(&r.check(&probe()).await?.stdout);
    if found.missing().is_empty() {
        return Ok(Vec::new());
    }
    if !install_missing {
        return Err(missing_error(
            r,
            &found,
            "this machine is not set up by deploy",
        ));
    }
    if found.cloud_init {
        eprintln!(
            "{}: {} missing; waiting for cloud-init to finish first boot",
            r.host(),
            found.missing().join(" and ")
        );
        r.run(&wait_for_cloud_init()).await?;
        found = parse(&r.check(&probe()).await?.stdout);
        if found.missing().is_empty() {
            return Ok(Vec::new());
        }
    }
    let missing = found.missing();
    if found.package_manager.is_none() {
        return Err(missing_error(r, &found, "it has neither apt-get nor dnf"));
    }
    if !found.root && !found.sudo {
        return Err(missing_error(
            r,
            &found,
            "the SSH user is not root and has no passwordless sudo",
        ));
    }
    eprintln!(
        "{}: installing {} with {}",
        r.host(),
        missing.join(" and "),
        found.package_manager.as_deref().unwrap_or_default()
    );
    let out = r.run(&install(&missing, found.root)).await?;
    if !out.success() {
        let tail: Vec<&str> = out.stderr.lines().rev().take(5).collect();
        return Err(CliError::Failed {
            message: format!(
                "installing {} on {} failed (exit {}): {}",
                missing.join(" and "),
                r.host(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ),
            hint: "run the install by hand on the host (see the message), then deploy again".into(),
        });
    }
    let after = parse(&r.check(&probe()).await?.stdout);
    if !after.missing().is_empty() {
        return Err(missing_error(
            r,
            &after,
            "they are still missing after the install",
        ));
    }
    Ok(missing)
}

fn missing_error<R: Runner>(r: &R, f: &Found, why: &str) -> CliError {
    let packages = f
        .missing()
        .iter()
        .map(|p| if *p == "docker" { "docker.io" } else { *p })
        .collect::<Vec<_>>()
        .join(" ");
    CliError::Failed {
        message: format!(
            "{} has no {} and deploy did not install it: {why}",
            r.host(),
            f.missing().join(" and ")
        ),
        hint: format!(
            "install it on the host (Debian/Ubuntu: `sudo apt-get install {packages}`; let the SSH user use Docker: `sudo usermod -aG docker USER`, then log in again), or deploy as root or a user with passwordless sudo"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::LocalRunner;

    #[test]
    fn parses_what_the_probe_prints() {
        let f = parse("missing:nginx\nsudo\ncloud-init\npm:apt-get\n");
        assert_eq!(
            f,
            Found {
                no_docker: false,
                no_nginx: true,
                root: false,
                sudo: true,
                cloud_init: true,
                package_manager: Some("apt-get".into()),
            }
        );
        assert_eq!(f.missing(), vec!["nginx"]);
        assert_eq!(parse("root\npm:dnf\n").missing(), Vec::<&str>::new());
    }

    #[test]
    fn the_install_is_sudo_without_a_prompt_and_the_script_goes_on_stdin() {
        let c = install(&["docker", "nginx"], false);
        assert_eq!(c.to_shell(), "sudo -n sh -s -- docker nginx");
        assert!(matches!(&c.stdin, Some(StdinData::Plain(s)) if s.contains("apt-get install")));
        assert_eq!(install(&["nginx"], true).to_shell(), "sh -s -- nginx");
    }

    #[tokio::test]
    async fn the_scripts_are_valid_sh_and_the_probe_reads_this_machine() {
        // `sh -n` parses without running: the install script is never run by the tests (it
        // would install packages on the machine).
        for script in [PROBE, INSTALL] {
            let out = LocalRunner
                .run(&Cmd::new("sh").args(["-n", "-c", script]))
                .await
                .expect("sh runs");
            assert!(out.success(), "{script}: {}", out.stderr);
        }
        // This machine runs the deploy tests, so it has both programs: nothing is missing and
        // ensure_programs does nothing.
        let found = parse(&LocalRunner.check(&probe()).await.expect("probe").stdout);
        assert_eq!(found.missing(), Vec::<&str>::new(), "{found:?}");
        assert!(found.package_manager.is_some(), "{found:?}");
        let installed = ensure_programs(&LocalRunner, false).await.expect("present");
        assert!(installed.is_empty());
    }
}
