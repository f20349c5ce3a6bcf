//! `fullslack doctor`: everything outside the server that breaks a deployment (DNS A/AAAA
//! against the hosts, IPv4/IPv6 reachability, CAA, SSH, Docker, AWS credentials, certificate,
//! clock), each failure with its fix.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

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

fn resolver(o: &DoctorOptions) -> Result<TokioResolver, hickory_resolver::ResolveError> {
    let mut opts = ResolverOpts::default();
    opts.timeout = o.timeout;
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    let builder = match o.dns_server {
        Some(addr) => {
            let mut cfg = ResolverConfig::new();
            cfg.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            cfg.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            TokioResolver::builder_with_config(cfg, TokioConnectionProvider::default())
        }
        None => TokioResolver::builder_tokio()?,
    };
    Ok(builder.with_options(opts).build())
}

/// What DNS must point at, from the stack's hosts.
#[derive(Debug, Default)]
struct Expected {
    v4: BTreeSet<Ipv4Addr>,
    v6: BTreeSet<Ipv6Addr>,
    known: bool,
}

fn expected(stack: &Stack) -> Expected {
    let mut e = Expected::default();
    for h in &stack.hosts {
        if !h.roles.is_empty() && !h.roles.iter().any(|r| r == "proxy") {
            continue;
        }
        let v4 = h
            .ipv4
            .as_deref()
            .and_then(|s| s.parse().ok())
            .or_else(|| h.address.parse().ok());
        if let Some(v4) = v4 {
            e.v4.insert(v4);
            e.known = true;
        }
        if let Some(v6) = h.ipv6.as_deref().and_then(|s| s.parse().ok()) {
            e.v6.insert(v6);
        }
    }
    e
}

