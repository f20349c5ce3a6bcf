//! Spawning the real `fullslack-chat` binary: the caller builds the command (its path is
//! `env!("CARGO_BIN_EXE_fullslack-chat")`, known only inside the chat server's tests), this
//! starts it with stderr to a log file and waits for the URL it prints first.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use crate::process::ProcessGuard;

/// What the binary prints first (then the URL).
const LISTENING: &str = "fullslack-chat listening on ";

/// The base URL (`http://IP:PORT`, no trailing slash) in the line the binary prints first.
pub fn base_url(first_line: &str) -> Option<String> {
    let url = first_line.trim().strip_prefix(LISTENING)?;
    Some(url.trim_end_matches('/').to_string())
}

/// A running `fullslack-chat`.
pub struct SpawnedServer {
    /// `http://IP:PORT`.
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub process: ProcessGuard,
}

/// Starts `cmd` (told to listen on `127.0.0.1:0`) and waits up to `timeout` for its URL line.
/// The rest of stdout is drained so the process never blocks on a full pipe. On failure: the
/// log, to print.
pub async fn spawn_chat_server(
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
) -> Result<SpawnedServer, String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("server log: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("spawn fullslack-chat: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let process = ProcessGuard::new(child);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let base = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(line)) => base_url(&line),
        _ => None,
    };
    let Some(base) = base else {
        drop(process);
        return Err(std::fs::read_to_string(log).unwrap_or_default());
    };
    let addr = base
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| format!("URL {base:?} is not http://IP:PORT: {e}"))?;
    Ok(SpawnedServer {
        base,
        addr,
        process,
    })
}
