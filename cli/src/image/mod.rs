//! Container images of the chat server, built and pushed through the Docker Engine API
//! (bollard), never by shelling out to the `docker` CLI.
//!
//! - [`context`]: build contexts as tar streams, honouring `.dockerignore`.
//! - [`offline`]: the FROM-scratch context packing a prebuilt binary, exactly the shared
//!   libraries `ldd` reports, the dynamic loader and the health-check probe.
//! - [`tag`]: tags (`<git short sha>-<UTC timestamp>`), OCI labels, reference checks.
//! - [`build`]: `POST /build` with step progress; a failing step is named in the error.
//! - [`push`]: `POST /images/{name}/push` with [`push::RegistryAuth`], retries on transient
//!   errors, failures classified as auth / name / network.
//! - [`events`]: progress bars on a terminal, one JSON object per line with `--json`.
//!
//! The `fullslack build` / `fullslack push` commands that drive these are in
//! [`crate::cmd::build`] and [`crate::cmd::push`].
//!
//! The `fullslack-healthcheck` binary (`healthcheck.rs` here) is the image's HEALTHCHECK.

pub mod build;
pub mod context;
pub mod events;
pub mod offline;
pub mod push;
pub mod tag;

use bollard::Docker;

/// Default repository of built images.
pub const DEFAULT_IMAGE: &str = "fullslack/chat";

/// Why a push (or pull) failed: decides the hint and whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The registry refused the credentials (or none were given).
    Auth,
    /// The image or repository name is wrong, or the image does not exist locally.
    Name,
    /// The registry could not be reached or answered with a server error.
    Network,
    /// Anything else the engine reported.
    Other,
}

impl FailureKind {
    /// Short name shown in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Auth => "auth",
            FailureKind::Name => "name",
            FailureKind::Network => "network",
            FailureKind::Other => "other",
        }
    }
}

/// Errors of image building and pushing.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The Docker Engine could not be reached or refused the request.
    #[error("Docker Engine: {0}")]
    Engine(String),
    /// The build context could not be assembled.
    #[error("build context: {0}")]
    Context(String),
    /// The binary to pack is missing or unusable.
    #[error("{0}")]
    Binary(String),
    /// A Dockerfile step failed.
    #[error("build failed at {step}: {message}")]
    BuildFailed {
        /// The failing step as the engine printed it (`Step 2/5 : COPY …`).
        step: String,
        /// The engine's error.
        message: String,
    },
    /// A push failed (after retries, if the failure was transient).
    #[error("push of {reference} failed ({kind}): {message}", kind = kind.as_str())]
    PushFailed {
        /// What was pushed.
        reference: String,
        /// Classification.
        kind: FailureKind,
        /// The engine's or registry's message.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A pull failed.
    #[error("pull of {reference} failed ({kind}): {message}", kind = kind.as_str())]
    PullFailed {
        /// What was pulled.
        reference: String,
        /// Classification.
        kind: FailureKind,
        /// The engine's or registry's message.
        message: String,
    },
    /// An image reference or tag that the engine would refuse.
    #[error("invalid image reference `{reference}`: {reason}")]
    BadReference {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
}

impl ImageError {
    /// The fix, shown under the error.
    pub fn hint(&self) -> String {
        match self {
            ImageError::Engine(_) => "is the Docker Engine running and is its socket readable? \
                 `docker info` should answer; DOCKER_HOST selects another engine"
                .into(),
            ImageError::Context(_) => {
                "check the context directory and its .dockerignore patterns".into()
            }
            ImageError::Binary(_) => "build it first: `cargo build --release -p fullslack-chat` \
                 (or pass --binary PATH)"
                .into(),
            ImageError::BuildFailed { .. } => {
                "fix that Dockerfile step; the lines above show its output".into()
            }
            ImageError::PushFailed { kind, .. } | ImageError::PullFailed { kind, .. } => match kind
            {
                FailureKind::Auth => "check the registry user name and password \
                         (--username, --password-env or [image] username/password in the \
                         stack file); for ECR the token expires after 12 hours"
                    .into(),
                FailureKind::Name => "check the image reference: REGISTRY/REPOSITORY:TAG, \
                         lower-case repository; the local image must exist (`fullslack build`)"
                    .into(),
                FailureKind::Network => "check that the registry host and port are right \
                         and reachable from the Docker Engine (a plain-HTTP registry must be on \
                         127.0.0.0/8 or listed in the engine's insecure-registries)"
                    .into(),
                FailureKind::Other => "see the registry's message above".into(),
            },
            ImageError::BadReference { .. } => "names are lower-case `a-z 0-9 . _ -` separated \
                 by `/`, optionally after `HOST[:PORT]/`; tags are `A-Z a-z 0-9 _ . -`, at most \
                 128 characters"
                .into(),
        }
    }
}

/// Connects to the Docker Engine (`DOCKER_HOST` if set: `unix://` or `tcp://`; else the local
/// socket) and negotiates the API version, so engines older than bollard's default (this
/// machine's 20.10 speaks 1.41) answer too.
pub async fn connect() -> Result<Docker, ImageError> {
    let docker = match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => Docker::connect_with_host(&h),
        _ => Docker::connect_with_local_defaults(),
    }
    .map_err(|e| ImageError::Engine(e.to_string()))?;
    // Pushes of large layers outlive bollard's 2-minute default request timeout.
    let docker = docker.with_timeout(std::time::Duration::from_secs(3600));
    docker
        .negotiate_version()
        .await
        .map_err(|e| ImageError::Engine(e.to_string()))
}

/// Classifies an engine or registry error message (the engine only passes text on).
pub fn classify(message: &str) -> FailureKind {
    let m = message.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if any(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "access denied",
        "denied:",
        "incorrect username or password",
        "401 unauthorized",
        "403 forbidden",
    ]) {
        FailureKind::Auth
    } else if any(&[
        "invalid reference format",
        "repository name must",
        "name unknown",
        "name_invalid",
        "does not exist locally",
        "no such image",
        "manifest unknown",
        "not found: manifest",
        "invalid tag",
    ]) {
        FailureKind::Name
    } else if any(&[
        "connection refused",
        "connection reset",
        "no such host",
        "i/o timeout",
        "timeout",
        "dial tcp",
        "network is unreachable",
        "unexpected eof",
        ": eof",
        "server gave http response to https client",
        "tls handshake",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway timeout",
        "500 internal server error",
        "toomanyrequests",
        "429",
    ]) {
        FailureKind::Network
    } else {
        FailureKind::Other
    }
}

/// Whether retrying can help: network trouble and server errors, never auth or name errors.
pub fn is_transient(message: &str) -> bool {
    classify(message) == FailureKind::Network
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_engine_messages() {
        assert_eq!(
            classify("unauthorized: authentication required"),
            FailureKind::Auth
        );
        assert_eq!(
            classify(
                "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"
            ),
            FailureKind::Network
        );
        assert_eq!(
            classify("An image does not exist locally with the tag: x/y"),
            FailureKind::Name
        );
        assert_eq!(
            classify("invalid reference format: repository name must be lowercase"),
            FailureKind::Name
        );
        assert_eq!(
            classify("received unexpected HTTP status: 503 Service Unavailable"),
            FailureKind::Network
        );
        assert_eq!(classify("something odd"), FailureKind::Other);
        assert!(is_transient("dial tcp: i/o timeout"));
        assert!(!is_transient("unauthorized: authentication required"));
    }
}
