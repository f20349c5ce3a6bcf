//! Commands as data: pure functions that build the command lines run on hosts.
//!
//! Nothing here does I/O. A [`Cmd`] is a program plus arguments (and optional stdin); its
//! [`Cmd::to_shell`] is the exact line a [`crate::runner::Runner`] hands to `sh -c` locally or
//! to the remote shell over SSH, with every argument quoted. `Display` prints the same line
//! with secret arguments redacted (`--dry-run` output, logs).

pub mod docker;
pub mod files;
pub mod health;
pub mod lock;
pub mod nginx;

use std::fmt;

use crate::secret::{ExposeSecret, SecretString};

/// One argument of a command.
#[derive(Clone)]
pub enum Arg {
    /// Printed and passed as is (quoted).
    Plain(String),
    /// Passed quoted, printed as `[redacted]`.
    Secret(SecretString),
    /// Shell syntax inserted unquoted (`&&`, `>`, `||`): only from constants in this module.
    Raw(&'static str),
}

impl fmt::Debug for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Plain(s) => write!(f, "{s:?}"),
            Arg::Secret(_) => f.write_str("[redacted]"),
            Arg::Raw(s) => write!(f, "raw({s})"),
        }
    }
}

/// A command line to run on a host.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Cmd {
    /// Arguments, program first.
    pub args: Vec<Arg>,
    /// Bytes written to the command's standard input.
    pub stdin: Option<StdinData>,
}

/// Standard input of a command: plain or secret.
#[derive(Clone, Debug)]
pub enum StdinData {
    /// Plain content (a config file).
    Plain(String),
    /// A secret (a registry password).
    Secret(SecretString),
}

// Equality by value, secrets included (tests compare whole commands); `SecretString` itself
// has no `PartialEq`, so that comparing secrets is always written out like this.
impl PartialEq for Arg {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Arg::Plain(a), Arg::Plain(b)) => a == b,
            (Arg::Secret(a), Arg::Secret(b)) => a.expose_secret() == b.expose_secret(),
            (Arg::Raw(a), Arg::Raw(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Arg {}

impl PartialEq for StdinData {
    fn eq(&self, other: &Self) -> bool {
        self.is_secret() == other.is_secret() && self.bytes() == other.bytes()
    }
}

impl Eq for StdinData {}

impl StdinData {
    fn is_secret(&self) -> bool {
        matches!(self, StdinData::Secret(_))
    }

    /// The bytes to write.
    pub fn bytes(&self) -> &[u8] {
        match self {
            StdinData::Plain(s) => s.as_bytes(),
            StdinData::Secret(s) => s.expose_secret().as_bytes(),
        }
    }
}

impl Cmd {
    /// A command from a program name.
    pub fn new(program: &str) -> Self {
        Self {
            args: vec![Arg::Plain(program.to_string())],
            stdin: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(Arg::Plain(a.into()));
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(mut self, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args
            .extend(items.into_iter().map(|s| Arg::Plain(s.into())));
        self
    }

    /// Adds a secret argument.
    pub fn secret_arg(mut self, s: SecretString) -> Self {
        self.args.push(Arg::Secret(s));
        self
    }

    /// Sets standard input.
    pub fn stdin(mut self, data: StdinData) -> Self {
        self.stdin = Some(data);
        self
    }

    /// Joins two commands with `&&`.
    pub fn and(mut self, other: Cmd) -> Self {
        self.args.push(Arg::Raw("&&"));
        self.args.extend(other.args);
        if self.stdin.is_none() {
            self.stdin = other.stdin;
        }
        self
    }

    /// Joins two commands with `||`.
    pub fn or(mut self, other: Cmd) -> Self {
        self.args.push(Arg::Raw("||"));
        self.args.extend(other.args);
        self
    }

    /// Redirects standard output to a file (`> path`).
    pub fn redirect_to(mut self, path: &str) -> Self {
        self.args.push(Arg::Raw(">"));
        self.args.push(Arg::Plain(path.to_string()));
        self
    }

    /// Appends standard output to a file (`>> path`).
    pub fn append_to(mut self, path: &str) -> Self {
        self.args.push(Arg::Raw(">>"));
        self.args.push(Arg::Plain(path.to_string()));
        self
    }

    /// The exact shell line, secrets included: what runners execute.
    pub fn to_shell(&self) -> String {
        self.render(false)
    }

    fn render(&self, redact: bool) -> String {
        let mut out = String::new();
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            match a {
                Arg::Plain(s) => out.push_str(&quote(s)),
                Arg::Secret(s) if redact => out.push_str("[redacted]"),
                Arg::Secret(s) => out.push_str(&quote(s.expose_secret())),
                Arg::Raw(r) => out.push_str(r),
            }
        }
        out
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(true))?;
        if let Some(StdinData::Secret(_)) = &self.stdin {
            f.write_str(" <<< [redacted]")?;
        }
        Ok(())
    }
}

/// POSIX shell quoting: safe words stay bare, everything else goes in single quotes with
/// embedded single quotes written as `'\''`.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'@' | b',' | b'+'
                )
        })
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Wraps a whole command line as one `sh -c` script (for sequences that need `&&` on hosts
/// whose login shell is not POSIX).
pub fn sh(script: &Cmd) -> Cmd {
    Cmd {
        args: vec![
            Arg::Plain("sh".into()),
            Arg::Plain("-c".into()),
            Arg::Plain(script.to_shell()),
        ],
        stdin: script.stdin.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_of_hostile_values() {
        assert_eq!(
            quote("plain-word_1.2/x:y=z@a,b+c"),
            "plain-word_1.2/x:y=z@a,b+c"
        );
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(quote("`id`;ls|cat&&x"), "'`id`;ls|cat&&x'");
        assert_eq!(quote("line\nbreak"), "'line\nbreak'");
        assert_eq!(quote("*"), "'*'");
        assert_eq!(quote("~root"), "'~root'");
        assert_eq!(quote("'"), "''\\'''");
    }

    #[test]
    fn display_redacts_secrets_but_shell_has_them() {
        let c = Cmd::new("echo")
            .arg("user")
            .secret_arg(SecretString::from("p@ss word"));
        assert_eq!(c.to_shell(), "echo user 'p@ss word'");
        assert_eq!(c.to_string(), "echo user [redacted]");
        assert!(!format!("{c:?}").contains("p@ss"));
    }

    #[test]
    fn chaining() {
        let c = Cmd::new("true")
            .and(Cmd::new("echo").arg("a b"))
            .or(Cmd::new("false"));
        assert_eq!(c.to_shell(), "true && echo 'a b' || false");
        assert_eq!(
            sh(&Cmd::new("echo").arg("it's").redirect_to("/tmp/x y")).to_shell(),
            "sh -c 'echo '\\''it'\\''\\'\\'''\\''s'\\'' > '\\''/tmp/x y'\\'''"
        );
    }
}
