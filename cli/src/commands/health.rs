//! Health probes run on a host (against a container's loopback port, before Nginx switches).

use super::Cmd;

/// `curl --fail --silent --show-error --max-time T http://127.0.0.1:PORT/PATH`.
pub fn http_probe(port: u16, path: &str, timeout_secs: u64) -> Cmd {
    Cmd::new("curl")
        .args(["--fail", "--silent", "--show-error", "--max-time"])
        .arg(timeout_secs.to_string())
        .arg(format!("http://127.0.0.1:{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_line() {
        assert_eq!(
            http_probe(8100, "/readyz", 5).to_shell(),
            "curl --fail --silent --show-error --max-time 5 http://127.0.0.1:8100/readyz"
        );
        assert_eq!(
            http_probe(8100, "/ready z?x=1&y=2", 5).to_shell(),
            "curl --fail --silent --show-error --max-time 5 'http://127.0.0.1:8100/ready z?x=1&y=2'"
        );
    }
}
