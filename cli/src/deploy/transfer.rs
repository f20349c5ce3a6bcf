//! Getting the release's image onto the host.
//!
//! Without a registry, `docker save` runs here and its tar stream goes over the same SSH
//! connection into `docker load` on the host: nothing is written to disk in between, and the
//! bytes are counted for the report. A host that already has the image (same id) is sent
//! nothing. With a registry, the host logs in (password on stdin) and pulls, always.

use std::process::Stdio;

use super::{Target, Transfer};
use crate::commands::docker;
use crate::error::CliError;
use crate::runner::{RunError, Runner};

/// What the transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sent {
    /// Bytes streamed over the connection.
    pub bytes: u64,
    /// Whether the host already had the image.
    pub skipped: bool,
}

/// The image id the host has for `image`, if any.
pub async fn host_image_id<R: Runner>(r: &R, image: &str) -> Result<Option<String>, CliError> {
    let out = r.run(&docker::image_id(image)).await?;
    Ok(out
        .success()
        .then(|| out.stdout.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// Puts the image on the host; returns the bytes sent.
pub async fn ensure_image<R: Runner>(
    r: &R,
    target: &Target,
    how: &Transfer,
) -> Result<Sent, CliError> {
    let there = host_image_id(r, &target.image).await?;
    // A registry pull always runs: it is cheap when the host has every layer, and it proves
    // the host can pull (credentials, network) before the release depends on it.
    let skip = match how {
        Transfer::Stream { always } => !always && there.is_some() && there == target.image_id,
        Transfer::AlreadyThere => there.is_some(),
        Transfer::Registry { .. } => false,
    };
    if skip {
        return Ok(Sent {
            bytes: 0,
            skipped: true,
        });
    }
    match how {
        Transfer::AlreadyThere => Err(CliError::Failed {
            message: format!(
                "{} no longer has the image {} of this release",
                r.host(),
                target.image
            ),
            hint: "deploy that version again with `fullslack deploy --version TAG` (the host keeps only the last --keep releases' images)".into(),
        }),
        Transfer::Stream { .. } => stream(r, &target.image).await,
        Transfer::Registry {
            server,
            username,
            password,
        } => {
            r.check(&docker::login(server, username, password.clone()))
                .await?;
            r.check(&docker::pull(&target.image)).await?;
            Ok(Sent::default())
        }
    }
}

/// `docker save` here piped into `docker load` there.
async fn stream<R: Runner>(r: &R, image: &str) -> Result<Sent, CliError> {
    let save = docker::save(image);
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(save.to_shell())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RunError::Spawn {
            host: "localhost".into(),
            cmd: save.to_string(),
            source,
        })?;
    let Some(stdout) = child.stdout.take() else {
        return Err(CliError::Failed {
            message: "docker save has no output pipe".into(),
            hint: "this is a bug: please report it".into(),
        });
    };
    let load = docker::load();
    let (out, bytes) = r.run_streaming(&load, stdout).await?;
    let saved = child
        .wait_with_output()
        .await
        .map_err(|source| RunError::Spawn {
            host: "localhost".into(),
            cmd: save.to_string(),
            source,
        })?;
    if !saved.status.success() {
        return Err(RunError::Failed {
            host: "localhost".into(),
            cmd: save.to_string(),
            status: saved.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&saved.stderr).trim().to_string(),
        }
        .into());
    }
    if !out.success() {
        return Err(RunError::Failed {
            host: r.host(),
            cmd: load.to_string(),
            status: out.status,
            stderr: out.stderr.trim().to_string(),
        }
        .into());
    }
    Ok(Sent {
        bytes,
        skipped: false,
    })
}
