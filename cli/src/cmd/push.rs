//! `fullslack push`: pushes a local image (or the stack's last build) to a registry, tagged
//! under the target name first; credentials from the flags, the stack's `[image]`, or fresh
//! ECR ones; transient failures retried, and the tags this run added removed if it fails.
//!
//! [`push_release`] is the same push as `deploy` runs it for a stack with a registry: the
//! release's image under the stack's repository and the release's tag, once, before any host
//! or task pulls it; skipped when the registry already has that tag at the local image's
//! digest (one manifest `HEAD`; when that cannot be asked the push runs, and a push of layers
//! the registry has uploads nothing).

use std::time::Duration;

use bollard::Docker;

use super::usage;
use crate::args::PushArgs;
use crate::error::CliError;
use crate::image::events::Events;
use crate::image::push::{push, RegistryAuth, Retry};
use crate::image::tag::{check_tag, split_reference, Repository};
use crate::image::{FailureKind, ImageError};
use crate::output::Reporter;
use crate::secret::{ExposeSecret, SecretRef, SecretString};
use crate::stack::Stack;

/// What a deploy did with the release's image: the reference the hosts or tasks pull, its
/// digest in the registry, and whether it was pushed now or was there already.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseImage {
    /// `registry/name:tag`.
    pub reference: String,
    /// The manifest digest the registry has (`sha256:…`), when known.
    pub digest: Option<String>,
    /// `pushed`, or `already there` (the registry had the tag at this digest: no push).
    pub result: &'static str,
    /// Layers uploaded.
    pub layers_pushed: u32,
    /// Layers the registry already had.
    pub layers_existing: u32,
}

impl std::fmt::Display for ReleaseImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self
            .digest
            .as_deref()
            .map(|d| format!("@{d}"))
            .unwrap_or_default();
        if self.result == "pushed" {
            write!(
                f,
                "pushed {}{at} ({} layer(s) uploaded, {} already there)",
                self.reference, self.layers_pushed, self.layers_existing
            )
        } else {
            write!(
                f,
                "{}{at} already in the registry: not pushed",
                self.reference
            )
        }
    }
}

/// Pushes the release's image (`local`, tagged `tag`) to the stack's registry (ECR with fresh
/// credentials, or `image.registry` with the stack's user name and password), unless the
/// registry has the tag at the same digest already. Nothing goes to stdout (a deploy prints
/// one document with `--json`); progress bars only on a terminal.
pub async fn push_release(
    s: &Stack,
    local: &str,
    tag: &str,
    r: &Reporter,
) -> Result<ReleaseImage, CliError> {
    check_tag(tag)?;
    let (repo, auth) = if s.image.registry.as_deref() == Some("ecr") {
        let (repo, auth) = ecr_target(s).await?;
        (repo, Some(auth))
    } else {
        let repo = Repository::of_stack_image(s.image.registry.as_deref(), &s.image.name)?;
        let auth = stack_auth(s, &repo)?;
        (repo, auth)
    };
    let reference = repo.with_tag(tag);
    let docker = crate::image::connect().await?;
    let local_digest = match docker.inspect_image(local).await {
        Ok(i) => Some(digest_for(
            &i.repo_digests.unwrap_or_default(),
            &repo.name(),
        )),
        Err(_) => None,
    };
    let remote = registry_digest(&repo, tag, auth.as_ref()).await;
    let already_there = match (&local_digest, &remote) {
        // The registry has the tag at the digest this engine last pushed or pulled it at.
        (Some(Some(here)), Some(there)) => here == there,
        // Not here, but in the registry (pushed from elsewhere, e.g. CI): the hosts pull it.
        (None, Some(_)) => true,
        (None, None) => {
            return Err(usage(
                format!("the image {local} is not on this machine, and the registry did not show {reference}"),
                "build it with `fullslack build --stack FILE` (or pull it), or pass the --version of an image the registry has",
            ))
        }
        _ => false,
    };
    if already_there {
        return Ok(ReleaseImage {
            reference,
            digest: remote,
            result: "already there",
            layers_pushed: 0,
            layers_existing: 0,
        });
    }
    let added = tag_locally(&docker, local, std::slice::from_ref(&reference), local).await?;
    let quiet = Reporter {
        json: false,
        color: false,
        progress: r.progress,
    };
    let ev = Events::new(&quiet);
    match push(&docker, &reference, auth.as_ref(), Retry::default(), &ev).await {
        Ok(p) => Ok(ReleaseImage {
            reference,
            digest: p.digest,
            result: "pushed",
            layers_pushed: p.layers_pushed,
            layers_existing: p.layers_existing,
        }),
        Err(e) => {
            remove_tags(&docker, &added).await;
            Err(e.into())
        }
    }
}

