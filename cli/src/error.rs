//! The CLI's error: every variant knows the hint that tells the user the fix.

use std::path::PathBuf;

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
            CliError::Usage { hint, .. } => Some(hint.clone()),
            CliError::ChecksFailed(_) => None,
        }
    }

    /// Process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage { .. } => 2,
            CliError::PendingChanges => 2,
            _ => 1,
        }
    }
}
