//! Secrets: values that must never reach a log line, a `--dry-run` listing or an error message.
//! A value is the workspace's one secret string, [`SecretString`] (`secrecy`'s, re-exported by
//! the AWS crate too): redacted `Debug`, no `Display`, zeroed on drop, and revealed only through
//! `expose_secret()`, so every place that reveals it is greppable. A stack file names where a
//! secret comes from, never its value: [`SecretRef`].

use std::fmt;

use serde::{Deserialize, Serialize};

pub use secrecy::{ExposeSecret, SecretString};

/// The secret held by the environment variable `var`; `None` when it is unset or empty (an
/// empty password or token is never meant). Every command reads secrets from the environment
/// through here; what a missing one means is the caller's to say.
pub fn from_env(var: &str) -> Option<SecretString> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from)
}

/// Where a secret comes from: a stack file names the source, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable of the machine running `fullslack`.
    Env(String),
    /// An AWS SSM parameter (SecureString), read at deploy time.
    Ssm(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::Ssm(name) => write!(f, "ssm:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = SecretString::from("hunter2-very-secret");
        assert!(!format!("{s:?} {s:#?}").contains("hunter2"));
        assert_eq!(s.expose_secret(), "hunter2-very-secret");
    }
}