/// The digest of `repo_digests` (`name@sha256:…`) under repository `name`.
fn digest_for(repo_digests: &[String], name: &str) -> Option<String> {
    repo_digests
        .iter()
        .filter_map(|d| d.split_once('@'))
        .find(|(n, _)| *n == name)
        .map(|(_, d)| d.to_string())
}

/// The digest the registry has for `repo:tag` (one `HEAD` of the manifest, with basic auth as
/// registries with htpasswd and ECR take it); `None` when the registry does not say (no such
/// tag, Docker Hub's token dance, unreachable): the push then runs and finds out.
async fn registry_digest(
    repo: &Repository,
    tag: &str,
    auth: Option<&RegistryAuth>,
) -> Option<String> {
    let host = repo.registry.as_deref()?;
    // The Docker Engine talks plain HTTP to loopback registries and HTTPS to the rest.
    let loopback =
        host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
    let scheme = if loopback { "http" } else { "https" };
    let url = format!("{scheme}://{host}/v2/{}/manifests/{tag}", repo.path);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    let mut req = client.head(&url).header(
        reqwest::header::ACCEPT,
        "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
    );
    if let Some(a) = auth {
        req = req.basic_auth(&a.username, Some(a.password.expose_secret()));
    }
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.headers()
        .get("docker-content-digest")?
        .to_str()
        .ok()
        .map(str::to_string)
}

/// The stack's registry user name and password (both or neither).
fn stack_auth(s: &Stack, repo: &Repository) -> Result<Option<RegistryAuth>, CliError> {
    match (&s.image.username, &s.image.password) {
        (Some(username), Some(p)) => Ok(Some(RegistryAuth {
            server: repo
                .registry
                .clone()
                .unwrap_or_else(|| "https://index.docker.io/v1/".into()),
            username: username.clone(),
            password: resolve_secret(p)?,
        })),
        (None, None) => Ok(None),
        _ => Err(usage(
            "image.username and image.password go together",
            "set both in the stack file's [image], or neither",
        )),
    }
}

/// Removes the tags a failed push added.
async fn remove_tags(docker: &Docker, added: &[String]) {
    for t in added {
        if let Err(err) = docker
            .remove_image(
                t,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            tracing::warn!(tag = %t, error = %err, "cannot remove the tag of the failed push");
        }
    }
}

/// Pushes the image under every name it should carry.
pub async fn run(a: &PushArgs, r: &Reporter) -> Result<(), CliError> {
    let stack = a.stack.load()?;
    let image = image_to_push(a, stack.as_ref())?;
    let (name, tag) = split_reference(&image);
    let tag = tag.unwrap_or("latest");
    check_tag(tag)?;
    Repository::parse(name)?;
    let ecr = match &stack {
        Some(s) if a.to.is_none() && s.image.registry.as_deref() == Some("ecr") => {
            Some(ecr_target(s).await?)
        }
        _ => None,
    };
    let target = match (&a.to, &stack, &ecr) {
        (Some(to), _, _) => Some(Repository::parse(to)?),
        (None, _, Some((repo, _))) => Some(repo.clone()),
        (None, Some(s), None) => Some(Repository::of_stack_image(
            s.image.registry.as_deref(),
            &s.image.name,
        )?),
        (None, None, None) => None,
    };
    let reference = match &target {
        Some(t) => t.with_tag(tag),
        None => format!("{name}:{tag}"),
    };
    let repo = Repository::parse(split_reference(&reference).0)?;
    let docker = crate::image::connect().await?;
    // Tag under the target name (and `latest`) first: the engine pushes by name.
    let mut refs = vec![reference.clone()];
    // The stack's own tag too (as `build --stack` set it): the stack's image then names this.
    if let Some(s) = &stack {
        if s.image.tag != tag {
            refs.push(repo.with_tag(&s.image.tag));
        }
    }
    if a.latest && tag != "latest" && !refs.contains(&repo.with_tag("latest")) {
        refs.push(repo.with_tag("latest"));
    }
    let local = format!("{name}:{tag}");
    let added = tag_locally(&docker, &local, &refs, &image).await?;
    let auth = registry_auth(a, stack.as_ref(), &repo, ecr.map(|(_, auth)| auth))?;
    let retry = Retry {
        attempts: a.attempts.max(1),
        initial_delay: Duration::from_millis(a.retry_delay_ms),
        ..Retry::default()
    };
    push_all(&docker, &refs, auth.as_ref(), retry, &added, r).await
}

