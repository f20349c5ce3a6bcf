//! The certificate each domain serves (trust, names, days left) and the host's clock, both
//! on the addresses DNS publishes: what breaks sign-in and TLS when it drifts or expires.

use std::net::{IpAddr, SocketAddr};

use super::DoctorOptions;
use crate::check::Check;

/// The certificate served on the HTTPS port of each domain (its first IPv4 address).
pub(super) async fn certificate_checks(
    published: &[(String, Vec<IpAddr>)],
    o: &DoctorOptions,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for (domain, ips) in published {
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
    checks
}

/// The host's clock against this machine's, from the Date header of an HTTP answer.
pub(super) async fn clock_check(published: &[(String, Vec<IpAddr>)], o: &DoctorOptions) -> Check {
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
