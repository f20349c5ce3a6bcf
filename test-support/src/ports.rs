//! Free loopback ports for servers a test starts.

use std::net::TcpListener;

/// A port that was free a moment ago. Another process can take it before the server binds it,
/// so callers that spawn a process retry with a new port when it exits early.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
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
