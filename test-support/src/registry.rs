//! A real container registry for the image tests: Debian's `docker-registry` (distribution
//! 2.8) on a free 127.0.0.1 port, with or without htpasswd (bcrypt) auth, storage in a
//! temporary directory, stopped on drop. The Docker Engine treats 127.0.0.0/8 registries as
//! insecure (plain HTTP) without configuration.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{
    paths::{program, tempdir},
    ports::free_port,
    process::ProcessGuard,
};

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `(user, password)` when htpasswd auth is on.
    pub credentials: Option<(String, String)>,
    _proc: ProcessGuard,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// The digest the registry has for `path:tag` (`Docker-Content-Digest` of the manifest,
    /// asked with the registry's credentials), or `None` when it has no such tag.
    pub fn digest(&self, path: &str, tag: &str) -> Option<String> {
        let (user, pass) = self.credentials.clone().expect("a registry with auth on");
        let resp = reqwest::blocking::Client::new()
            .head(format!("http://{}/v2/{path}/manifests/{tag}", self.addr))
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )
            .basic_auth(user, Some(pass))
            .send()
            .expect("ask the registry");
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            resp.status().is_success(),
            "registry answered {}",
            resp.status()
        );
        resp.headers()
            .get("docker-content-digest")
            .and_then(|d| d.to_str().ok())
            .map(str::to_string)
    }
}

/// Starts `docker-registry serve CONFIG` and waits until `GET /v2/` answers.
pub fn start_registry(auth: Option<(&str, &str)>) -> Registry {
    let bin = program("/usr/bin/docker-registry");
    let dir = tempdir();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        dir.path().join("data").display()
    );
    if let Some((user, pass)) = auth {
        let out = Command::new(program("/usr/bin/htpasswd"))
            .args(["-Bbn", user, pass])
            .output()
            .expect("run htpasswd");
        assert!(out.status.success(), "htpasswd failed");
        let htpasswd: PathBuf = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: fullslack-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    let conf = dir.path().join("config.yml");
    std::fs::write(&conf, config).expect("write registry config");
    let proc = ProcessGuard::spawn(
        "docker-registry",
        Command::new(bin)
            .arg("serve")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let url = format!("http://{addr}/v2/");
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::blocking::get(&url) {
            let s = r.status().as_u16();
            assert!(s == 200 || s == 401, "registry answered {s} on /v2/");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "docker-registry did not answer on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        addr,
        credentials: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        _proc: proc,
        _dir: dir,
    }
}
