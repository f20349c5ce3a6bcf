//! Secrets: values that must never reach a log line, a `--dry-run` listing or an error message.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret value. `Display` and `Debug` print `[redacted]`; the value is only reachable
/// through [`Secret::expose`], so every place that reveals it is greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value. Only for the few places that must hand it to a program.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
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
    fn display_and_debug_redact() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(s.to_string(), "[redacted]");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert!(!format!("{s} {s:?} {s:#?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
