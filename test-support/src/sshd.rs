//! A private sshd on loopback: its own host key, one authorized client key, a known_hosts
//! file naming it, and the current user as the login. The "host" a deploy test drives over
//! SSH is this machine (its Docker Engine, its Nginx), reached the way a real host is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, ProcessGuard};

/// A running sshd; stopped when dropped.
pub struct Sshd {
    _proc: ProcessGuard,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The directory holding its keys, config and known_hosts (keep it short: the SSH
    /// control socket goes here too, and unix socket paths are limited to ~100 bytes).
    pub dir: PathBuf,
    /// The login user (the user running the test).
    pub user: String,
}

impl Sshd {
    /// Starts sshd with everything under `dir`; waits until it accepts connections.
    pub fn start(dir: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing: run scripts/test.sh (it installs openssh-server)"
        );
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        keygen(&dir.join("host_key"));
        keygen(&dir.join("client_key"));
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("authorized_keys");
        let port = free_port();
        let conf = dir.join("sshd_config");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                 LogLevel ERROR\nMaxSessions 100\nMaxStartups 100\n",
                d = dir.display()
            ),
        )
        .expect("write sshd_config");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sshd");
        let proc = ProcessGuard::new(child);
        wait_for_port(port, Duration::from_secs(10));
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).expect("host key");
        let mut parts = host_pub.split_whitespace();
        let (kind, key) = (parts.next().expect("kind"), parts.next().expect("key"));
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .expect("known_hosts");
        Sshd {
            _proc: proc,
            port,
            dir: dir.to_path_buf(),
            user: current_user(),
        }
    }

    /// The client's private key.
    pub fn identity_file(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// A known_hosts file with this sshd's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

/// The user running the test (`id -un`).
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn wait_for_port(port: u16, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("sshd does not listen on 127.0.0.1:{port} after {timeout:?}");
}
