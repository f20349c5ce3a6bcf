//! Stack files: one deployment described in TOML, read into the typed [`Stack`] model,
//! validated, and every problem reported at its line and key with the fix.
//!
//! - [`model`] (re-exported here): the file's shape, every table refusing unknown keys, and
//!   [`TargetSettings`], the target with its own table.
//! - [`diagnostics`]: TOML/serde errors → [`Diagnostic`]s (the key from the parsed tree, secret
//!   values never echoed), key paths ↔ line and column, did-you-mean.
//! - [`validate`]: the rules a parsed stack must meet (names, target tables, hosts, services,
//!   TLS, ports, image names, Fargate sizes), and the warnings of a valid one.
//! - [`env`]: the chat server's environment names (misspelt `FULLSLACK_*` names are refused)
//!   and the environment a stack's containers get.
//! - [`services`]: the stack's Redis / MongoDB services: which variable names their URL, and
//!   how a managed one is named and reached on the stack's network.
//! - [`placeholders`]: the documentation domains and addresses of the `init` template, which
//!   `stack check` refuses.
//! - [`aws_names`]: known AWS regions and instance types.

pub mod aws_names;
mod diagnostics;
mod env;
mod model;
mod placeholders;
pub mod services;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use diagnostics::{closest_word, key_at, line_col, locate};
pub use env::{server_env_names, ContainerEnv, JWT_SECRET_ENV, SERVER_ENV_NAMES};
pub use model::*;
pub use validate::warnings;

use diagnostics::Problem;

/// The commented stack file `fullslack init` writes.
pub const INIT_TEMPLATE: &str = include_str!("../../templates/stack.init.toml");

/// One problem in a stack file, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// Dotted key path (`redis.url`, `hosts[1].address`), empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// Errors of the stack boundary.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The file could not be read.
    #[error("cannot read stack file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file has problems.
    #[error("{}", render_diagnostics(path, diagnostics))]
    Invalid {
        /// File.
        path: PathBuf,
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
}

impl StackError {
    /// A hint for the user.
    pub fn hint(&self) -> String {
        match self {
            StackError::Read { .. } => {
                "check the path, or create a stack file with `fullslack init`".into()
            }
            StackError::Invalid { .. } => {
                "fix the keys listed above; `fullslack init` writes a commented example".into()
            }
        }
    }
}

fn render_diagnostics(path: &Path, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let key = if d.key.is_empty() {
            String::new()
        } else {
            format!(" `{}`", d.key)
        };
        out.push_str(&format!(
            "{}:{}:{}:{key} {}\n  fix: {}",
            path.display(),
            d.line,
            d.column,
            d.message,
            d.hint
        ));
    }
    out
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` {} (fix: {})",
            self.line, self.column, self.key, self.message, self.hint
        )
    }
}

/// Reads and validates a stack file.
pub fn load(path: &Path) -> Result<Stack, StackError> {
    let text = std::fs::read_to_string(path).map_err(|source| StackError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|diagnostics| StackError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    })
}

/// Reads and validates a stack file like [`load`], and also refuses the placeholder values of
/// the `init` template and the examples (documentation domains and addresses): what `stack
/// check` runs, so a file fresh from `fullslack init` does not pass as ready.
pub fn check(path: &Path) -> Result<Stack, StackError> {
    let text = std::fs::read_to_string(path).map_err(|source| StackError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |diagnostics| StackError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    };
    let stack = parse(&text).map_err(invalid)?;
    let found = placeholders::placeholders(&stack);
    if found.is_empty() {
        Ok(stack)
    } else {
        Err(invalid(diagnostics(&text, found)))
    }
}

fn diagnostics(text: &str, problems: Vec<Problem>) -> Vec<Diagnostic> {
    problems
        .into_iter()
        .map(|p| {
            let (line, column) = locate(text, &p.key);
            Diagnostic {
                line,
                column,
                key: p.key,
                message: p.message,
                hint: p.hint,
            }
        })
        .collect()
}

/// Parses and validates stack text.
pub fn parse(text: &str) -> Result<Stack, Vec<Diagnostic>> {
    let stack: Stack = match toml::from_str(text) {
        Ok(s) => s,
        Err(e) => return Err(vec![diagnostics::from_toml_error(text, &e)]),
    };
    let problems = validate::validate(&stack);
    if problems.is_empty() {
        return Ok(stack);
    }
    Err(diagnostics(text, problems))
}
