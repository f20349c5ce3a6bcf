//! Writing files on hosts: content on stdin, atomic rename, so a half-written config is never
//! read by Nginx.

use super::{sh, Cmd, StdinData};

/// Writes `content` to `path` atomically with the given octal mode.
///
/// `mkdir -p DIR && cat > PATH.fullslack-tmp && chmod MODE PATH.fullslack-tmp && mv -f … PATH`,
/// as one `sh -c` script, content on stdin.
pub fn write(path: &str, content: &str, mode: u32) -> Cmd {
    let dir = match path.rsplit_once('/') {
        Some(("", _)) => "/".to_string(),
        Some((d, _)) => d.to_string(),
        None => ".".to_string(),
    };
    let tmp = format!("{path}.fullslack-tmp");
    let script = Cmd::new("mkdir")
        .args(["-p", &dir])
        .and(Cmd::new("cat").redirect_to(&tmp))
        .and(Cmd::new("chmod").arg(format!("{mode:o}")).arg(&tmp))
        .and(Cmd::new("mv").args(["-f", &tmp, path]));
    sh(&script).stdin(StdinData::Plain(content.to_string()))
}

/// Appends `content` (stdin) to `path`, creating its directory: `mkdir -p DIR && cat >> PATH`.
/// One small `write` per line: lines of concurrent writers do not interleave.
pub fn append(path: &str, content: &str) -> Cmd {
    let dir = path
        .rsplit_once('/')
        .map_or(".", |(d, _)| if d.is_empty() { "/" } else { d });
    let script = Cmd::new("mkdir")
        .args(["-p", dir])
        .and(Cmd::new("cat"))
        .append_to(path);
    sh(&script).stdin(StdinData::Plain(content.to_string()))
}

/// `cat PATH`.
pub fn read(path: &str) -> Cmd {
    Cmd::new("cat").arg(path)
}

/// `rm -f PATH`.
pub fn remove(path: &str) -> Cmd {
    Cmd::new("rm").args(["-f", path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_line() {
        let c = write("/etc/nginx/sites-enabled/chat.conf", "server {}\n", 0o644);
        assert_eq!(
            c.to_shell(),
            "sh -c 'mkdir -p /etc/nginx/sites-enabled && cat > /etc/nginx/sites-enabled/chat.conf.fullslack-tmp \
             && chmod 644 /etc/nginx/sites-enabled/chat.conf.fullslack-tmp \
             && mv -f /etc/nginx/sites-enabled/chat.conf.fullslack-tmp /etc/nginx/sites-enabled/chat.conf'"
        );
        assert_eq!(
            c.stdin.as_ref().map(StdinData::bytes),
            Some(&b"server {}\n"[..])
        );
    }

    #[test]
    fn hostile_path() {
        let c = write("/tmp/a b/it's", "x", 0o600);
        assert_eq!(
            c.to_shell(),
            "sh -c 'mkdir -p '\\''/tmp/a b'\\'' && cat > '\\''/tmp/a b/it'\\''\\'\\'''\\''s.fullslack-tmp'\\'' \
             && chmod 600 '\\''/tmp/a b/it'\\''\\'\\'''\\''s.fullslack-tmp'\\'' \
             && mv -f '\\''/tmp/a b/it'\\''\\'\\'''\\''s.fullslack-tmp'\\'' '\\''/tmp/a b/it'\\''\\'\\'''\\''s'\\'''"
        );
        assert_eq!(read("/x y").to_shell(), "cat '/x y'");
        let a = append("/var/lib/fullslack/chat/audit.jsonl", "{}\n");
        assert_eq!(
            a.to_shell(),
            "sh -c 'mkdir -p /var/lib/fullslack/chat && cat >> /var/lib/fullslack/chat/audit.jsonl'"
        );
        assert_eq!(a.stdin.as_ref().map(StdinData::bytes), Some(&b"{}\n"[..]));
        assert_eq!(remove("/x").to_shell(), "rm -f /x");
    }
}
