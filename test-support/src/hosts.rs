//! Test names resolved to loopback for programs that use the system resolver (`fullslack
//! health`): the program runs in a private mount namespace (`unshare --mount
//! --map-root-user`) whose /etc/hosts maps the names to 127.0.0.1. Nothing outside that
//! process changes.

use std::path::Path;
use std::process::Command;

use crate::paths;

/// `program` in a private mount namespace where `names` resolve to 127.0.0.1 (the hosts file
/// is written in `dir`). Add the program's arguments and environment to what is returned.
pub fn resolving_to_loopback(dir: &Path, names: &[&str], program: &Path) -> Command {
    let hosts = dir.join("hosts");
    let mut text = String::from("127.0.0.1 localhost\n");
    for n in names {
        text.push_str(&format!("127.0.0.1 {n}\n"));
    }
    std::fs::write(&hosts, text).expect("write the hosts file");
    let script = r#"mount --bind "$1" /etc/hosts && shift && exec "$@""#;
    let mut c = Command::new(paths::program("/usr/bin/unshare"));
    c.args(["--mount", "--map-root-user", "sh", "-c", script, "sh"])
        .arg(&hosts)
        .arg(program);
    c
}
