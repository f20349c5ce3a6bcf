//! `fullslack init`: writes the commented stack file template to start from.

use super::{usage, write_file};
use crate::args::InitArgs;
use crate::error::CliError;
use crate::output::Reporter;
use crate::stack;

/// Writes [`stack::INIT_TEMPLATE`], refusing to overwrite without `--force`.
pub fn run(a: &InitArgs, r: &Reporter) -> Result<(), CliError> {
    if a.path.exists() && !a.force {
        return Err(usage(
            format!("{} already exists", a.path.display()),
            "pass --force to overwrite it, or give another path",
        ));
    }
    write_file(&a.path, stack::INIT_TEMPLATE)?;
    if r.json {
        r.print_json(&serde_json::json!({"written": a.path}));
    } else {
        println!(
            "wrote {}: edit it, then run `fullslack stack check --stack {}`",
            a.path.display(),
            a.path.display()
        );
    }
    Ok(())
}
