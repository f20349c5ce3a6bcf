//! `fullslack doctor`: everything outside the server that breaks a deployment (DNS A/AAAA
//! against the hosts, IPv4/IPv6 reachability, CAA, SSH, Docker, AWS credentials, certificate,
//! clock), each failure with its fix.
//!
//! - [`dns`]: the resolver, A/AAAA records against the stack's hosts, CAA.
//! - [`reach`]: the HTTP/HTTPS ports of every published address.
//! - [`cert_clock`]: the certificate served on each domain, and the host's clock.
//! - [`machines`]: SSH (key, port, a real login), the Docker Engine, AWS credentials.

mod cert_clock;
mod dns;
mod machines;
mod reach;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::check::{Check, Outcome, Report};
use crate::stack::{Stack, Target};

/// Checks that can be skipped with `--skip`.
pub const CHECK_GROUPS: &[&str] = &[
    "dns", "reach", "caa", "tls", "clock", "ssh", "docker", "aws",
];

/// How to run the checks.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// DNS server to ask (default: the system's resolvers).
    pub dns_server: Option<SocketAddr>,
    /// HTTP port to probe.
    pub http_port: u16,
    /// HTTPS port to probe.
    pub https_port: u16,
    /// Timeout of each network step.
    pub timeout: Duration,
    /// Check groups not to run.
    pub skip: Vec<String>,
    /// Extra CA certificates for the certificate check.
    pub ca_file: Option<PathBuf>,
    /// Days left under which the certificate fails.
    pub cert_min_days: i64,
    /// Home directory (AWS files, `~` in key paths).
    pub home: Option<PathBuf>,
    /// Docker socket.
    pub docker_socket: PathBuf,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            dns_server: None,
            http_port: 80,
            https_port: 443,
            timeout: Duration::from_secs(3),
            skip: Vec::new(),
            ca_file: None,
            cert_min_days: 14,
            home: std::env::var_os("HOME").map(PathBuf::from),
            docker_socket: docker_socket_from_env(),
        }
    }
}

fn docker_socket_from_env() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Runs every check of the stack.
pub async fn run(stack: &Stack, o: &DoctorOptions) -> Report {
    let skip = |g: &str| o.skip.iter().any(|s| s == g);
    let mut checks = Vec::new();
    let exp = dns::expected(stack);
    let res = match dns::resolver(o) {
        Ok(r) => Some(r),
        Err(e) => {
            checks.push(Check::fail(
                "dns.resolver",
                "system",
                format!("cannot set up a DNS resolver: {e}"),
                "check /etc/resolv.conf, or pass --dns-server IP:PORT",
            ));
            None
        }
    };
    // Addresses actually published, per domain, for the reachability checks. With DNS
    // skipped, the addresses the stack says its hosts have stand in for them, so `--skip dns`
    // skips DNS only.
    let mut published: Vec<(String, Vec<IpAddr>)> = Vec::new();
    if skip("dns") {
        let ips = exp.addresses();
        if ips.is_empty() {
            for group in ["reach", "tls", "clock"] {
                if !skip(group) {
                    checks.push(Check::skip(
                        group,
                        &stack.name,
                        "DNS is skipped and the stack lists no host address (hosts[].ipv4/ipv6) to check instead",
                    ));
                }
            }
        } else {
            for domain in &stack.domains {
                published.push((domain.clone(), ips.clone()));
            }
        }
    } else if let Some(r) = res.as_ref() {
        for domain in &stack.domains {
            let (found, ips) = dns::address_checks(r, domain, &exp).await;
            checks.extend(found);
            published.push((domain.clone(), ips));
        }
    }
    if !skip("reach") {
        checks.extend(reach::port_checks(&published, o).await);
    }
    if !skip("caa") {
        if let Some(r) = res.as_ref() {
            for domain in &stack.domains {
                checks.push(dns::caa_check(r, domain, &stack.tls.ca_domain).await);
            }
        }
    }
    if !skip("tls") && stack.tls.enabled && stack.target != Target::Ecs {
        checks.extend(cert_clock::certificate_checks(&published, o).await);
    }
    if !skip("clock") {
        checks.push(cert_clock::clock_check(&published, o).await);
    }
    if !skip("ssh") && matches!(stack.target, Target::Ssh | Target::Ec2) {
        checks.extend(machines::ssh_checks(stack, o).await);
    }
    if !skip("docker") {
        checks.push(machines::docker_check(o).await);
    }
    if !skip("aws") && matches!(stack.target, Target::Ec2 | Target::Ecs) {
        checks.push(machines::aws_check(o).await);
    }
    // Say what was skipped on request, so a report never reads "all checks passed" for
    // checks that did not run.
    for group in CHECK_GROUPS.iter().filter(|g| skip(g)) {
        checks.push(Check::skip(group, &stack.name, "skipped (--skip)"));
    }
    Report::new(format!("stack {}", stack.name), checks)
}

/// Connects to `addr` within `timeout`; the time it took, or why it failed.
async fn reachable(addr: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Whether the report has a failure.
pub fn failed(r: &Report) -> bool {
    r.checks.iter().any(|c| c.outcome == Outcome::Fail)
}
