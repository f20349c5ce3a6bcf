//! The CLI's error: every variant knows the hint that tells the user the fix.

use std::path::PathBuf;

/// Exit code of a usage error (BSD `EX_USAGE`): wrong flags, unknown subcommand, a file that
/// exists. Kept apart from 2, which `plan` uses for "changes present".
pub const EXIT_USAGE: u8 = 64;

/// Errors surfaced to the user by `fullslack`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Stack file problems.
    #[error(transparent)]
    Stack(#[from] crate::stack::StackError),
    /// Nginx rendering.
    #[error(transparent)]
    Render(#[from] crate::nginx::RenderError),
    /// Running commands.
    #[error(transparent)]
    Run(#[from] crate::runner::RunError),
    /// Image build and push (Docker Engine API).
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// AWS (plan/apply/destroy, secrets, ECR).
    #[error(transparent)]
    Aws(#[from] fullslack_aws::AwsError),
    /// `plan` found changes: exit 2, nothing more to print.
    #[error("the plan has changes")]
    PendingChanges,
    /// Writing or reading a file.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Wrong arguments or state.
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// The fix.
        hint: String,
    },
    /// Checks ran and some failed (already reported).
    #[error("{0} check(s) failed")]
    ChecksFailed(usize),
    /// A failure that is not one of the above (with its fix).
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// The fix.
        hint: String,
    },
    /// Someone else holds the deploy lock.
    #[error("{message}")]
    LockHeld {
        /// Who holds it where, since when and why.
        message: String,
    },
}

impl CliError {
    /// The fix, shown under the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            CliError::Stack(e) => Some(e.hint()),
            CliError::Render(e) => Some(e.hint().into()),
            CliError::Run(e) => Some(e.hint().into()),
            CliError::Image(e) => Some(e.hint()),
            CliError::Aws(e) => Some(e.hint()),
            CliError::PendingChanges => None,
            CliError::Io { action, .. } => Some(match *action {
                "cannot write" => {
                    "check the directory exists and is writable, or pass another path".into()
                }
                _ => "check the path and its permissions".into(),
            }),
            CliError::Usage { hint, .. } | CliError::Failed { hint, .. } => Some(hint.clone()),
            CliError::ChecksFailed(_) => None,
            CliError::LockHeld { .. } => Some(
                "wait for that deploy to finish, or `fullslack lock release` if it died".into(),
            ),
        }
    }

    /// Process exit code: 64 usage errors (as clap's own), 2 only for `plan`'s "changes
    /// present", 1 for every other failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage { .. } => i32::from(EXIT_USAGE),
            CliError::PendingChanges => 2,
            _ => 1,
        }
    }

    /// The `--json` form: `{"error", "hint", "exit_code"}`, and for an invalid stack file the
    /// structured `diagnostics` (`file`, `line`, `column`, `key`, `message`, `fix`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "error": self.to_string(),
            "hint": self.hint(),
            "exit_code": self.exit_code(),
        });
        if let CliError::Stack(crate::stack::StackError::Invalid { path, diagnostics }) = self {
            v["diagnostics"] = diagnostics
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "file": path,
                        "line": d.line,
                        "column": d.column,
                        "key": d.key,
                        "message": d.message,
                        "fix": d.hint,
                    })
                })
                .collect();
        }
        v
    }
}
