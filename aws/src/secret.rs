//! Secret values (ECR passwords, SSM secret values) are the workspace's one secret string,
//! [`secrecy::SecretString`]: its `Debug` is redacted, it has no `Display`, it is zeroed on
//! drop, and `expose_secret()` is the only way to the value, so every place that reveals it
//! is greppable. Re-exported so callers of this crate name the same type.

pub use secrecy::{ExposeSecret, SecretString};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts() {
        let s = SecretString::from("p@ss-very-secret");
        assert!(!format!("{s:?} {s:#?}").contains("very-secret"));
        assert_eq!(s.expose_secret(), "p@ss-very-secret");
    }
}
