//! The release a deploy ships and its record on this machine, the same for every target: the
//! image to deploy (`--version TAG`, else the stack's last build) and the local audit log
//! (`.fullslack/<stack>/audit.jsonl`). Shared by the host deploy ([`super::deploy`]) and the
//! ECS deploy (`deploy_ecs`), which otherwise know nothing of each other's steps.

use std::path::Path;

use super::usage;
use crate::commands::docker;
use crate::deploy::releases::AuditEntry;
use crate::deploy::Target;
use crate::error::CliError;
use crate::runner::{LocalRunner, Runner};
use crate::stack::Stack;
use crate::state::LastBuild;

/// Appends one line to `.fullslack/<stack>/audit.jsonl`.
pub(super) fn append_local_audit(
    stack_file: &Path,
    stack: &str,
    e: &AuditEntry,
) -> Result<(), CliError> {
    use std::io::Write;
    let dir = crate::state::dir(stack_file, stack);
    let path = dir.join("audit.jsonl");
    let io = |source| CliError::Io {
        action: "cannot write",
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    f.write_all(e.to_line().as_bytes()).map_err(io)
}

/// The image to deploy: `--version TAG` of the stack's repository (the last build's if there
/// is one), else the last build.
pub(super) async fn image_target(
    stack_file: &Path,
    s: &Stack,
    version: Option<&str>,
) -> Result<Target, CliError> {
    let last = LastBuild::load(stack_file, &s.name)?;
    let (image, version) = match (version, &last) {
        (Some(v), Some(b)) => (format!("{}:{v}", b.repository), v.to_string()),
        (Some(v), None) => {
            let repo = s.image.reference();
            let repo = repo.rsplit_once(':').map_or(repo.as_str(), |(r, _)| r);
            (format!("{repo}:{v}"), v.to_string())
        }
        (None, Some(b)) => (b.reference(), b.tag.clone()),
        (None, None) => {
            return Err(usage(
                format!("no image to deploy for stack `{}`", s.name),
                "build one with `fullslack build --stack FILE`, or pass --version TAG",
            ))
        }
    };
    let here = LocalRunner.run(&docker::image_id(&image)).await?;
    let image_id = here
        .success()
        .then(|| here.stdout.trim().to_string())
        .filter(|id| !id.is_empty());
    Ok(Target {
        image,
        version,
        image_id,
    })
}
