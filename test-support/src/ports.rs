//! Free loopback ports for servers a test starts.

use std::net::TcpListener;

/// Where picked ports start; they end below the kernel's ephemeral range.
const LOWEST: u16 = 20_000;

/// A port that was free a moment ago. Another process can take it before the server binds it,
/// so callers that spawn a process retry with a new port when it exits early.
///
/// Picked at random below the kernel's ephemeral range, not by binding port 0: a port from
/// that range is where the kernel puts the source port of every outgoing connection, and with
/// dozens of tests connecting at once one of them could take it between this check and the
/// server's bind. Below the range only another test's pick can, at random odds of 1 in ~12,000.
pub fn free_port() -> u16 {
    let below = ephemeral_start().unwrap_or(32_768);
    if below > LOWEST + 1_000 {
        for _ in 0..200 {
            let port = rand::random_range(LOWEST..below);
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// The first port of the kernel's ephemeral range (Linux), if it can be read.
fn ephemeral_start() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`; panics after `timeout`
/// naming the port (for servers whose readiness is their listening socket: nginx, sshd…).
pub fn wait_for_port(port: u16, timeout: std::time::Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_a_bindable_port_below_the_ephemeral_range() {
        let below = ephemeral_start().unwrap_or(32_768);
        let ports: std::collections::HashSet<u16> = (0..20).map(|_| free_port()).collect();
        assert!(ports.len() > 1, "random picks: {ports:?}");
        for port in ports {
            if below > LOWEST + 1_000 {
                assert!(
                    (LOWEST..below).contains(&port),
                    "{port} not in {LOWEST}..{below}"
                );
            }
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }
}
