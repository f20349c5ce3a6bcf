//! Where tests put things and find things: the workspace root, the test runtime directory
//! (`$FULLSLACK_TEST_RUNTIME`, where scripts/test.sh installs tools and tests keep scratch
//! files), temporary directories, and the system programs tests run for real.

use std::path::{Path, PathBuf};

/// The workspace root (this crate sits one level below it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives inside the workspace")
        .to_path_buf()
}

/// `$FULLSLACK_TEST_RUNTIME`, or `.test-runtime` in the workspace (scripts/test.sh's default)
/// for a direct `cargo nextest run`.
pub fn test_runtime() -> PathBuf {
    std::env::var_os("FULLSLACK_TEST_RUNTIME")
        .map_or_else(|| workspace().join(".test-runtime"), PathBuf::from)
}

/// A temporary directory under `$FULLSLACK_TEST_RUNTIME` when it is set (the system's temp
/// dir otherwise), removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("FULLSLACK_TEST_RUNTIME") {
        Some(root) => {
            let root = PathBuf::from(root);
            std::fs::create_dir_all(&root).expect("create FULLSLACK_TEST_RUNTIME");
            tempfile::Builder::new()
                .prefix("cli-")
                .tempdir_in(root)
                .expect("tempdir in runtime")
        }
        None => tempfile::Builder::new()
            .prefix("fullslack-cli-")
            .tempdir()
            .expect("tempdir"),
    }
}

/// A temporary directory with a short path under /tmp: unix socket paths (sshd's control
/// sockets) are limited to about 100 bytes, which a runtime directory can exceed.
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("fs-")
        .tempdir_in("/tmp")
        .expect("tempdir in /tmp")
}

/// The path of a system program the tests run; panics with what to do when it is missing
/// (the test fails rather than passing without it).
pub fn program(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: run scripts/test.sh (it installs the Debian packages the tests need)"
    );
    p
}
