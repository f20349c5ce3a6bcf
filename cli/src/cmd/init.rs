//! `fullslack init`: writes the commented stack file template to start from; with
//! `--ci github`, also the GitHub Actions workflows that deploy and check that stack
//! ([`crate::workflows`]).

use std::path::{Path, PathBuf};

use super::{usage, write_file};
use crate::args::InitArgs;
use crate::error::CliError;
use crate::output::Reporter;
use crate::stack;

/// Where `--ci github` writes, relative to the current directory (the repository's root).
const WORKFLOW_DIR: &str = ".github/workflows";

/// Writes [`stack::INIT_TEMPLATE`] (refusing to overwrite without `--force`), then with `--ci`
/// the workflows for the stack at that path.
pub fn run(a: &InitArgs, r: &Reporter) -> Result<(), CliError> {
    let mut written: Vec<PathBuf> = Vec::new();
    if a.ci.is_none() || !a.path.exists() {
        refuse_overwrite(&a.path, a.force)?;
        write_file(&a.path, stack::INIT_TEMPLATE)?;
        written.push(a.path.clone());
    }
    if a.ci.is_some() {
        written.extend(write_workflows(&a.path, a.from_source, a.force)?);
    }
    if r.json {
        r.print_json(&serde_json::json!({ "written": written }));
    } else {
        for p in &written {
            println!("wrote {}", p.display());
        }
        println!(
            "next: edit {}, then run `fullslack stack check --stack {}`",
            a.path.display(),
            a.path.display()
        );
        if a.ci.is_some() {
            println!("the workflows' header lists the repository secrets and variables they read");
        }
    }
    Ok(())
}

fn refuse_overwrite(path: &Path, force: bool) -> Result<(), CliError> {
    if path.exists() && !force {
        return Err(usage(
            format!("{} already exists", path.display()),
            "pass --force to overwrite it, or give another path",
        ));
    }
    Ok(())
}

/// Renders the workflows for the stack file at `stack_path` into [`WORKFLOW_DIR`].
fn write_workflows(stack_path: &Path, source: bool, force: bool) -> Result<Vec<PathBuf>, CliError> {
    let rel = stack_path
        .to_str()
        .filter(|p| stack_path.is_relative() && !p.is_empty());
    let Some(rel) = rel else {
        return Err(usage(
            format!("{} is not a path inside the repository", stack_path.display()),
            "run `fullslack init --ci github` at the repository's root with the stack file's relative path",
        ));
    };
    let s = stack::load(stack_path)?;
    let params = crate::workflows::WorkflowParams::of(&s, rel, source);
    let files = crate::workflows::render(&params).map_err(|e| CliError::Failed {
        message: format!("cannot render the workflows: {e}"),
        hint: "report this bug".into(),
    })?;
    let dir = Path::new(WORKFLOW_DIR);
    for (name, _) in &files {
        refuse_overwrite(&dir.join(name), force)?;
    }
    std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
        action: "cannot create",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        write_file(&path, &text)?;
        written.push(path);
    }
    Ok(written)
}
