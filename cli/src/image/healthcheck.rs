//! `fullslack-healthcheck`: the container HEALTHCHECK probe of chat-server images.
//!
//! An image built FROM scratch has no shell and no curl, and `fullslack-chat` has no probe
//! subcommand, so the image carries this tiny program: it sends `GET /healthz` to the server
//! in the same container and exits 0 on `200`, 1 otherwise. It uses only `std` (no crates) so
//! the multi-stage `cli/templates/Dockerfile` compiles it with a bare `rustc`, and it needs no
//! shared library the server does not already need.
//!
//! The port comes from `FULLSLACK_LISTEN` (the server's own variable, set in the image), or
//! the first argument (`fullslack-healthcheck 127.0.0.1:8080`); default `127.0.0.1:8080`. A
//! wildcard listen address (`0.0.0.0`, `::`) is probed on loopback.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn target() -> Result<SocketAddr, String> {
    let raw = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FULLSLACK_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let mut addr: SocketAddr = raw
        .parse()
        .map_err(|e| format!("`{raw}` is not an address (IP:PORT): {e}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

fn probe(addr: SocketAddr) -> Result<(), String> {
    let timeout = Duration::from_secs(3);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    // HTTP/1.0 with Connection: close: the whole answer ends at EOF, no chunking to parse.
    write!(
        s,
        "GET /healthz HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: fullslack-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut buf = Vec::new();
    s.take(64 * 1024)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("{addr}/healthz answered `{status}`")),
    }
}

fn main() -> ExitCode {
    match target().and_then(probe) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fullslack-healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}