/// IMAGE, else the stack's last build (`fullslack build --stack`).
fn image_to_push(a: &PushArgs, stack: Option<&Stack>) -> Result<String, CliError> {
    match (&a.image, stack, &a.stack.stack) {
        (Some(i), _, _) => Ok(i.clone()),
        (None, Some(s), Some(path)) => match crate::state::LastBuild::load(path, &s.name)? {
            Some(b) => Ok(b.reference()),
            None => Err(usage(
                format!("stack `{}` has no recorded build", s.name),
                format!(
                    "run `fullslack build --stack {}` first, or name the image: fullslack push IMAGE",
                    path.display()
                ),
            )),
        },
        _ => Err(usage(
            "push needs an image or a stack file",
            "`fullslack push NAME:TAG`, or `fullslack push --stack FILE` for the stack's last build",
        )),
    }
}

/// Tags `local` as each of `refs`; returns the tags this run added (not those that were there
/// before), which a failed push removes again.
async fn tag_locally(
    docker: &Docker,
    local: &str,
    refs: &[String],
    image: &str,
) -> Result<Vec<String>, CliError> {
    let mut added: Vec<String> = Vec::new();
    for rf in refs.iter().filter(|rf| *rf != local) {
        if docker.inspect_image(rf).await.is_err() {
            added.push(rf.clone());
        }
        let (rrepo, rtag) = split_reference(rf);
        docker
            .tag_image(
                local,
                Some(bollard::query_parameters::TagImageOptions {
                    repo: Some(rrepo.to_string()),
                    tag: rtag.map(str::to_string),
                }),
            )
            .await
            .map_err(|e| ImageError::PushFailed {
                reference: image.to_string(),
                kind: FailureKind::Name,
                message: format!("cannot tag {image} as {rf}: {e}"),
                attempts: 0,
            })?;
    }
    Ok(added)
}

/// ECR's credentials, else user name and password from the flags or the stack (both or
/// neither). A password the stack names must resolve even for ECR.
fn registry_auth(
    a: &PushArgs,
    stack: Option<&Stack>,
    repo: &Repository,
    ecr: Option<RegistryAuth>,
) -> Result<Option<RegistryAuth>, CliError> {
    let username = a
        .username
        .clone()
        .or_else(|| stack.and_then(|s| s.image.username.clone()));
    let password = match (
        crate::secret::from_env(&a.password_env),
        stack.and_then(|s| s.image.password.as_ref()),
    ) {
        (Some(p), _) => Some(p),
        (None, Some(sref)) => Some(resolve_secret(sref)?),
        (None, None) => None,
    };
    if ecr.is_some() {
        return Ok(ecr);
    }
    match (username, password) {
        (Some(username), Some(password)) => Ok(Some(RegistryAuth {
            server: repo
                .registry
                .clone()
                .unwrap_or_else(|| "https://index.docker.io/v1/".into()),
            username,
            password,
        })),
        (Some(_), None) => Err(usage(
            format!("a registry user name but no password in {}", a.password_env),
            format!("export {} (or pass --password-env VAR)", a.password_env),
        )),
        (None, Some(_)) => Err(usage(
            "a registry password but no user name",
            "pass --username or set FULLSLACK_REGISTRY_USERNAME",
        )),
        (None, None) => Ok(None),
    }
}

fn resolve_secret(s: &SecretRef) -> Result<SecretString, CliError> {
    match s {
        SecretRef::Env(var) => crate::secret::from_env(var).ok_or_else(|| {
            usage(
                format!("the registry password variable {var} is not set"),
                format!("export {var} before running push"),
            )
        }),
        SecretRef::Ssm(name) => Err(usage(
            format!("the registry password is in SSM ({name})"),
            "export it in an environment variable and pass --password-env VAR",
        )),
    }
}

/// Fresh ECR credentials for the stack (token from `ecr:GetAuthorizationToken`, valid 12 h,
/// never cached), and the repository under the account's registry.
async fn ecr_target(stack: &Stack) -> Result<(Repository, RegistryAuth), CliError> {
    let ecr = crate::aws_spec::ecr_auth(stack).await?;
    let repo = Repository::parse(&format!("{}/{}", ecr.server, stack.image.name))?;
    Ok((repo, ecr))
}

/// Pushes each reference; on a failure, removes the tags this run added.
async fn push_all(
    docker: &Docker,
    refs: &[String],
    auth: Option<&RegistryAuth>,
    retry: Retry,
    added: &[String],
    r: &Reporter,
) -> Result<(), CliError> {
    let ev = Events::new(r);
    for rf in refs {
        let p = match push(docker, rf, auth, retry, &ev).await {
            Ok(p) => p,
            Err(e) => {
                remove_tags(docker, added).await;
                return Err(e.into());
            }
        };
        ev.emit("pushed", serde_json::to_value(&p).unwrap_or_default(), None);
        if !r.json {
            println!(
                "pushed {}{} ({} layer(s) uploaded, {} already there)",
                p.reference,
                p.digest
                    .as_deref()
                    .map(|d| format!("@{d}"))
                    .unwrap_or_default(),
                p.layers_pushed,
                p.layers_existing
            );
        }
    }
    Ok(())
}
