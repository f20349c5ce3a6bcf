//! What the CLI remembers between runs on the operator's machine, per stack: a directory
//! `.fullslack/<stack>/` beside the stack file. Today it holds the last image `build --stack`
//! made, so that `push --stack` and `deploy` use that exact image (the tag `build` chose is
//! not something a user should have to copy by hand). Nothing secret is ever written here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The per-stack state directory: `<directory of the stack file>/.fullslack/<stack name>/`.
pub fn dir(stack_file: &Path, stack_name: &str) -> PathBuf {
    let base = match stack_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    base.join(".fullslack").join(stack_name)
}

/// The last image `fullslack build --stack` made for a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBuild {
    /// Repository, `[REGISTRY/]NAME`, as tagged locally.
    pub repository: String,
    /// The version tag the build chose (`<git sha>-<UTC time>` unless `--tag` said otherwise).
    pub tag: String,
    /// Every tag the build set (the version, the stack's `image.tag`, `latest` if asked).
    pub tags: Vec<String>,
    /// Image id (`sha256:…`).
    pub id: String,
    /// When it was built (RFC 3339, UTC).
    pub built_at: String,
}

impl LastBuild {
    /// `REPOSITORY:TAG` of the version tag.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    fn path(stack_file: &Path, stack_name: &str) -> PathBuf {
        dir(stack_file, stack_name).join("last-build.json")
    }

    /// Records this build (atomically: a reader never sees half a file).
    pub fn save(&self, stack_file: &Path, stack_name: &str) -> Result<PathBuf, CliError> {
        let path = Self::path(stack_file, stack_name);
        let io = |e: std::io::Error, what: &str| CliError::Usage {
            message: format!("cannot {what} {}: {e}", path.display()),
            hint: "check that the stack file's directory is writable".into(),
        };
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| io(e, "create the directory of"))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&tmp, text + "\n").map_err(|e| io(e, "write"))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(e, "write"))?;
        Ok(path)
    }

    /// The stack's last build, if `build --stack` ran here.
    pub fn load(stack_file: &Path, stack_name: &str) -> Result<Option<Self>, CliError> {
        let path = Self::path(stack_file, stack_name);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| CliError::Usage {
                    message: format!("{} is not a build record: {e}", path.display()),
                    hint: "run `fullslack build --stack FILE` again (it rewrites the record)"
                        .into(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::Usage {
                message: format!("cannot read {}: {e}", path.display()),
                hint: "check the file's permissions".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_record_round_trips_beside_the_stack_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let stack = d.path().join("prod.toml");
        assert_eq!(LastBuild::load(&stack, "chat").expect("load"), None);
        let b = LastBuild {
            repository: "chat/chat".into(),
            tag: "abc1234-20261129T230000Z".into(),
            tags: vec!["abc1234-20261129T230000Z".into(), "latest".into()],
            id: "sha256:00".into(),
            built_at: "2026-11-29T23:00:00Z".into(),
        };
        let path = b.save(&stack, "chat").expect("save");
        assert_eq!(path, d.path().join(".fullslack/chat/last-build.json"));
        assert_eq!(
            LastBuild::load(&stack, "chat").expect("load"),
            Some(b.clone())
        );
        assert_eq!(b.reference(), "chat/chat:abc1234-20261129T230000Z");
        assert_eq!(
            dir(Path::new("x.toml"), "s"),
            PathBuf::from("./.fullslack/s")
        );
    }
}
