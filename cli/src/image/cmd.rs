//! `fullslack build` and `fullslack push`: flags and what they run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::build::{build, BuildRequest};
use super::events::Events;
use super::push::{push, RegistryAuth, Retry};
use super::tag::{check_tag, split_reference, Provenance, Repository};
use super::{context, offline, ImageError};
use crate::args::StackOpt;
use crate::error::CliError;
use crate::output::Reporter;
use crate::secret::{Secret, SecretRef};

/// Default repository of built images.
pub const DEFAULT_IMAGE: &str = "fullslack/chat";

/// `build` arguments.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Pack a prebuilt binary into an image FROM scratch (no base image, no network): the
    /// binary, the shared libraries `ldd` reports, the loader and the health-check probe.
    #[arg(long)]
    pub offline: bool,
    /// The server binary to pack (--offline) [default: CARGO_TARGET_DIR or
    /// CONTEXT/target, then release/fullslack-chat].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The HEALTHCHECK probe to pack (--offline) [default: fullslack-healthcheck next to
    /// this program].
    #[arg(long, value_name = "PATH", conflicts_with = "no_healthcheck")]
    pub healthcheck_binary: Option<PathBuf>,
    /// Build without a HEALTHCHECK (--offline); leave health checks to the orchestrator.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Drop the binary's symbol table before packing it (--offline; needs binutils `strip`):
    /// ~4 MB smaller, but backtraces lose function names.
    #[arg(long)]
    pub strip: bool,
    /// Build context: the workspace, filtered by its .dockerignore.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub context: PathBuf,
    /// Dockerfile, relative to the context (multi-stage build; ignored with --offline).
    #[arg(long, short = 'f', default_value = "cli/templates/Dockerfile")]
    pub file: String,
    /// Repository to tag, `[REGISTRY/]NAME` [default: the stack's [image], else fullslack/chat].
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,
    /// Take the repository (and the tag to deploy) from this stack file's [image] section,
    /// and record the build for `push --stack` and `deploy`.
    #[command(flatten)]
    pub stack: StackOpt,
    /// Tag (repeat) [default: <git short sha>-<UTC timestamp>].
    #[arg(long, short = 't', value_name = "TAG")]
    pub tag: Vec<String>,
    /// Also tag `latest`.
    #[arg(long)]
    pub latest: bool,
    /// Build argument `KEY=VALUE` (repeat).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_arg: Vec<String>,
    /// Do not reuse the engine's layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Always pull newer base images (multi-stage build).
    #[arg(long)]
    pub pull: bool,
    /// Source URL for the org.opencontainers.image.source label [default: git remote
    /// `origin`, else the context's file:// URL].
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
}

/// `push` arguments.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Local image to push, `NAME:TAG` [default with --stack: the stack's last build].
    pub image: Option<String>,
    /// Push it as `REGISTRY/REPOSITORY` (same tag; tagged locally first) instead of its own
    /// name.
    #[arg(long, value_name = "REGISTRY/REPOSITORY")]
    pub to: Option<String>,
    /// Also push it as `latest`.
    #[arg(long)]
    pub latest: bool,
    /// Registry user name [default: the stack's image.username].
    #[arg(long, env = "FULLSLACK_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Environment variable holding the registry password (never pass it as a flag).
    #[arg(
        long,
        default_value = "FULLSLACK_REGISTRY_PASSWORD",
        value_name = "VAR"
    )]
    pub password_env: String,
    /// Take registry credentials (and `--to`) from this stack file's [image] section; without
    /// IMAGE, push the stack's last build (`fullslack build --stack`).
    #[command(flatten)]
    pub stack: StackOpt,
    /// Attempts in all for transient failures (network, 5xx).
    #[arg(long, default_value_t = 4)]
    pub attempts: u32,
    /// First wait between attempts in milliseconds; doubles each time (max 30 s).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_delay_ms: u64,
}

fn usage(message: impl Into<String>, hint: impl Into<String>) -> CliError {
    CliError::Usage {
        message: message.into(),
        hint: hint.into(),
    }
}

fn target_dir(context: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| context.join("target"))
}

fn default_probe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.with_file_name("fullslack-healthcheck");
    p.exists().then_some(p)
}

fn parse_kv(items: &[String], what: &str) -> Result<HashMap<String, String>, CliError> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(usage(
                format!("{what} `{kv}` is not KEY=VALUE"),
                format!("write it as --{what} KEY=VALUE"),
            )),
        })
        .collect()
}

