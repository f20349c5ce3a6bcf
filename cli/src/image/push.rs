//! `POST /images/{name}/push` (and pull back) through bollard, with credentials for any
//! registry: [`RegistryAuth`] is what ECR's `get_authorization_token` yields too (user `AWS`,
//! the token as password), so the AWS side only has to produce one.
//!
//! Transient failures (network, 5xx, rate limits) are retried with exponential backoff;
//! auth and name failures fail at once. Every failure is classified (auth / name / network)
//! so the error carries the right hint.
//!
//! Layer progress: bollard 0.21's `PushImageInfo` drops the engine's layer id, so bars are
//! keyed by each layer's size (`progressDetail.total`), which tells the layers of one image
//! apart in practice; statuses without a size (`Preparing`, `Pushed`, `Layer already exists`)
//! are counted, not attributed.

use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptions, PushImageOptions};
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::json;

use super::events::Events;
use super::tag::split_reference;
use super::{classify, FailureKind, ImageError};
use crate::secret::ExposeSecret;

/// Registry credentials: the workspace's one type, the AWS crate's (ECR hands out the same
/// shape), re-exported for the callers of [`push`] and [`pull`].
pub use fullslack_aws::ecr::RegistryAuth;

/// The engine's credential header. The only place the password leaves its [`SecretString`].
fn credentials(auth: &RegistryAuth) -> DockerCredentials {
    DockerCredentials {
        username: Some(auth.username.clone()),
        password: Some(auth.password.expose_secret().to_string()),
        serveraddress: Some(auth.server.clone()),
        ..Default::default()
    }
}

/// Retry policy for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled after each failure.
    pub initial_delay: Duration,
    /// Upper bound of one wait.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// The wait after failed attempt `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

/// A pushed image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// What was pushed.
    pub reference: String,
    /// The manifest digest the registry stored (`sha256:…`), if the engine reported it.
    pub digest: Option<String>,
    /// Layers uploaded in this push.
    pub layers_pushed: u32,
    /// Layers the registry already had.
    pub layers_existing: u32,
    /// Attempts it took.
    pub attempts: u32,
}

struct Failure {
    message: String,
}

async fn push_once(
    docker: &Docker,
    reference: &str,
    auth: Option<&RegistryAuth>,
    ev: &Events,
) -> Result<Pushed, Failure> {
    let (name, tag) = split_reference(reference);
    let options = PushImageOptions {
        tag: Some(tag.unwrap_or("latest").to_string()),
        ..Default::default()
    };
    let mut stream = docker.push_image(name, Some(options), auth.map(credentials));
    let mut pushed = 0;
    let mut existing = 0;
    let mut digest = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(Failure { message: error })
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                return Err(Failure { message })
            }
            Err(e) => {
                return Err(Failure {
                    message: e.to_string(),
                })
            }
        };
        let status = info.status.unwrap_or_default();
        let progress = info
            .progress_detail
            .and_then(|p| Some((p.current?, p.total?)))
            .filter(|(_, t)| *t > 0);
        match (status.as_str(), progress) {
            ("Pushing", Some((cur, total))) => {
                let key = format!("{total}");
                let pb = ev.layer_bar(&key, total as u64);
                pb.set_position(cur as u64);
                if ev.is_json() {
                    ev.emit(
                        "push.progress",
                        json!({"layer_size": total, "current": cur}),
                        None,
                    );
                }
            }
            ("Pushed", _) => {
                pushed += 1;
                ev.emit("push.layer", json!({"status": "pushed"}), None);
            }
            ("Layer already exists", _) => {
                existing += 1;
                ev.emit("push.layer", json!({"status": "exists"}), None);
            }
            (s, _) if s.contains("digest: sha256:") => {
                digest = s
                    .split_whitespace()
                    .skip_while(|w| *w != "digest:")
                    .nth(1)
                    .map(str::to_string);
            }
            _ => {}
        }
    }
    ev.finish_layers();
    Ok(Pushed {
        reference: reference.to_string(),
        digest,
        layers_pushed: pushed,
        layers_existing: existing,
        attempts: 1,
    })
}

/// Pushes `reference` (`registry/name:tag`), retrying transient failures.
pub async fn push(
    docker: &Docker,
    reference: &str,
    auth: Option<&RegistryAuth>,
    retry: Retry,
    ev: &Events,
) -> Result<Pushed, ImageError> {
    // A reference the engine does not have would otherwise fail with a less direct message.
    if let Err(e) = docker.inspect_image(reference).await {
        return Err(ImageError::PushFailed {
            reference: reference.to_string(),
            kind: FailureKind::Name,
            message: format!("no local image {reference}: {e}"),
            attempts: 0,
        });
    }
    ev.emit(
        "push.start",
        json!({"reference": reference, "registry": auth.map(|a| a.server.clone())}),
        Some(&format!("pushing {reference}")),
    );
    let attempts = retry.attempts.max(1);
    let mut n = 0;
    loop {
        n += 1;
        match push_once(docker, reference, auth, ev).await {
            Ok(mut p) => {
                p.attempts = n;
                return Ok(p);
            }
            Err(f) => {
                ev.finish_layers();
                let kind = classify(&f.message);
                let transient = kind == FailureKind::Network;
                if !transient || n >= attempts {
                    return Err(ImageError::PushFailed {
                        reference: reference.to_string(),
                        kind,
                        message: f.message,
                        attempts: n,
                    });
                }
                let wait = retry.delay(n);
                ev.emit(
                    "push.retry",
                    json!({"attempt": n, "error": f.message, "kind": kind.as_str(), "wait_ms": wait.as_millis() as u64}),
                    Some(&format!(
                        "push attempt {n} failed ({}): {}; retrying in {:.1}s",
                        kind.as_str(),
                        f.message,
                        wait.as_secs_f64()
                    )),
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Pulls `reference` from its registry (`POST /images/create?fromImage=`).
pub async fn pull(
    docker: &Docker,
    reference: &str,
    auth: Option<&RegistryAuth>,
) -> Result<(), ImageError> {
    let (name, tag) = split_reference(reference);
    let options = CreateImageOptions {
        from_image: Some(name.to_string()),
        tag: Some(tag.unwrap_or("latest").to_string()),
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(options), None, auth.map(credentials));
    while let Some(item) = stream.next().await {
        let message = match item {
            Ok(info) => match info.error_detail.and_then(|d| d.message) {
                Some(m) => m,
                None => continue,
            },
            Err(bollard::errors::Error::DockerStreamError { error }) => error,
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => message,
            Err(e) => e.to_string(),
        };
        return Err(ImageError::PullFailed {
            reference: reference.to_string(),
            kind: classify(&message),
            message,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry {
            attempts: 5,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(3),
        };
        assert_eq!(r.delay(1), Duration::from_millis(500));
        assert_eq!(r.delay(2), Duration::from_secs(1));
        assert_eq!(r.delay(3), Duration::from_secs(2));
        assert_eq!(r.delay(4), Duration::from_secs(3));
        assert_eq!(r.delay(40), Duration::from_secs(3));
    }

    #[test]
    fn auth_debug_never_shows_the_password() {
        let a = RegistryAuth {
            server: "127.0.0.1:5000".into(),
            username: "u".into(),
            password: SecretString::from("s3cr3t-pass"),
        };
        assert!(!format!("{a:?}").contains("s3cr3t"));
    }
}
