//! `fullslack push`: pushes a local image (or the stack's last build) to a registry, tagged
//! under the target name first; credentials from the flags, the stack's `[image]`, or fresh
//! ECR ones; transient failures retried, and the tags this run added removed if it fails.

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
use crate::secret::{SecretRef, SecretString};
use crate::stack::Stack;

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