/// The stack's repository. For `registry = "ecr"` the build tags the plain name (the
/// account's registry host is only known from AWS); `push` adds the host.
fn stack_repository(stack: &crate::stack::Stack) -> Result<Repository, CliError> {
    match stack.image.registry.as_deref() {
        Some("ecr") | None => Ok(Repository::parse(&stack.image.name)?),
        Some(r) => Ok(Repository::parse(&format!("{r}/{}", stack.image.name))?),
    }
}

/// Fresh ECR credentials for the stack (token from `ecr:GetAuthorizationToken`, valid 12 h,
/// never cached) as a [`RegistryAuth`], and the repository under the account's registry.
async fn ecr_target(stack: &crate::stack::Stack) -> Result<(Repository, RegistryAuth), CliError> {
    let ecr = crate::aws_cmd::ecr_auth(stack).await?;
    let repo = Repository::parse(&format!("{}/{}", ecr.server, stack.image.name))?;
    let auth = RegistryAuth {
        server: ecr.server.clone(),
        username: ecr.username.clone(),
        password: Secret::new(ecr.password.expose()),
    };
    Ok((repo, auth))
}

/// Runs `fullslack build`.
pub async fn run_build(a: &BuildArgs, r: &Reporter) -> Result<(), CliError> {
    let started = Instant::now();
    let stack = a
        .stack
        .stack
        .as_deref()
        .map(crate::stack::load)
        .transpose()?;
    let repo = match (&a.image, &stack) {
        (Some(name), _) => Repository::parse(name)?,
        (None, Some(s)) => stack_repository(s)?,
        (None, None) => Repository::parse(DEFAULT_IMAGE)?,
    };
    let prov = Provenance::detect(&a.context, a.source.as_deref());
    let mut tags = if a.tag.is_empty() {
        vec![prov.default_tag()]
    } else {
        a.tag.clone()
    };
    // The stack's own tag (`image.tag`, default `latest`) too: what the stack says it runs
    // is then this build.
    if let Some(s) = &stack {
        if !tags.contains(&s.image.tag) {
            tags.push(s.image.tag.clone());
        }
    }
    if a.latest && !tags.iter().any(|t| t == "latest") {
        tags.push("latest".into());
    }
    for t in &tags {
        check_tag(t)?;
    }
    let refs: Vec<String> = tags.iter().map(|t| repo.with_tag(t)).collect();
    let mut labels = prov.labels();
    labels.insert("org.opencontainers.image.version".into(), tags[0].clone());
    let built_at = labels
        .get("org.opencontainers.image.created")
        .cloned()
        .unwrap_or_default();
    let (ctx, dockerfile, labels) = if a.offline {
        let server = a
            .binary
            .clone()
            .unwrap_or_else(|| target_dir(&a.context).join("release/fullslack-chat"));
        let probe =
            if a.no_healthcheck {
                None
            } else {
                match a.healthcheck_binary.clone().or_else(default_probe) {
                    Some(p) => Some(p),
                    None => return Err(usage(
                        "no fullslack-healthcheck next to this program for the image's HEALTHCHECK",
                        "pass --healthcheck-binary PATH (cargo build -p fullslack builds it) \
                         or --no-healthcheck",
                    )),
                }
            };
        let ctx = offline::context(&offline::OfflineInputs {
            server,
            probe,
            strip: a.strip,
            labels: labels.into_iter().collect(),
        })?;
        // The labels are in the generated Dockerfile, as one instruction.
        (ctx, "Dockerfile".to_string(), HashMap::new())
    } else {
        if !a.context.join(&a.file).is_file() {
            return Err(usage(
                format!("no Dockerfile at {}", a.context.join(&a.file).display()),
                "pass --context DIR (the workspace) and --file PATH inside it, or --offline",
            ));
        }
        (
            context::from_dir(&a.context, &a.file)?,
            a.file.clone(),
            labels,
        )
    };
    let req = BuildRequest {
        context: ctx.finish()?,
        dockerfile,
        tags: refs,
        build_args: parse_kv(&a.build_arg, "build-arg")?,
        labels,
        no_cache: a.no_cache,
        pull: a.pull,
    };
    let docker = super::connect().await?;
    let ev = Events::new(r);
    let built = build(&docker, req, &ev).await?;
    let secs = started.elapsed().as_secs_f64();
    ev.emit(
        "built",
        json!({"id": built.id, "tags": built.tags, "size": built.size, "steps": built.steps,
               "cached_steps": built.cached_steps, "seconds": secs}),
        None,
    );
    if !r.json {
        println!(
            "built {} ({}, {:.1} MB, {} steps, {} cached) in {secs:.1}s",
            built.tags.join(", "),
            short_id(&built.id),
            built.size as f64 / 1e6,
            built.steps,
            built.cached_steps
        );
    }
    if let (Some(s), Some(path)) = (&stack, &a.stack.stack) {
        let record = crate::state::LastBuild {
            repository: repo.name(),
            tag: tags[0].clone(),
            tags: tags.clone(),
            id: built.id.clone(),
            built_at,
        };
        let saved = record.save(path, &s.name)?;
        ev.emit(
            "recorded",
            json!({"stack": s.name, "reference": record.reference(), "path": saved}),
            None,
        );
        if !r.json {
            println!(
                "recorded {} as the last build of stack `{}` (push it with `fullslack push --stack {}`)",
                record.reference(),
                s.name,
                path.display()
            );
        }
    }
    Ok(())
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn resolve_secret(s: &SecretRef) -> Result<Secret, CliError> {
    match s {
        SecretRef::Env(var) => std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
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

/// Runs `fullslack push`.
pub async fn run_push(a: &PushArgs, r: &Reporter) -> Result<(), CliError> {
    let stack = a
        .stack
        .stack
        .as_deref()
        .map(crate::stack::load)
        .transpose()?;
    let image = match (&a.image, &stack, &a.stack.stack) {
        (Some(i), _, _) => i.clone(),
        (None, Some(s), Some(path)) => match crate::state::LastBuild::load(path, &s.name)? {
            Some(b) => b.reference(),
            None => {
                return Err(usage(
                    format!("stack `{}` has no recorded build", s.name),
                    format!(
                        "run `fullslack build --stack {}` first, or name the image: fullslack push IMAGE",
                        path.display()
                    ),
                ))
            }
        },
        _ => {
            return Err(usage(
                "push needs an image or a stack file",
                "`fullslack push NAME:TAG`, or `fullslack push --stack FILE` for the stack's last build",
            ))
        }
    };
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
        (None, Some(s), None) => Some(stack_repository(s)?),
        (None, None, None) => None,
    };
    let reference = match &target {
        Some(t) => t.with_tag(tag),
        None => format!("{name}:{tag}"),
    };
    let repo = Repository::parse(split_reference(&reference).0)?;
    let docker = super::connect().await?;
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
    // Tags this run adds (not those that were there before): a failed push removes them.
    let mut added: Vec<String> = Vec::new();
    for rf in &refs {
        if *rf != format!("{name}:{tag}") {
            if docker.inspect_image(rf).await.is_err() {
                added.push(rf.clone());
            }
            let (rrepo, rtag) = split_reference(rf);
            docker
                .tag_image(
                    &format!("{name}:{tag}"),
                    Some(bollard::query_parameters::TagImageOptions {
                        repo: Some(rrepo.to_string()),
                        tag: rtag.map(str::to_string),
                    }),
                )
                .await
                .map_err(|e| ImageError::PushFailed {
                    reference: image.clone(),
                    kind: super::FailureKind::Name,
                    message: format!("cannot tag {image} as {rf}: {e}"),
                    attempts: 0,
                })?;
        }
    }
    let username = a
        .username
        .clone()
        .or_else(|| stack.as_ref().and_then(|s| s.image.username.clone()));
    let password = match (
        std::env::var(&a.password_env)
            .ok()
            .filter(|v| !v.is_empty()),
        stack.as_ref().and_then(|s| s.image.password.as_ref()),
    ) {
        (Some(p), _) => Some(Secret::new(p)),
        (None, Some(sref)) => Some(resolve_secret(sref)?),
        (None, None) => None,
    };
    let auth = match (username, password) {
        _ if ecr.is_some() => ecr.map(|(_, auth)| auth),
        (Some(username), Some(password)) => Some(RegistryAuth {
            server: repo
                .registry
                .clone()
                .unwrap_or_else(|| "https://index.docker.io/v1/".into()),
            username,
            password,
        }),
        (Some(_), None) => {
            return Err(usage(
                format!("a registry user name but no password in {}", a.password_env),
                format!("export {} (or pass --password-env VAR)", a.password_env),
            ))
        }
        (None, Some(_)) => {
            return Err(usage(
                "a registry password but no user name",
                "pass --username or set FULLSLACK_REGISTRY_USERNAME",
            ))
        }
        (None, None) => None,
    };
    let retry = Retry {
        attempts: a.attempts.max(1),
        initial_delay: Duration::from_millis(a.retry_delay_ms),
        ..Retry::default()
    };
    let ev = Events::new(r);
    for rf in &refs {
        let p = match push(&docker, rf, auth.as_ref(), retry, &ev).await {
            Ok(p) => p,
            Err(e) => {
                for t in &added {
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
