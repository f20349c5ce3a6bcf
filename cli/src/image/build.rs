//! `POST /build` through bollard: streams the engine's output into step progress, names the
//! failing step in the error, tags the result and reports its id and size.
//!
//! The classic builder is used (engines as old as this machine's 20.10 have no BuildKit
//! session support over the plain API); its layer cache is reused between builds unless
//! `no_cache` is set.

use std::collections::HashMap;

use bollard::models::BuildInfo;
use bollard::query_parameters::{BuildImageOptions, TagImageOptions};
use bollard::Docker;
use futures_util::StreamExt;
use indicatif::ProgressBar;
use serde_json::json;

use super::events::Events;
use super::tag::split_reference;
use super::ImageError;

/// What to build.
#[derive(Debug, Default)]
pub struct BuildRequest {
    /// The context tar.
    pub context: Vec<u8>,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// Full references to tag the image with (`registry/name:tag`); at least one.
    pub tags: Vec<String>,
    /// `--build-arg`s.
    pub build_args: HashMap<String, String>,
    /// Labels added to the image.
    pub labels: HashMap<String, String>,
    /// Build without the engine's cache.
    pub no_cache: bool,
    /// Always try to pull newer base images.
    pub pull: bool,
}

/// A built image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Built {
    /// Image id (`sha256:…`).
    pub id: String,
    /// The references it was tagged with.
    pub tags: Vec<String>,
    /// Size in bytes as the engine reports it.
    pub size: i64,
    /// Dockerfile steps run.
    pub steps: u32,
    /// Steps answered from the cache.
    pub cached_steps: u32,
}

/// Parses `Step 3/7 : COPY …` into (3, 7).
pub fn parse_step(line: &str) -> Option<(u32, u32)> {
    let rest = line.strip_prefix("Step ")?;
    let (frac, _) = rest.split_once(" :").unwrap_or((rest, ""));
    let (n, m) = frac.trim().split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

/// Builds and tags the image.
pub async fn build(docker: &Docker, req: BuildRequest, ev: &Events) -> Result<Built, ImageError> {
    let first = req
        .tags
        .first()
        .cloned()
        .ok_or_else(|| ImageError::Context("no tag to build".into()))?;
    let options = BuildImageOptions {
        dockerfile: req.dockerfile.clone(),
        t: Some(first.clone()),
        rm: true,
        forcerm: true,
        nocache: req.no_cache,
        pull: req.pull.then(|| "1".to_string()),
        buildargs: Some(req.build_args.clone()),
        labels: Some(req.labels.clone()),
        ..Default::default()
    };
    let context_bytes = req.context.len();
    ev.emit(
        "build.start",
        json!({"tag": first, "context_bytes": context_bytes, "dockerfile": req.dockerfile}),
        Some(&format!(
            "building {first} (context {:.1} MB)",
            context_bytes as f64 / 1e6
        )),
    );
    let bar = ev.step_bar();
    let stream = docker.build_image(
        options,
        None,
        Some(bollard::body_full(bytes::Bytes::from(req.context))),
    );
    let progress = follow(stream, &bar, ev).await;
    bar.finish_and_clear();
    let progress = progress?;
    let inspect = docker
        .inspect_image(&first)
        .await
        .map_err(|e| ImageError::Engine(format!("inspect {first}: {e}")))?;
    let id = inspect.id.clone().or(progress.id).unwrap_or_default();
    tag_extra(docker, &id, &req.tags[1..]).await?;
    let built = Built {
        id,
        tags: req.tags,
        size: inspect.size.unwrap_or_default(),
        steps: progress.steps,
        cached_steps: progress.cached,
    };
    Ok(built)
}

/// What the engine's output told so far.
#[derive(Default)]
struct Progress {
    /// The step running: a failure names it.
    step_line: String,
    /// Steps run.
    steps: u32,
    /// Steps answered from the cache.
    cached: u32,
    /// The image id, once the engine sent it.
    id: Option<String>,
}

impl Progress {
    /// Shows each output line (a `Step n/m` moves the bar) and counts steps and cache hits.
    fn on_output(&mut self, text: &str, bar: &ProgressBar, ev: &Events) {
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            if let Some((n, m)) = parse_step(line) {
                self.steps = n;
                self.step_line = line.to_string();
                bar.set_length(u64::from(m));
                bar.set_position(u64::from(n));
                bar.set_message(line.to_string());
                ev.emit(
                    "build.step",
                    json!({"step": n, "of": m, "text": line}),
                    (!ev.is_json() && bar.is_hidden()).then_some(line),
                );
            } else {
                if line.trim() == "---> Using cache" {
                    self.cached += 1;
                }
                ev.emit("build.output", json!({"text": line}), Some(line));
            }
        }
    }
}

/// Follows the build's output stream to its end; a failing step becomes the error.
async fn follow(
    mut stream: impl futures_util::Stream<Item = Result<BuildInfo, bollard::errors::Error>> + Unpin,
    bar: &ProgressBar,
    ev: &Events,
) -> Result<Progress, ImageError> {
    let mut progress = Progress {
        step_line: String::from("the first step"),
        ..Progress::default()
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(aux) = info.aux.and_then(|a| a.id) {
                    progress.id = Some(aux);
                }
                if let Some(text) = info.stream {
                    progress.on_output(&text, bar, ev);
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                bar.finish_and_clear();
                ev.emit(
                    "build.failed",
                    json!({"step": progress.step_line, "error": error}),
                    None,
                );
                return Err(ImageError::BuildFailed {
                    step: progress.step_line,
                    message: error,
                });
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                return Err(ImageError::BuildFailed {
                    step: progress.step_line,
                    message,
                })
            }
            Err(other) => return Err(ImageError::Engine(other.to_string())),
        }
    }
    Ok(progress)
}

/// Tags the built image with the references after the first (which the build itself set).
async fn tag_extra(docker: &Docker, id: &str, tags: &[String]) -> Result<(), ImageError> {
    for extra in tags {
        let (repo, tag) = split_reference(extra);
        docker
            .tag_image(
                id,
                Some(TagImageOptions {
                    repo: Some(repo.to_string()),
                    tag: tag.map(str::to_string),
                }),
            )
            .await
            .map_err(|e| ImageError::Engine(format!("tag {extra}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps() {
        assert_eq!(parse_step("Step 3/7 : COPY rootfs/ /"), Some((3, 7)));
        assert_eq!(parse_step("Step 10/12 : RUN x"), Some((10, 12)));
        assert_eq!(parse_step(" ---> Using cache"), None);
        assert_eq!(parse_step("Step x/y : z"), None);
    }
}
