//! `fullslack deploy`, `rollback` and `releases` end to end, with real components only: a
//! private sshd on loopback ([`fullslack_test_support::Sshd`]) whose "host" is this machine
//! (its Docker Engine), a private Nginx in front, and the real chat server image packed by
//! `fullslack build --offline` from `target/debug/fullslack-chat` (built by scripts/test.sh).
//!
//! Every Docker resource a test makes is named after its unique stack name and removed when
//! the test ends, passed or failed ([`Host`]'s Drop).
//!
//! One test binary (`deploy`) in modules: this file holds the host fixture (sshd, Nginx, stack
//! file, images, cleanup) and the CLI runner; [`switch`] the release switch (first deploy,
//! a second release under WebSocket traffic, a failing release, rollback); [`lock`] concurrent
//! deploys and a dead deploy's lock; [`interrupted`] a deploy killed in its health gate and
//! the next one recovering its lock; [`ec2`] an `ec2` stack provisioned on moto, then
//! deployed over SSH; [`pull`] a deploy through a registry on loopback; [`local`] the `local`
//! target (no SSH); [`accessory`] a managed Redis (Debian's `redis-server` packed offline) that
//! the chat containers use and that keeps its data across redeploys; [`two_hosts`] two hosts
//! rolled one at a time, the second failing and the first put back; [`logs`] `logs` and `exec`
//! on the live container; [`tls`] a `tls.enabled` stack getting its certificate from pebble
//! during the deploy; [`operate`] `fullslack operate` keeping a stack healthy (restart, drift,
//! `--fix`, `/metrics`, SIGTERM, a deploy lock); [`transfer`] the registry-free transfer
//! sending only the layers a host lacks (a release whose binary alone changed, an image the
//! host has nothing of, plain and gzip).

mod accessory;
mod ec2;
mod interrupted;
mod local;
mod lock;
mod logs;
mod operate;
mod pull;
mod switch;
mod tls;
mod transfer;
mod two_hosts;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fullslack_test_support::{free_port, ProcessGuard, Sshd};

/// The JWT secret the deployed containers get through the env file.
const JWT: &str = "deploy-test-secret-0123456789abcdef0123456789";
/// Rate limits above what the tests' users and probes do through one proxy address (the
/// defaults would throttle a test that signs in a dozen times a minute, by design).
const LIMITS: &str = "FULLSLACK_RATE_LIMIT__AUTH_PER_MIN = \"600\"\n\
                      FULLSLACK_RATE_LIMIT__AUTH_BURST = \"100\"\n\
                      FULLSLACK_RATE_LIMIT__AUTH_ADDR_PER_MIN = \"600\"\n\
                      FULLSLACK_RATE_LIMIT__AUTH_ADDR_BURST = \"100\"\n\
                      FULLSLACK_RATE_LIMIT__AUTH_NAME_BURST = \"100\"\n\
                      FULLSLACK_RATE_LIMIT__SEND_PER_SEC = \"1000\"\n\
                      FULLSLACK_RATE_LIMIT__SEND_BURST = \"1000\"\n";
