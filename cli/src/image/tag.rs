//! Tags, OCI labels and image reference checks.
//!
//! Default tag: `<git short sha>-<UTC timestamp>` (`3f2a9c1b7d0e-20261123T131800Z`), so every
//! build is traceable to a commit and two builds of one commit never overwrite each other;
//! `-dirty` is added when the work tree has uncommitted changes. `latest` only when asked.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use time::OffsetDateTime;

use super::ImageError;

/// What the build is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Full commit id, if the context is in a git work tree.
    pub revision: Option<String>,
    /// Whether the work tree had uncommitted changes.
    pub dirty: bool,
    /// Where the source lives (git remote without credentials, else a `file://` URL).
    pub source: String,
    /// Build time.
    pub created: OffsetDateTime,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Drops `user:password@` from a URL so a token in a remote URL never lands in a label.
pub fn strip_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_string(),
    }
}

impl Provenance {
    /// Reads git state of `dir` (no git or no repository: no revision).
    pub fn detect(dir: &Path, source: Option<&str>) -> Self {
        let revision = git(dir, &["rev-parse", "HEAD"]);
        let dirty = revision.is_some()
            && git(dir, &["status", "--porcelain", "--untracked-files=no"]).is_some();
        let source = source
            .map(str::to_string)
            .or_else(|| git(dir, &["remote", "get-url", "origin"]).map(|u| strip_credentials(&u)))
            .unwrap_or_else(|| {
                let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
                format!("file://{}", abs.display())
            });
        Self {
            revision,
            dirty,
            source,
            created: OffsetDateTime::now_utc(),
        }
    }

    /// `<short sha>-<timestamp>[-dirty]`, or `dev-<timestamp>` outside git.
    pub fn default_tag(&self) -> String {
        let ts = timestamp(self.created);
        match &self.revision {
            Some(rev) => {
                let short = &rev[..rev.len().min(12)];
                if self.dirty {
                    format!("{short}-{ts}-dirty")
                } else {
                    format!("{short}-{ts}")
                }
            }
            None => format!("dev-{ts}"),
        }
    }

    /// The OCI annotation labels.
    pub fn labels(&self) -> HashMap<String, String> {
        let mut l = HashMap::new();
        l.insert(
            "org.opencontainers.image.source".to_string(),
            self.source.clone(),
        );
        if let Some(rev) = &self.revision {
            l.insert("org.opencontainers.image.revision".to_string(), rev.clone());
        }
        l.insert(
            "org.opencontainers.image.created".to_string(),
            rfc3339(self.created),
        );
        l.insert(
            "org.opencontainers.image.title".to_string(),
            "fullslack-chat".to_string(),
        );
        l
    }
}

/// `20261123T131800Z` (tags may not contain `:`).
pub fn timestamp(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2026-11-23T13:18:00Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| timestamp(t))
}

/// Checks a tag as the engine will: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), ImageError> {
    let bad = |reason: &str| ImageError::BadReference {
        reference: tag.to_string(),
        reason: reason.to_string(),
    };
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err(bad("empty tag")),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => {
            return Err(bad("a tag starts with a letter, digit or `_`"))
        }
        _ => {}
    }
    if tag.len() > 128 {
        return Err(bad("a tag has at most 128 characters"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(bad("a tag holds only `A-Z a-z 0-9 _ . -`"));
    }
    Ok(())
}

/// A repository name with an optional registry host: `[HOST[:PORT]/]path/to/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// Registry host (`127.0.0.1:5000`, `123.dkr.ecr.us-east-1.amazonaws.com`), if given.
    pub registry: Option<String>,
    /// Path inside the registry.
    pub path: String,
}

