//! DNS checks: the A/AAAA records of each domain against the addresses the stack's hosts have,
//! and CAA against the CA the stack uses. Also the resolver (the system's, or `--dns-server`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use super::DoctorOptions;
use crate::check::Check;
use crate::stack::Stack;

pub(super) fn resolver(o: &DoctorOptions) -> Result<TokioResolver, hickory_resolver::ResolveError> {
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
pub(super) struct Expected {
    v4: BTreeSet<Ipv4Addr>,
    v6: BTreeSet<Ipv6Addr>,
    known: bool,
}

pub(super) fn expected(stack: &Stack) -> Expected {
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

impl Expected {
    /// The hosts' addresses, IPv4 first: what stands in for DNS when it is skipped.
    pub(super) fn addresses(&self) -> Vec<IpAddr> {
        self.v4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(self.v6.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }
}

/// The A and AAAA checks of a domain, and the addresses it publishes.
pub(super) async fn address_checks(
    r: &TokioResolver,
    domain: &str,
    exp: &Expected,
) -> (Vec<Check>, Vec<IpAddr>) {
    let mut checks = Vec::new();
    let mut ips = Vec::new();
    for (rt, name, check) in [
        (
            RecordType::A,
            "dns.a",
            a_check as fn(&str, &[IpAddr], &Expected) -> Check,
        ),
        (RecordType::AAAA, "dns.aaaa", aaaa_check),
    ] {
        match lookup_ips(r, domain, rt).await {
            Err(e) => checks.push(Check::fail(
                name,
                domain,
                format!("lookup failed: {e}"),
                "check the DNS server answers (or pass --dns-server)",
            )),
            Ok(found) => {
                ips.extend(found.iter().copied());
                checks.push(check(domain, &found, exp));
            }
        }
    }
    (checks, ips)
}

/// The A records found against the hosts' IPv4 addresses.
fn a_check(domain: &str, found: &[IpAddr], exp: &Expected) -> Check {
    let found_v4: BTreeSet<Ipv4Addr> = found
        .iter()
        .filter_map(|i| match i {
            IpAddr::V4(v) => Some(*v),
            IpAddr::V6(_) => None,
        })
        .collect();
    if found_v4.is_empty() {
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
    }
}

/// The AAAA records found against the hosts' IPv6 addresses: a record pointing where no
/// host listens fails (IPv6 clients and Let's Encrypt reach nothing).
fn aaaa_check(domain: &str, found: &[IpAddr], exp: &Expected) -> Check {
    let found_v6: BTreeSet<Ipv6Addr> = found
        .iter()
        .filter_map(|i| match i {
            IpAddr::V6(v) => Some(*v),
            IpAddr::V4(_) => None,
        })
        .collect();
    if found_v6.is_empty() {
        if exp.v6.is_empty() {
            Check::ok(
                "dns.aaaa",
                domain,
                "no AAAA record (the hosts have no IPv6)",
            )
        } else {
            Check::warn(
                "dns.aaaa",
                domain,
                format!(
                    "no AAAA record, but the hosts have IPv6 {}",
                    fmt_ips(&exp.v6)
                ),
                format!(
                    "add AAAA {domain} -> {} to serve IPv6 clients",
                    fmt_ips(&exp.v6)
                ),
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
            format!(
                "AAAA records {} but the hosts' IPv6 are {}",
                fmt_ips(&found_v6),
                fmt_ips(&exp.v6)
            ),
            format!(
                "point the AAAA record of {domain} at {} only",
                fmt_ips(&exp.v6)
            ),
        )
    } else {
        Check::ok("dns.aaaa", domain, format!("AAAA {}", fmt_ips(&found_v6)))
    }
}

/// CAA of the closest name that has one: must allow the stack's CA.
pub(super) async fn caa_check(r: &TokioResolver, domain: &str, ca: &str) -> Check {
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
