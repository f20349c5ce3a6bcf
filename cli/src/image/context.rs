//! Build contexts: the tar stream `POST /build` takes, assembled in memory.
//!
//! Every entry gets the same owner (0:0) and modification time, so two builds of unchanged
//! inputs send byte-identical files: the engine's cache then reuses the layers, and the
//! layers' digests stay the same, so a registry already holding them skips the upload.
//!
//! `.dockerignore` follows Docker's rules: `#` comments, one pattern per line, Go
//! `filepath.Match` syntax plus `**` for any number of directories, a leading `!` re-includes,
//! the last matching pattern wins, and a pattern that matches a directory excludes everything
//! under it. The Dockerfile is always sent, as the docker CLI does.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use super::ImageError;

/// Modification time of every entry (2000-01-01T00:00:00Z): fixed so contexts are
/// reproducible; not 0 because some tools treat a zero mtime as "unknown".
pub const FIXED_MTIME: u64 = 946_684_800;

/// One `.dockerignore` line.
#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    /// `!pattern`: re-include what earlier patterns excluded.
    include: bool,
    /// The pattern up to its first wildcard: decides whether an excluded directory may still
    /// hold re-included files (and so must be walked).
    literal_prefix: String,
}

/// Parsed `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

impl DockerIgnore {
    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Result<Self, ImageError> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (include, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&pat)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    ImageError::Context(format!(".dockerignore line {}: `{line}`: {e}", i + 1))
                })?;
            let literal_prefix = pat
                .find(['*', '?', '[', '\\'])
                .map_or(pat.as_str(), |i| &pat[..i])
                .to_string();
            rules.push(Rule {
                matcher: glob.compile_matcher(),
                include,
                literal_prefix,
            });
        }
        Ok(Self { rules })
    }

    /// Reads `DIR/.dockerignore`; none means nothing is ignored.
    pub fn load(dir: &Path) -> Result<Self, ImageError> {
        let path = dir.join(".dockerignore");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ImageError::Context(format!("{}: {e}", path.display()))),
        }
    }

    /// Whether `rel` (a `/`-separated path relative to the context root) is left out.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let mut excluded = false;
        for r in &self.rules {
            // A pattern matching a parent directory covers everything below it.
            let hit = r.matcher.is_match(rel) || parents(rel).any(|p| r.matcher.is_match(p));
            if hit {
                excluded = !r.include;
            }
        }
        excluded
    }

    /// Whether an excluded directory must still be walked because a `!` pattern may re-include
    /// something inside it. Otherwise whole trees such as `target/` are never read.
    fn may_reinclude_under(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.rules.iter().any(|r| {
            r.include
                && (r.literal_prefix.starts_with(&dir_slash)
                    || dir_slash.starts_with(&r.literal_prefix)
                    || r.literal_prefix.is_empty())
        })
    }
}

