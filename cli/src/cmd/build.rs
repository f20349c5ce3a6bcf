//! `fullslack build`: the chat server image through the Docker Engine API, multi-stage from
//! the workspace (`--file`) or `--offline` FROM scratch from a prebuilt binary; tags, OCI
//! labels, and with `--stack` the build recorded for `push --stack` and deploys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::usage;
use crate::args::BuildArgs;
use crate::error::CliError;
use crate::image::build::{build, BuildRequest, Built};
use crate::image::events::Events;
use crate::image::tag::{check_tag, Provenance, Repository};
use crate::image::{context, offline, DEFAULT_IMAGE};
use crate::output::Reporter;
use crate::stack::Stack;

/// Builds, tags, and records the build for the stack.
pub async fn run(a: &BuildArgs, r: &Reporter) -> Result<(), CliError> {
    let started = Instant::now();
    let stack = a.stack.load()?;
    let repo = match (&a.image, &stack) {
        (Some(name), _) => Repository::parse(name)?,
        (None, Some(s)) => Repository::of_stack_image(s.image.registry.as_deref(), &s.image.name)?,
        (None, None) => Repository::parse(DEFAULT_IMAGE)?,
    };
    let prov = Provenance::detect(&a.context, a.source.as_deref());
    let tags = tags_of(a, &prov, stack.as_ref())?;
    let refs: Vec<String> = tags.iter().map(|t| repo.with_tag(t)).collect();
    let mut labels = prov.labels();
    labels.insert("org.opencontainers.image.version".into(), tags[0].clone());
    let built_at = labels
        .get("org.opencontainers.image.created")
        .cloned()
        .unwrap_or_default();
    let (ctx, dockerfile, labels) = if a.offline {
        let ctx = offline::context(&offline::OfflineInputs {
            server: a
                .binary
                .clone()
                .unwrap_or_else(|| target_dir(&a.context).join("release/fullslack-chat")),
            probe: healthcheck_probe(a)?,
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
    let docker = crate::image::connect().await?;
    let ev = Events::new(r);
    let built = build(&docker, req, &ev).await?;
    report_built(&built, started, &ev, r);
    if let (Some(s), Some(path)) = (&stack, &a.stack.stack) {
        let record = crate::state::LastBuild {
            repository: repo.name(),
            tag: tags[0].clone(),
            tags: tags.clone(),
            id: built.id.clone(),
            built_at,
        };
        record_build(&record, s, path, &ev, r)?;
    }
    Ok(())
}

/// `--tag`s (or the default `<sha>-<timestamp>`), the stack's own tag, and `latest` if asked;
/// each checked.
fn tags_of(
    a: &BuildArgs,
    prov: &Provenance,
    stack: Option<&Stack>,
) -> Result<Vec<String>, CliError> {
    let mut tags = if a.tag.is_empty() {
        vec![prov.default_tag()]
    } else {
        a.tag.clone()
    };
    // The stack's own tag (`image.tag`, default `latest`) too: what the stack says it runs
    // is then this build.
    if let Some(s) = stack {
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
    Ok(tags)
}

/// The HEALTHCHECK probe to pack (`--offline`): the flag, else the one next to this program.
fn healthcheck_probe(a: &BuildArgs) -> Result<Option<PathBuf>, CliError> {
    if a.no_healthcheck {
        return Ok(None);
    }
    match a.healthcheck_binary.clone().or_else(default_probe) {
        Some(p) => Ok(Some(p)),
        None => Err(usage(
            "no fullslack-healthcheck next to this program for the image's HEALTHCHECK",
            "pass --healthcheck-binary PATH (cargo build -p fullslack builds it) \
             or --no-healthcheck",
        )),
    }
}

fn report_built(built: &Built, started: Instant, ev: &Events, r: &Reporter) {
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
}

/// Saves the build as the stack's last one (`.fullslack/STACK/`), for `push --stack`.
fn record_build(
    record: &crate::state::LastBuild,
    s: &Stack,
    path: &Path,
    ev: &Events,
    r: &Reporter,
) -> Result<(), CliError> {
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
    Ok(())
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

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}
