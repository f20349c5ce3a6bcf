//! Command-line arguments shared by several commands, declared once so that they behave the
//! same everywhere: `--stack FILE` / `-s FILE` / `FULLSLACK_STACK` on every command that reads
//! a stack file.

use std::path::PathBuf;

use clap::Args;

/// Environment variable naming the stack file, for every command (CI sets it once).
pub const STACK_ENV: &str = "FULLSLACK_STACK";

/// Default stack file, in the current directory (what `fullslack init` writes).
pub const DEFAULT_STACK: &str = "fullslack.toml";

/// `--stack FILE` for commands that need a stack file.
#[derive(Debug, Args, Clone)]
pub struct StackArg {
    /// Stack file (TOML).
    #[arg(long, short = 's', env = STACK_ENV, default_value = DEFAULT_STACK, value_name = "FILE")]
    pub stack: PathBuf,
}

/// `--stack FILE` for commands that work without one (`health URL`, `build --image`,
/// `push IMAGE`, `apply PLAN`): the same flag, short form and environment variable.
#[derive(Debug, Args, Clone)]
pub struct StackOpt {
    /// Stack file (TOML).
    #[arg(long, short = 's', env = STACK_ENV, value_name = "FILE")]
    pub stack: Option<PathBuf>,
}