impl Repository {
    /// Parses and checks a repository name (no tag).
    pub fn parse(name: &str) -> Result<Self, ImageError> {
        let bad = |reason: String| ImageError::BadReference {
            reference: name.to_string(),
            reason,
        };
        let (registry, path) = match name.split_once('/') {
            // Docker's rule: the first component is a registry if it has a `.` or `:` or is
            // `localhost`.
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        if path.is_empty() {
            return Err(bad("no repository path".into()));
        }
        for comp in path.split('/') {
            let ok = !comp.is_empty()
                && comp
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && comp.starts_with(|c: char| c.is_ascii_alphanumeric())
                && comp.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(format!(
                    "path component `{comp}` must be lower-case letters, digits and `._-`, \
                     starting and ending with a letter or digit"
                )));
            }
        }
        Ok(Self {
            registry,
            path: path.to_string(),
        })
    }

    /// The repository of a stack's `[image]` (`registry`, `name`). For `registry = "ecr"` the
    /// build tags the plain name (the account's registry host is only known from AWS); `push`
    /// adds the host. (Takes the two fields, not the stack, so that image code does not depend
    /// on the stack module, which validates names through this one.)
    pub fn of_stack_image(registry: Option<&str>, name: &str) -> Result<Self, ImageError> {
        match registry {
            Some("ecr") | None => Self::parse(name),
            Some(r) => Self::parse(&format!("{r}/{name}")),
        }
    }

    /// `registry/path` or `path`.
    pub fn name(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// `name:tag`.
    pub fn with_tag(&self, tag: &str) -> String {
        format!("{}:{tag}", self.name())
    }
}

/// Splits `name:tag` (a `:` after the last `/` only; a registry port is not a tag).
pub fn split_reference(reference: &str) -> (&str, Option<&str>) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], Some(&reference[slash + i + 1..])),
        None => (reference, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tag_and_labels() {
        let p = Provenance {
            revision: Some("3f2a9c1b7d0e55aa00112233445566778899aabb".into()),
            dirty: false,
            source: "https://example.com/fullslack.git".into(),
            created: OffsetDateTime::from_unix_timestamp(1_795_439_885).unwrap(),
        };
        assert_eq!(p.default_tag(), "3f2a9c1b7d0e-20261123T131805Z");
        check_tag(&p.default_tag()).unwrap();
        let l = p.labels();
        assert_eq!(
            l["org.opencontainers.image.created"],
            "2026-11-23T13:18:05Z"
        );
        assert_eq!(
            l["org.opencontainers.image.revision"],
            "3f2a9c1b7d0e55aa00112233445566778899aabb"
        );
        let dirty = Provenance {
            dirty: true,
            ..p.clone()
        };
        assert_eq!(dirty.default_tag(), "3f2a9c1b7d0e-20261123T131805Z-dirty");
        let nogit = Provenance {
            revision: None,
            ..p
        };
        assert_eq!(nogit.default_tag(), "dev-20261123T131805Z");
        assert!(!nogit
            .labels()
            .contains_key("org.opencontainers.image.revision"));
    }

    #[test]
    fn credentials_never_reach_the_source_label() {
        assert_eq!(
            strip_credentials("https://user:tok3n@git.example.com/org/repo.git"),
            "https://git.example.com/org/repo.git"
        );
        assert_eq!(
            strip_credentials("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
    }

    #[test]
    fn references() {
        let r = Repository::parse("127.0.0.1:5000/fullslack/chat").unwrap();
        assert_eq!(r.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(r.path, "fullslack/chat");
        assert_eq!(r.with_tag("v1"), "127.0.0.1:5000/fullslack/chat:v1");
        assert_eq!(Repository::parse("fullslack/chat").unwrap().registry, None);
        assert!(Repository::parse("Fullslack/Chat").is_err());
        assert!(Repository::parse("a//b").is_err());
        assert!(check_tag("latest").is_ok());
        assert!(check_tag("-x").is_err());
        assert!(check_tag("a:b").is_err());
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b:t1"),
            ("127.0.0.1:5000/a/b", Some("t1"))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b", None)
        );
    }
}
