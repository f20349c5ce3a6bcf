//! The names of the environment variables the chat server reads its settings from
//! (`FULLSLACK_…`, nested keys joined by `__`). They are part of the contract between the server
//! and the deploy tool, which refuses a misspelt setting in a stack file before a deploy: a
//! setting the server does not read would be silently ignored. The list lives in
//! `protocol/env-names.txt`; the chat server's tests (`tests/env_names.rs`) keep it equal to
//! the server's `Settings`.

/// One name per line (lines starting with `#` are comments).
pub const SERVER_ENV_NAMES: &str = include_str!("../env-names.txt");

/// The names, one by one.
pub fn server_env_names() -> impl Iterator<Item = &'static str> {
    SERVER_ENV_NAMES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}