async fn lookup_ips(
    r: &TokioResolver,
    name: &str,
    rt: RecordType,
) -> Result<Vec<IpAddr>, hickory_resolver::ResolveError> {
    match r.lookup(name, rt).await {
        Ok(l) => Ok(l
            .iter()
            .filter_map(|d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn fmt_ips<T: std::fmt::Display>(ips: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = ips.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

async fn reachable(addr: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Runs every check of the stack.
pub async fn run(stack: &Stack, o: &DoctorOptions) -> Report {
    let skip = |g: &str| o.skip.iter().any(|s| s == g);
    let mut checks = Vec::new();
    let exp = expected(stack);
    let res = match resolver(o) {
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
        let ips: Vec<IpAddr> = exp
            .v4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(exp.v6.iter().map(|a| IpAddr::V6(*a)))
            .collect();
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
    }
    for domain in &stack.domains {
        let Some(r) = res.as_ref() else { break };
        if skip("dns") {
            break;
        }
        let a = lookup_ips(r, domain, RecordType::A).await;
        let aaaa = lookup_ips(r, domain, RecordType::AAAA).await;
        let mut ips = Vec::new();
        match a {
            Err(e) => checks.push(Check::fail(
                "dns.a",
                domain,
                format!("lookup failed: {e}"),
                "check the DNS server answers (or pass --dns-server)",
            )),
            Ok(found) => {
                let found_v4: BTreeSet<Ipv4Addr> = found
                    .iter()
                    .filter_map(|i| match i {
                        IpAddr::V4(v) => Some(*v),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                ips.extend(found.iter().copied());
                checks.push(if found_v4.is_empty() {
                    Check::fail(
                        "dns.a",
                        domain,
                        "no A record",
                        format!(
                            "add an A record {domain} -> {} at your DNS provider",
                            if exp.known {
                                fmt_ips(&exp.v4)
                            } else {
                                "the host's public IPv4".into()
                            }
                        ),
                    )
                } else if exp.known && found_v4 != exp.v4 {
                    Check::fail(
                        "dns.a",
                        domain,
                        format!(
                            "A records {} but the stack's hosts are {}",
                            fmt_ips(&found_v4),
                            fmt_ips(&exp.v4)
                        ),
                        format!(
                            "point {domain} at {} only (or fix hosts[].ipv4 in the stack file)",
                            fmt_ips(&exp.v4)
                        ),
                    )
                } else {
                    Check::ok("dns.a", domain, format!("A {}", fmt_ips(&found_v4)))
                });
            }
        }
        match aaaa {
            Err(e) => checks.push(Check::fail(
                "dns.aaaa",
                domain,
                format!("lookup failed: {e}"),
                "check the DNS server answers (or pass --dns-server)",
            )),
            Ok(found) => {
                let found_v6: BTreeSet<Ipv6Addr> = found
                    .iter()
                    .filter_map(|i| match i {
                        IpAddr::V6(v) => Some(*v),
                        IpAddr::V4(_) => None,
                    })
                    .collect();
                ips.extend(found.iter().copied());
                checks.push(if found_v6.is_empty() {
                    if exp.v6.is_empty() {
                        Check::ok("dns.aaaa", domain, "no AAAA record (the hosts have no IPv6)")
                    } else {
                        Check::warn(
                            "dns.aaaa",
                            domain,
                            format!("no AAAA record, but the hosts have IPv6 {}", fmt_ips(&exp.v6)),
                            format!("add AAAA {domain} -> {} to serve IPv6 clients", fmt_ips(&exp.v6)),
                        )
                    }
                } else if exp.v6.is_empty() {
                    Check::fail(
                        "dns.aaaa",
                        domain,
                        format!(
                            "AAAA record {} but no host of the stack has an IPv6 address: IPv6 clients and Let's Encrypt (which prefers IPv6) reach nothing",
                            fmt_ips(&found_v6)
                        ),
                        format!("delete the AAAA record of {domain}, or give the host IPv6 and set hosts[].ipv6 in the stack file"),
                    )
                } else if found_v6 != exp.v6 {
                    Check::fail(
                        "dns.aaaa",
                        domain,
                        format!("AAAA records {} but the hosts' IPv6 are {}", fmt_ips(&found_v6), fmt_ips(&exp.v6)),
                        format!("point the AAAA record of {domain} at {} only", fmt_ips(&exp.v6)),
                    )
                } else {
                    Check::ok("dns.aaaa", domain, format!("AAAA {}", fmt_ips(&found_v6)))
                });
            }
        }
        published.push((domain.clone(), ips));
    }

    if !skip("reach") {
        for (domain, ips) in &published {
            for ip in ips {
                for port in [o.http_port, o.https_port] {
                    let addr = SocketAddr::new(*ip, port);
                    let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
                    let name = format!("reach.{family}");
                    let subject = format!("{domain} {addr}");
                    checks.push(match reachable(addr, o.timeout).await {
                        Ok(d) => Check::ok(&name, &subject, "port answers").with_latency(d),
                        Err(e) => Check::fail(
                            &name,
                            &subject,
                            format!("cannot connect: {e}"),
                            if ip.is_ipv6() {
                                format!("the AAAA record points at {ip} but nothing answers on port {port}: enable IPv6 on the host and open the port (security group / firewall), or delete the AAAA record")
                            } else {
                                format!("open port {port} to the world in the firewall / security group and check Nginx is running")
                            },
                        ),
                    });
                }
            }
        }
    }

    if !skip("caa") {
        if let Some(r) = res.as_ref() {
            for domain in &stack.domains {
                checks.push(caa_check(r, domain, &stack.tls.ca_domain).await);
            }
        }
    }

    if !skip("tls") && stack.tls.enabled && stack.target != Target::Ecs {
        for (domain, ips) in &published {
            let Some(ip) = ips.iter().find(|i| i.is_ipv4()).or(ips.first()) else {
                continue;
            };
            let addr = SocketAddr::new(*ip, o.https_port);
            checks.push(
                match crate::tls::inspect(addr, domain, o.ca_file.as_deref(), o.timeout).await {
                    Ok(info) => crate::health::cert_verdict(domain, &info, o.cert_min_days),
                    Err(e) => Check::fail(
                        "tls.certificate",
                        domain,
                        e.to_string(),
                        "put the certificate (fullchain.pem, privkey.pem) in the stack's cert directory, e.g. from certbot (`fullslack` does not issue certificates yet), and check Nginx serves it on the HTTPS port",
                    ),
                },
            );
        }
    }

    if !skip("clock") {
        checks.push(clock_check(&published, o).await);
    }
    if !skip("ssh") && matches!(stack.target, Target::Ssh | Target::Ec2) {
        checks.extend(ssh_checks(stack, o).await);
    }
    if !skip("docker") {
        checks.push(docker_check(o).await);
    }
    if !skip("aws") && matches!(stack.target, Target::Ec2 | Target::Ecs) {
        checks.push(aws_check(o).await);
    }
    // Say what was skipped on request, so a report never reads "all checks passed" for
    // checks that did not run.
    for group in CHECK_GROUPS.iter().filter(|g| skip(g)) {
        checks.push(Check::skip(group, &stack.name, "skipped (--skip)"));
    }
    Report::new(format!("stack {}", stack.name), checks)
}

async fn caa_check(r: &TokioResolver, domain: &str, ca: &str) -> Check {
    // The relevant CAA set is the one of the closest name that has one (RFC 8659).
    let labels: Vec<&str> = domain.split('.').collect();
    for i in 0..labels.len().saturating_sub(1) {
        let name = labels[i..].join(".");
        match r.lookup(name.as_str(), RecordType::CAA).await {
            Ok(l) => {
                let mut issuers = Vec::new();
                for d in l.iter() {
                    if let RData::CAA(caa) = d {
                        if caa.tag().is_issue() {
                            let value = match caa.value_as_issue() {
                                Ok((Some(n), _)) => n.to_utf8().trim_end_matches('.').to_string(),
                                Ok((None, _)) => ";".to_string(),
                                Err(_) => String::from_utf8_lossy(caa.raw_value()).into_owned(),
                            };
                            issuers.push(value);
                        }
                    }
                }
                if issuers.is_empty() {
                    continue;
                }
                return if issuers.iter().any(|i| i.eq_ignore_ascii_case(ca)) {
                    Check::ok("dns.caa", domain, format!("CAA at {name} allows {ca}"))
                } else {
                    Check::fail(
                        "dns.caa",
                        domain,
                        format!(
                            "CAA at {name} allows only {} , not {ca}",
                            issuers.join(", ")
                        ),
                        format!("add a CAA record: {name} CAA 0 issue \"{ca}\""),
                    )
                };
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => continue,
            Err(e) => {
                return Check::fail(
                    "dns.caa",
                    domain,
                    format!("CAA lookup failed: {e}"),
                    "check the DNS server answers CAA queries (a broken answer blocks issuance)",
                )
            }
        }
    }
    Check::ok(
        "dns.caa",
        domain,
        format!("no CAA record: any CA, including {ca}, may issue"),
    )
}

async fn clock_check(published: &[(String, Vec<IpAddr>)], o: &DoctorOptions) -> Check {
    let Some((domain, ip)) = published
        .iter()
        .find_map(|(d, ips)| ips.iter().find(|i| i.is_ipv4()).map(|ip| (d, *ip)))
    else {
        return Check::skip(
            "clock",
            "host",
            "no published address to compare clocks with",
        );
    };
    let url = format!("http://{}/", SocketAddr::new(ip, o.http_port));
    let client = match reqwest::Client::builder()
        .timeout(o.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return Check::skip("clock", domain, format!("no HTTP client: {e}")),
    };
    let resp = match client
        .head(&url)
        .header("host", domain.as_str())
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Check::skip("clock", domain, format!("no HTTP answer from {url}: {e}")),
    };
    let Some(date) = resp
        .headers()
        .get("date")
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
    else {
        return Check::skip("clock", domain, "the server sent no Date header");
    };
    let now = std::time::SystemTime::now();
    let skew = match now.duration_since(date) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    // Date has one-second resolution.
    if skew.abs() > 30.0 {
        Check::fail(
            "clock",
            domain,
            format!("host clock differs from this machine by {skew:.0} s"),
            "enable NTP on both machines (`timedatectl set-ntp true`); skew breaks tokens and certificates",
        )
    } else {
        Check::ok("clock", domain, format!("skew {skew:.0} s"))
    }
}

fn expand_home(p: &str, home: Option<&PathBuf>) -> PathBuf {
    match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    }
}

async fn ssh_checks(stack: &Stack, o: &DoctorOptions) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(key) = &stack.ssh.identity_file {
        let path = expand_home(key, o.home.as_ref());
        out.push(match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Check::ok("ssh.key", key, format!("{} exists", path.display())),
            _ => Check::fail(
                "ssh.key",
                key,
                format!("{} does not exist", path.display()),
                "create a key with `ssh-keygen -t ed25519` and install it on the host (ssh-copy-id), or fix ssh.identity_file",
            ),
        });
    }
    if stack.hosts.is_empty() {
        out.push(Check::skip(
            "ssh.reach",
            &stack.name,
            "no hosts in the stack file yet (EC2 instances are created by apply)",
        ));
    }
    for h in &stack.hosts {
        let port = h.port.unwrap_or(stack.ssh.port);
        let subject = format!("{}:{port}", h.address);
        let addr = tokio::net::lookup_host((h.address.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next());
        out.push(match addr {
            None => Check::fail(
                "ssh.reach",
                &subject,
                "cannot resolve the host",
                "fix hosts[].address in the stack file",
            ),
            Some(a) => match reachable(a, o.timeout).await {
                Ok(d) => {
                    out.push(Check::ok("ssh.reach", &subject, "SSH port answers").with_latency(d));
                    out.push(ssh_login(stack, h, o).await);
                    continue;
                }
                Err(e) => Check::fail(
                    "ssh.reach",
                    &subject,
                    format!("cannot connect: {e}"),
                    format!("open port {port} to this machine's address and check sshd runs"),
                ),
            },
        });
    }
    out
}

/// Logs in for real (strict host key checking) and runs `true`.
async fn ssh_login(stack: &Stack, h: &crate::stack::Host, o: &DoctorOptions) -> Check {
    use crate::runner::{Runner, SshRunner, SshTarget};
    let user = h.user.clone().unwrap_or_else(|| stack.ssh.user.clone());
    let port = h.port.unwrap_or(stack.ssh.port);
    let subject = format!("{user}@{}:{port}", h.address);
    let mut t = SshTarget::new(h.address.clone(), user, port);
    t.identity_file = stack
        .ssh
        .identity_file
        .as_deref()
        .map(|k| expand_home(k, o.home.as_ref()));
    t.known_hosts = stack
        .ssh
        .known_hosts
        .as_deref()
        .map(|k| expand_home(k, o.home.as_ref()));
    t.connect_timeout = o.timeout;
    t.control_dir = Some(std::env::temp_dir());
    let started = Instant::now();
    let attempt = async {
        let r = SshRunner::connect(&t).await?;
        let res = r.check(&crate::commands::Cmd::new("true")).await;
        let _ = r.close().await;
        res
    };
    match tokio::time::timeout(o.timeout * 3, attempt).await {
        Ok(Ok(_)) => Check::ok("ssh.login", &subject, "logged in with the key, host key known")
            .with_latency(started.elapsed()),
        Ok(Err(e)) => Check::fail(
            "ssh.login",
            &subject,
            e.to_string(),
            format!(
                "install your public key on the host (ssh-copy-id -p {port} {}) and record its host key (ssh-keyscan -p {port} {} >> ~/.ssh/known_hosts, after checking the fingerprint)",
                h.address, h.address
            ),
        ),
        Err(_) => Check::fail(
            "ssh.login",
            &subject,
            "SSH login did not finish in time",
            "check the host's sshd and your network; rerun with -v",
        ),
    }
}

async fn docker_check(o: &DoctorOptions) -> Check {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = o.docker_socket.display().to_string();
    let attempt = async {
        let mut s = tokio::net::UnixStream::connect(&o.docker_socket).await?;
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match tokio::time::timeout(o.timeout, attempt).await {
        Ok(Ok(resp)) if resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200") => {
            Check::ok("docker", &sock, "Docker Engine answers /_ping")
        }
        Ok(Ok(resp)) => Check::fail(
            "docker",
            &sock,
            format!("unexpected answer: {}", resp.lines().next().unwrap_or("")),
            "restart the Docker Engine (`systemctl restart docker`)",
        ),
        Ok(Err(e)) => Check::fail(
            "docker",
            &sock,
            format!("cannot reach the Docker Engine: {e}"),
            "install and start Docker, and make sure your user may use the socket (group docker), or set DOCKER_HOST",
        ),
        Err(_) => Check::fail(
            "docker",
            &sock,
            "the Docker Engine did not answer in time",
            "restart the Docker Engine",
        ),
    }
}

/// Credentials as the commands will find them: the SDK's default chain (environment, profile
/// files with SSO, web identity, container and instance roles), no AWS API call.
async fn aws_check(o: &DoctorOptions) -> Check {
    match fullslack_aws::config::find_credentials(o.home.as_deref()).await {
        Ok(provider) => Check::ok(
            "aws",
            &provider,
            "credentials found by the AWS SDK's default chain",
        ),
        Err(e) => Check::fail(
            "aws",
            "credential chain",
            e.to_string(),
            "run `aws configure` (or `aws sso login --profile NAME` and set AWS_PROFILE), export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a web identity, container or instance role is available",
        ),
    }
}

/// Whether the report has a failure.
pub fn failed(r: &Report) -> bool {
    r.checks.iter().any(|c| c.outcome == Outcome::Fail)
}
