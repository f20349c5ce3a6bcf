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
