//! The placeholder values of the `init` template and the examples (documentation domains
//! and addresses, RFC 2606/6761/5737/3849): a stack still holding one is not ready to deploy,
//! so `stack check` refuses it (loading it for a test or a dry run still works).

use super::diagnostics::{problem, Problem};
use super::{Stack, Target};

/// Domains reserved for documentation (RFC 2606 / 6761): no CA issues for them.
fn placeholder_domain(d: &str) -> bool {
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    ["example.com", "example.net", "example.org"]
        .iter()
        .any(|e| d == *e || d.ends_with(&format!(".{e}")))
        || [".example", ".invalid"].iter().any(|t| d.ends_with(t))
}

/// Addresses reserved for documentation (RFC 5737, RFC 3849): no host has them.
fn placeholder_ip(a: &str) -> bool {
    match a.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            matches!(
                (o[0], o[1], o[2]),
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
            )
        }
        Ok(std::net::IpAddr::V6(v6)) => v6.segments()[..2] == [0x2001, 0x0db8],
        Err(_) => false,
    }
}

/// Values of the `init` template (and the examples) that must be replaced before a deploy.
pub(super) fn placeholders(s: &Stack) -> Vec<Problem> {
    let mut p = Vec::new();
    if s.target != Target::Local {
        for (i, d) in s.domains.iter().enumerate() {
            if placeholder_domain(d) {
                p.push(problem(
                    format!("domains[{i}]"),
                    format!("`{d}` is a placeholder (a documentation domain): no CA issues a certificate for it"),
                    "replace it with your domain, whose A/AAAA records point at the hosts",
                ));
            }
        }
    }
    for (i, h) in s.hosts.iter().enumerate() {
        for (field, value) in [
            ("address", Some(&h.address)),
            ("ipv4", h.ipv4.as_ref()),
            ("ipv6", h.ipv6.as_ref()),
        ] {
            if let Some(v) = value.filter(|v| placeholder_ip(v)) {
                p.push(problem(
                    format!("hosts[{i}].{field}"),
                    format!("`{v}` is a placeholder (a documentation address): no host has it"),
                    "replace it with your host's address (or remove ipv6 if the host has none)",
                ));
            }
        }
    }
    if let Some(email) = &s.tls.acme_email {
        let domain = email.rsplit('@').next().unwrap_or_default();
        if s.tls.enabled && placeholder_domain(domain) {
            p.push(problem(
                "tls.acme_email",
                format!("`{email}` is a placeholder: Let's Encrypt refuses accounts at {domain}"),
                "use an address you read: expiry and problem notices go there",
            ));
        }
    }
    p
}