/// The health probe account's password.
const PROBE_PASSWORD: &str = "probe password for deploy tests";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The debug server binary; never built from here (that would take minutes inside a test).
fn server_bin() -> PathBuf {
    let bin = target_dir().join("debug/fullslack-chat");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p fullslack-chat` (scripts/test.sh does) before the deploy tests",
        bin.display()
    );
    bin
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A host stand-in: sshd, a private Nginx (its sites included from `sites/*.conf`), a stack
/// file pointing at both, and a state directory. Removes the stack's containers, volume and
/// images when dropped.
struct Host {
    /// Kept running for the host's lifetime.
    sshd: Sshd,
    _nginx: ProcessGuard,
    /// Root of everything (short: the SSH control socket lives under it).
    dir: tempfile::TempDir,
    /// Unique stack name; prefixes every container, volume and image.
    name: String,
    /// Image repository of the test's releases.
    repo: String,
    stack: PathBuf,
    http_port: u16,
}

impl Host {
    /// A host whose stack streams images over SSH (no registry).
    fn new() -> Host {
        Host::create(None, "ssh", "")
    }

    /// A host whose stack file ends with `extra` (TOML tables; `@STACK@` becomes the stack's
    /// name).
    fn with_extra(extra: &str) -> Host {
        Host::create(None, "ssh", extra)
    }

    /// A `local` stack: this machine's Docker Engine, no SSH.
    fn local() -> Host {
        Host::create(None, "local", "")
    }

    /// A host whose stack pulls from the registry at `addr` as user `deployer`, the password
    /// in `DEPLOY_TEST_REGISTRY_PW`.
    fn with_registry(addr: &str) -> Host {
        Host::create(Some(addr), "ssh", "")
    }

    /// A host whose stack has `tls` (a `[tls]` table) and whose Nginx serves plain HTTP on
    /// `http_port` (where the ACME CA validates).
    fn with_tls(http_port: u16, tls: &str) -> Host {
        Host::create_with(None, "ssh", http_port, tls, "")
    }

    fn create(registry: Option<&str>, target: &str, extra: &str) -> Host {
        Host::create_with(
            registry,
            target,
            free_port(),
            "[tls]\nenabled = false\n",
            extra,
        )
    }

    fn create_with(
        registry: Option<&str>,
        target: &str,
        http_port: u16,
        tls: &str,
        extra: &str,
    ) -> Host {
        let dir = fullslack_test_support::paths::short_tempdir();
        let name = format!("fsd-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let sshd = Sshd::start(dir.path());
        let nginx = start_nginx(&dir.path().join("nginx"));
        let app_port = free_port_pair();
        let image_section = match registry {
            None => format!("[image]\nname = \"{name}/chat\"\n"),
            Some(addr) => format!(
                "[image]\nname = \"{name}/chat\"\nregistry = \"{addr}\"\nusername = \"deployer\"\n\
                 password = {{ env = \"DEPLOY_TEST_REGISTRY_PW\" }}\n"
            ),
        };
        let repo = match registry {
            None => format!("{name}/chat"),
            Some(addr) => format!("{addr}/{name}/chat"),
        };
        let connect = if target == "ssh" {
            format!(
                "[ssh]\nuser = \"{user}\"\nport = {port}\nidentity_file = \"{key}\"\nknown_hosts = \"{kh}\"\n\
                 [[hosts]]\naddress = \"127.0.0.1\"\n",
                user = sshd.user,
                port = sshd.port,
                key = sshd.identity_file().display(),
                kh = sshd.known_hosts().display(),
            )
        } else {
            String::new()
        };
        let stack = dir.path().join("stack.toml");
        std::fs::write(
            &stack,
            stack_text(&name, target, &connect, &image_section, app_port, tls)
                + &extra.replace("@STACK@", &name),
        )
        .expect("stack file");
        Host {
            sshd,
            _nginx: nginx,
            dir,
            name,
            repo,
            stack,
            http_port,
        }
    }

    fn prefix(&self) -> PathBuf {
        self.dir.path().join("nginx")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `fullslack ARGS --stack … ` with the host's Nginx, state directory and secrets.
    fn cli(&self, args: &[&str]) -> Command {
        cli_with(&self.stack, args)
    }

    /// The switch options every deploy and rollback of this host gets.
    fn switch_args(&self) -> Vec<String> {
        let prefix = self.prefix();
        vec![
            "--state-dir".into(),
            self.state().display().to_string(),
            "--nginx-site".into(),
            prefix
                .join(format!("sites/{}.conf", self.name))
                .display()
                .to_string(),
            "--nginx-conf".into(),
            prefix.join("nginx.conf").display().to_string(),
            "--nginx-prefix".into(),
            prefix.display().to_string(),
            "--http-port".into(),
            self.http_port.to_string(),
            "--listen-v4".into(),
            "127.0.0.1".into(),
            "--no-ipv6".into(),
            "--register-probe".into(),
            "--drain".into(),
            "10".into(),
        ]
    }

    /// `fullslack deploy --version V` (or `rollback [V]`) with `extra` flags.
    fn switch(&self, verb: &str, version: Option<&str>, extra: &[&str]) -> Output {
        let mut c = self.cli(&[verb]);
        match (verb, version) {
            ("deploy", Some(v)) => {
                c.args(["--version", v]);
            }
            (_, Some(v)) => {
                c.arg(v);
            }
            _ => {}
        }
        c.args(self.switch_args()).args(extra);
        c.output().expect("run fullslack")
    }

    /// Packs the debug server (or, for a broken release, another program) as `REPO:TAG`.
    fn build(&self, tag: &str, binary: Option<&Path>) {
        build_image(&self.repo, tag, binary);
    }

    /// `http://127.0.0.1:PORT`: the stack through Nginx.
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The version label of the container that serves now, per colour.
    fn containers(&self) -> Vec<String> {
        docker_ps(
            &format!("label=fullslack.stack={}", self.name),
            "{{.Names}} {{.Label \"fullslack.version\"}}",
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        remove_stack(&self.name, &self.repo);
    }
}

/// Removes every container, volume and network labelled with the stack's name, and the
/// images of its repository and of its accessories (`NAME/redis`).
fn remove_stack(name: &str, repo: &str) {
    let label = format!("label=fullslack.stack={name}");
    let listed = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .args(["--filter", &label, "--quiet"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    for id in listed(&["ps", "--all"]) {
        let _ = Command::new("docker")
            .args(["rm", "--force", "--volumes", &id])
            .output();
    }
    for v in listed(&["volume", "ls"]) {
        let _ = Command::new("docker")
            .args(["volume", "rm", "--force", &v])
            .output();
    }
    for n in listed(&["network", "ls"]) {
        let _ = Command::new("docker").args(["network", "rm", &n]).output();
    }
    for repo in [repo.to_string(), format!("{name}/redis")] {
        let images = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}", &repo])
            .output();
        if let Ok(images) = images {
            for image in String::from_utf8_lossy(&images.stdout).lines() {
                // --no-prune: the untagged parents are build-cache layers that another test's
                // build may be using at this moment (its build failed with "unknown parent
                // image ID" once when a teardown removed them).
                let _ = Command::new("docker")
                    .args(["rmi", "--force", "--no-prune", image])
                    .output();
            }
        }
    }
}

/// A private Nginx with its prefix at `prefix` (sites included from `sites/*.conf`).
fn start_nginx(prefix: &Path) -> ProcessGuard {
    std::fs::create_dir_all(prefix.join("sites")).expect("nginx prefix");
    let main = fullslack::nginx::render_main(
        prefix.to_str().expect("utf-8"),
        &format!("{}/sites/*.conf", prefix.display()),
        false,
    )
    .expect("main config");
    std::fs::write(prefix.join("nginx.conf"), main).expect("write nginx.conf");
    let child = Command::new(fullslack_test_support::paths::program("/usr/sbin/nginx"))
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-p")
        .arg(prefix)
        .args(["-e", "stderr"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let nginx = ProcessGuard::new(child);
    wait_for_file(&prefix.join("nginx.pid"));
    nginx
}

/// The stack file of a test stack (`connect`: its `[ssh]` and `[[hosts]]`, if any; `tls`: its
/// `[tls]` table).
fn stack_text(
    name: &str,
    target: &str,
    connect: &str,
    image: &str,
    app_port: u16,
    tls: &str,
) -> String {
    format!(
        "name = \"{name}\"\ndomains = [\"chat.example.test\"]\ntarget = \"{target}\"\n\
         {connect}{image}\
         [app]\nhost_port = {app_port}\n\
         [app.env]\n{LIMITS}\
         {tls}\
         [secrets]\nFULLSLACK_AUTH__JWT_SECRET = {{ env = \"DEPLOY_TEST_JWT\" }}\n",
    )
}

/// `docker ps --all --filter FILTER --format FORMAT`, one line per container, sorted.
fn docker_ps(filter: &str, format: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "--all", "--filter", filter, "--format", format])
        .output()
        .expect("docker ps");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// `fullslack ARGS --stack STACK` with the test's secrets and probe password.
fn cli_with(stack: &Path, args: &[&str]) -> Command {
    let mut c = fullslack_test_support::fullslack!();
    c.args(args)
        .arg("--stack")
        .arg(stack)
        .env("DEPLOY_TEST_JWT", JWT)
        .env("FULLSLACK_PROBE_PASSWORD", PROBE_PASSWORD)
        .env_remove("FULLSLACK_PROBE_TOKEN")
        .env_remove("FULLSLACK_STACK")
        // Outside GitHub Actions unless a test says otherwise (CI may run these in Actions).
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY");
    c
}

/// Packs the debug server (or, for a broken release, another program) as `REPO:TAG`.
fn build_image(repo: &str, tag: &str, binary: Option<&Path>) {
    let server = server_bin();
    let probe = PathBuf::from(env!("CARGO_BIN_EXE_fullslack-healthcheck"));
    let mut c = fullslack_test_support::fullslack!();
    c.args(["build", "--offline", "--binary"])
        .arg(binary.unwrap_or(&server))
        .args(["--context", concat!(env!("CARGO_MANIFEST_DIR"), "/..")])
        .args(["--image", repo, "--tag", tag]);
    match binary {
        Some(_) => c.arg("--no-healthcheck"),
        None => c.arg("--healthcheck-binary").arg(&probe),
    };
    let out = c.output().expect("run fullslack build");
    assert!(out.status.success(), "build {tag}: {}", text(&out));
}

/// A port P with P+100 free too (the blue and green ports of the stack's one replica).
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 100)).is_ok() {
            return p;
        }
    }
}

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `fullslack health URL` through Nginx: every check passes (the round trip included).
fn health_through_nginx(h: &Host) -> Output {
    h.cli(&["health", &h.url(), "--json"])
        .env_remove("FULLSLACK_STACK")
        .output()
        .expect("run health")
}

/// Packs Debian's `redis-server` (its shared libraries, loader and all) as `REPO:TAG` through
/// the offline image path: the image's entrypoint is `redis-server` itself, so the options
/// the deploy passes reach it directly.
fn build_redis_image(repo: &str, tag: &str) {
    let bin = Path::new("/usr/bin/redis-server");
    assert!(
        bin.is_file(),
        "/usr/bin/redis-server is missing: run scripts/test.sh (it installs redis-server)"
    );
    let mut c = fullslack_test_support::fullslack!();
    c.args(["build", "--offline", "--no-healthcheck", "--binary"])
        .arg(bin)
        .args(["--context", concat!(env!("CARGO_MANIFEST_DIR"), "/..")])
        .args(["--image", repo, "--tag", tag]);
    let out = c.output().expect("run fullslack build");
    assert!(out.status.success(), "build redis {tag}: {}", text(&out));
}

/// `GET URL/readyz` as JSON (the store's and Redis's state as the serving node sees them).
fn readyz(url: &str) -> serde_json::Value {
    let resp = reqwest::blocking::get(format!("{url}/readyz")).expect("GET /readyz");
    resp.json().expect("readyz JSON")
}

/// `docker inspect --format F NAME`, trimmed.
fn inspect(name: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, name])
        .output()
        .expect("docker inspect");
    assert!(
        out.status.success(),
        "docker inspect {name}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
