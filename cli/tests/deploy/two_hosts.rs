//! Issue 14, test 8: two hosts rolled one at a time; the second fails; the first is put back
//! on the previous release.
//!
//! Two sshd stand-ins drive the one Docker Engine of this machine, kept apart by the hosts'
//! `name` (`web1`, `web2`), `app_port`, `http_port` and the `{host}` paths of the state
//! directory and of each host's own private Nginx. Two chat nodes must share Redis and MongoDB
//! (stack validation):
//! - Redis is the stack's managed accessory (Debian's `redis-server` packed offline), run on
//!   the first host; both hosts' chat containers reach it by name on the stack network (they
//!   share the engine, so the network; on separate machines the deploy refuses this).
//! - MongoDB is an external one, as a real stack gives it (`mode = "external"`, its URL a
//!   secret): SecantusDB, the Mongo-wire server the store contract tests already run, listening
//!   on the Docker bridge's gateway address (a container cannot reach this machine's loopback,
//!   but it reaches the gateway: that is the host, as a MongoDB on a private network would be).
//!   No mongod is packaged for this machine, so a managed MongoDB accessory cannot be built
//!   here.
//!
//! Host 2 fails the way a real host does: after v1 is live everywhere, another program on
//! host 2 takes the port v2 needs there (its idle colour's loopback port), so v2 cannot start
//! on host 2; host 1 has already switched to v2 and must go back to v1.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fullslack_test_support::{free_port, paths, ProcessGuard, Sshd};

use super::{
    build_image, build_redis_image, cli_with, free_port_pair, readyz, remove_stack, start_nginx,
    text, LIMITS,
};

/// SecantusDB on `addr`:PORT with its data under `dir`; killed when dropped.
struct Mongo {
    _proc: ProcessGuard,
    url: String,
}

/// The Docker bridge's gateway address (the address of its interface on this machine, e.g.
/// `docker0`'s `172.17.0.1`): this machine as containers see it.
fn docker_gateway() -> String {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{index .Options \"com.docker.network.bridge.name\"}}",
        ])
        .output()
        .expect("docker network inspect");
    assert!(out.status.success(), "{}", text(&out));
    let bridge = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &bridge])
        .output()
        .expect("ip addr");
    assert!(
        out.status.success(),
        "ip addr show dev {bridge}: {}",
        text(&out)
    );
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = listing.split_whitespace();
    words
        .find(|w| *w == "inet")
        .and_then(|_| words.next())
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address on {bridge}: {listing}"))
        .to_string()
}

