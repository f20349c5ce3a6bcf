//! A redacting string for values that must never reach output, plans, logs or files: ECR
//! passwords and SSM secret values. This crate cannot use the CLI's `Secret` (the CLI depends
//! on this crate, not the other way round), so it has its own with the same contract.

use std::fmt;

/// A secret value: `Display` and `Debug` print `[redacted]`; [`SecretString::expose`] is the
/// only way to the value, so every place that reveals it is greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the few places that hand it to a program or an API.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts() {
        let s = SecretString::new("p@ss-very-secret");
        assert!(!format!("{s} {s:?} {s:#?}").contains("very-secret"));
        assert_eq!(s.expose(), "p@ss-very-secret");
    }
}
