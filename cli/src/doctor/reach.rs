//! Reachability: the HTTP and HTTPS ports of every address a domain publishes, IPv4 and
//! IPv6 apart (an AAAA record pointing where nothing listens breaks IPv6 clients).

use std::net::{IpAddr, SocketAddr};

use super::{reachable, DoctorOptions};
use crate::check::Check;

/// One check per published address and port.
pub(super) async fn port_checks(
    published: &[(String, Vec<IpAddr>)],
    o: &DoctorOptions,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for (domain, ips) in published {
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
    checks
}