/// `a/b/c` → `a`, `a/b`.
fn parents(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

/// Docker cleans patterns like Go's `filepath.Clean` and drops a leading `/`.
fn clean(pat: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pat.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// A build context being assembled.
pub struct Context {
    tar: tar::Builder<Vec<u8>>,
    files: usize,
    bytes: u64,
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        Self {
            tar,
            files: 0,
            bytes: 0,
        }
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(FIXED_MTIME);
        h
    }

    fn err(path: &str, e: std::io::Error) -> ImageError {
        ImageError::Context(format!("{path}: {e}"))
    }

    /// Adds a file with the given content and permission bits.
    pub fn add_bytes(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), ImageError> {
        let mut h = Self::header(tar::EntryType::Regular, data.len() as u64, mode);
        self.tar
            .append_data(&mut h, path, data)
            .map_err(|e| Self::err(path, e))?;
        self.files += 1;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Adds a directory entry (to give it a mode, e.g. 1777 for `/tmp`).
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), ImageError> {
        let mut h = Self::header(tar::EntryType::Directory, 0, mode);
        self.tar
            .append_data(
                &mut h,
                format!("{}/", path.trim_end_matches('/')),
                std::io::empty(),
            )
            .map_err(|e| Self::err(path, e))
    }

    /// Adds the content of `src` (symlinks followed) as `path`, keeping its permission bits.
    pub fn add_file(&mut self, path: &str, src: &Path) -> Result<(), ImageError> {
        let e = |e| ImageError::Context(format!("{}: {e}", src.display()));
        let meta = std::fs::metadata(src).map_err(e)?;
        let mut f = std::fs::File::open(src).map_err(e)?;
        let mut h = Self::header(
            tar::EntryType::Regular,
            meta.len(),
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        );
        self.tar
            .append_data(&mut h, path, &mut f)
            .map_err(|e| Self::err(path, e))?;
        self.files += 1;
        self.bytes += meta.len();
        Ok(())
    }

    fn add_symlink(&mut self, path: &str, target: &Path) -> Result<(), ImageError> {
        let mut h = Self::header(tar::EntryType::Symlink, 0, 0o777);
        self.tar
            .append_link(&mut h, path, target)
            .map_err(|e| Self::err(path, e))?;
        self.files += 1;
        Ok(())
    }

    /// Adds the tree under `root`, leaving out what `ignore` excludes except the paths in
    /// `always` (the Dockerfile). Symlinks are sent as symlinks, like the docker CLI does.
    pub fn add_tree(
        &mut self,
        root: &Path,
        ignore: &DockerIgnore,
        always: &[&str],
    ) -> Result<(), ImageError> {
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            let abs = if dir.is_empty() {
                root.to_path_buf()
            } else {
                root.join(&dir)
            };
            let mut entries = std::fs::read_dir(&abs)
                .map_err(|e| ImageError::Context(format!("{}: {e}", abs.display())))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ImageError::Context(format!("{}: {e}", abs.display())))?;
            // Sorted: the same tree always gives the same tar.
            entries.sort_by_key(std::fs::DirEntry::file_name);
            for entry in entries {
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                let ft = entry
                    .file_type()
                    .map_err(|e| ImageError::Context(format!("{rel}: {e}")))?;
                let excluded = ignore.is_excluded(&rel) && !always.contains(&rel.as_str());
                if ft.is_dir() {
                    if !excluded {
                        self.add_dir(&rel, 0o755)?;
                        stack.push(rel);
                    } else if ignore.may_reinclude_under(&rel) {
                        stack.push(rel);
                    }
                } else if excluded {
                    continue;
                } else if ft.is_symlink() {
                    let target = std::fs::read_link(entry.path())
                        .map_err(|e| ImageError::Context(format!("{rel}: {e}")))?;
                    self.add_symlink(&rel, &target)?;
                } else if ft.is_file() {
                    self.add_file(&rel, &entry.path())?;
                }
            }
        }
        Ok(())
    }

    /// Files added so far.
    pub fn files(&self) -> usize {
        self.files
    }

    /// Bytes of file content added so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The finished tar.
    pub fn finish(self) -> Result<Vec<u8>, ImageError> {
        self.tar
            .into_inner()
            .map_err(|e| ImageError::Context(e.to_string()))
    }
}

/// The context of a directory (`fullslack build --context DIR`), honouring its
/// `.dockerignore`; `dockerfile` is the Dockerfile's path inside it.
pub fn from_dir(root: &Path, dockerfile: &str) -> Result<Context, ImageError> {
    let ignore = DockerIgnore::load(root)?;
    let mut ctx = Context::new();
    ctx.add_tree(root, &ignore, &[dockerfile, ".dockerignore"])?;
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn dockerignore_follows_docker_rules() {
        let i = DockerIgnore::parse(
            "# comment\n\n/target\n*.md\n!README.md\n**/*.tmp\ndocs/**\n!docs/keep/*.txt\n./.git\n",
        )
        .unwrap();
        assert!(i.is_excluded("target"));
        assert!(i.is_excluded("target/debug/x"), "parent directory match");
        assert!(i.is_excluded("CHANGES.md"));
        assert!(
            !i.is_excluded("README.md"),
            "! re-includes, last match wins"
        );
        assert!(!i.is_excluded("sub/CHANGES.md"), "* does not cross /");
        assert!(i.is_excluded("a/b/c.tmp"));
        assert!(i.is_excluded("x.tmp"), "**/ matches zero directories");
        assert!(i.is_excluded("docs/a/b.png"));
        assert!(!i.is_excluded("docs/keep/a.txt"));
        assert!(i.is_excluded(".git/HEAD"));
        assert!(!i.is_excluded("src/main.rs"));
        assert!(!i.may_reinclude_under("target"));
        assert!(i.may_reinclude_under("docs"));
        assert!(DockerIgnore::parse("[").is_err());
    }

    #[test]
    fn context_from_dir_honours_dockerignore_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("src")).unwrap();
        std::fs::create_dir_all(p.join("target/debug")).unwrap();
        std::fs::write(p.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(p.join("target/debug/big"), vec![0u8; 1000]).unwrap();
        std::fs::write(p.join("notes.md"), "x").unwrap();
        std::fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(p.join(".dockerignore"), "target\n*.md\nDockerfile\n").unwrap();
        let tar1 = from_dir(p, "Dockerfile").unwrap().finish().unwrap();
        let n = names(&tar1);
        assert!(n.contains(&"src/main.rs".to_string()), "{n:?}");
        assert!(n.contains(&"Dockerfile".to_string()), "always sent: {n:?}");
        assert!(!n.iter().any(|x| x.starts_with("target")), "{n:?}");
        assert!(!n.contains(&"notes.md".to_string()), "{n:?}");
        // Touching a file changes nothing: mtimes are fixed.
        std::fs::write(p.join("src/main.rs"), "fn main() {}").unwrap();
        let tar2 = from_dir(p, "Dockerfile").unwrap().finish().unwrap();
        assert_eq!(tar1, tar2);
    }
}