fn start_mongo(dir: &Path, db: &str) -> Mongo {
    let bin = paths::test_runtime().join("venv-secantus/bin/secantusd-py");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/test.sh (it installs SecantusDB through scripts/secantus.sh)",
        bin.display()
    );
    let addr = docker_gateway();
    let port = free_port();
    std::fs::create_dir_all(dir.join("data")).expect("mongo dir");
    let log = std::fs::File::create(dir.join("secantusd.log")).expect("log");
    let proc = ProcessGuard::spawn(
        "secantusd-py",
        Command::new(&bin)
            .args(["--host", &addr, "--port", &port.to_string()])
            .arg("--storage-path")
            .arg(dir.join("data"))
            // It looks for ./secantusd.toml: run it where there is none.
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect((addr.as_str(), port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "SecantusDB did not listen on {addr}:{port}; log: {}",
            std::fs::read_to_string(dir.join("secantusd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Mongo {
        _proc: proc,
        url: format!("mongodb://{addr}:{port}/{db}"),
    }
}

/// Versions of the chat containers of one host (`NAME-HOST-…`), sorted.
fn versions_on(stack: &str, host: &str) -> Vec<String> {
    super::docker_ps(
        &format!("name=^{stack}-{host}-"),
        "{{.Label \"fullslack.version\"}} {{.State}}",
    )
}

/// Removes the stack's Docker resources when the test ends, passed or failed.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_stack(&self.0, &format!("{}/chat", self.0));
    }
}

fn assert_serves(url: &str, what: &str) {
    let r = readyz(url);
    assert_eq!(r["status"], "ready", "{what}: {r}");
    assert_eq!(r["redis"], "ok", "{what}: {r}");
    assert_eq!(r["store"], "ok", "{what}: {r}");
}

#[test]
fn two_hosts_roll_one_at_a_time_and_the_first_is_put_back_when_the_second_fails() {
    let dir = paths::short_tempdir();
    let name = format!("fsd-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let _cleanup = Cleanup(name.clone());
    let root = dir.path();
    for d in ["s1", "s2", "mongo"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let sshd1 = Sshd::start(&root.join("s1"));
    let sshd2 = Sshd::start(&root.join("s2"));
    // One client key and one known_hosts file for the stack, as for real hosts.
    let key_pub = std::fs::read_to_string(root.join("s1/client_key.pub")).expect("key");
    std::fs::write(root.join("s2/authorized_keys"), key_pub).expect("authorize");
    let known = std::fs::read_to_string(sshd1.known_hosts()).expect("kh1")
        + &std::fs::read_to_string(sshd2.known_hosts()).expect("kh2");
    std::fs::write(root.join("known_hosts"), known).expect("known_hosts");
    let _nginx1 = start_nginx(&root.join("web1/nginx"));
    let _nginx2 = start_nginx(&root.join("web2/nginx"));
    let mongo = start_mongo(&root.join("mongo"), &name.replace('-', "_"));

    let (http1, http2) = (free_port(), free_port());
    let app1 = free_port_pair();
    let app2 = loop {
        let p = free_port_pair();
        if p.abs_diff(app1) != 100 && p != app1 {
            break p;
        }
    };
    let host = |n: &str, sshd: &Sshd, app: u16, http: u16| {
        format!(
            "[[hosts]]\naddress = \"127.0.0.1\"\nport = {}\nname = \"{n}\"\napp_port = {app}\nhttp_port = {http}\n",
            sshd.port
        )
    };
    let stack = root.join("stack.toml");
    std::fs::write(
        &stack,
        format!(
            "name = \"{name}\"\ndomains = [\"chat.example.test\"]\ntarget = \"ssh\"\n\
             [ssh]\nuser = \"{user}\"\nidentity_file = \"{key}\"\nknown_hosts = \"{kh}\"\n\
             {h1}{h2}\
             [image]\nname = \"{name}/chat\"\n\
             [app.env]\n{LIMITS}\
             [redis]\nmode = \"managed\"\nimage = \"{name}/redis:7\"\n\
             [mongodb]\nmode = \"external\"\nurl = {{ env = \"DEPLOY_TEST_MONGO_URL\" }}\n\
             [tls]\nenabled = false\n\
             [secrets]\nFULLSLACK_AUTH__JWT_SECRET = {{ env = \"DEPLOY_TEST_JWT\" }}\n",
            user = sshd1.user,
            key = sshd1.identity_file().display(),
            kh = root.join("known_hosts").display(),
            h1 = host("web1", &sshd1, app1, http1),
            h2 = host("web2", &sshd2, app2, http2),
        ),
    )
    .expect("stack file");
    let repo = format!("{name}/chat");
    build_redis_image(&format!("{name}/redis"), "7");
    build_image(&repo, "v1", None);
    build_image(&repo, "v2", None);

    let deploy = |version: &str| -> Output {
        let r = root.display();
        cli_with(&stack, &["deploy", "--version", version])
            .env("DEPLOY_TEST_MONGO_URL", &mongo.url)
            .args(["--state-dir", &format!("{r}/{{host}}/state")])
            .args([
                "--nginx-site",
                &format!("{r}/{{host}}/nginx/sites/{name}.conf"),
            ])
            .args(["--nginx-conf", &format!("{r}/{{host}}/nginx/nginx.conf")])
            .args(["--nginx-prefix", &format!("{r}/{{host}}/nginx")])
            .args(["--listen-v4", "127.0.0.1", "--no-ipv6", "--register-probe"])
            .args(["--drain", "10"])
            .output()
            .expect("run deploy")
    };
    let (url1, url2) = (
        format!("http://127.0.0.1:{http1}"),
        format!("http://127.0.0.1:{http2}"),
    );

    // v1 everywhere: one Redis for both, both nodes on the one MongoDB.
    let out = deploy("v1");
    assert!(out.status.success(), "deploy v1: {}", text(&out));
    assert_eq!(versions_on(&name, "web1"), ["v1 running"]);
    assert_eq!(versions_on(&name, "web2"), ["v1 running"]);
    assert_serves(&url1, "host 1 on v1");
    assert_serves(&url2, "host 2 on v1");

    // Another program on host 2 takes the loopback port of host 2's idle colour (v1 went to
    // blue, `app_port`; v2 would start on green, 100 above).
    let squatter = TcpListener::bind(("127.0.0.1", app2 + 100)).expect("take host 2's port");
    let out = deploy("v2");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the deploy stopped at {}@127.0.0.1:{}",
            sshd2.user, sshd2.port
        )),
        "the error names host 2: {all}"
    );
    assert!(
        stderr.contains("release v2 could not start"),
        "the error says what failed: {all}"
    );
    assert!(
        stderr.contains(&format!("127.0.0.1:{} put back on v1", sshd1.port)),
        "host 1 was put back: {all}"
    );
    // Host 1 had switched to v2 before host 2 failed: it serves v1 again, through its Nginx.
    assert_eq!(versions_on(&name, "web1"), ["v1 running"], "{all}");
    assert_serves(&url1, "host 1 put back on v1");
    // Host 2's v1 never stopped serving; v2 left nothing behind there.
    assert_eq!(versions_on(&name, "web2"), ["v1 running"], "{all}");
    assert_serves(&url2, "host 2 still on v1");
    // Each host's release log says v1 is live.
    for h in ["web1", "web2"] {
        let log = std::fs::read_to_string(root.join(format!("{h}/state/{name}-{h}/releases.json")))
            .expect("release log");
        let log: serde_json::Value = serde_json::from_str(&log).expect("release log JSON");
        assert_eq!(log["releases"][0]["version"], "v1", "{h}: {log}");
    }
    drop(squatter);
}
