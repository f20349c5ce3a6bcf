//! `docker` command lines.

use super::{Cmd, StdinData};
use crate::secret::SecretString;

/// Settings of one chat container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Host port bound on 127.0.0.1.
    pub host_port: u16,
    /// Port inside the container.
    pub container_port: u16,
    /// Plain environment variables.
    pub env: Vec<(String, String)>,
    /// An env file on the host (secrets are written there, never on the command line).
    pub env_file: Option<String>,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Docker network.
    pub network: Option<String>,
    /// Named volumes mounted into the container, `(volume, path inside)`: the server's data
    /// directory lives on one, so it survives every release.
    pub volumes: Vec<(String, String)>,
    /// Docker restart policy (`unless-stopped`: restarted on crash and on boot, not after a
    /// deploy stopped it).
    pub restart: String,
}

/// The chat server's `trusted_proxies` for a container behind the host's Nginx, unless the
/// stack's env sets `FULLSLACK_TRUSTED_PROXIES` itself. The port is published on 127.0.0.1
/// only, so the container's peers are the host (Nginx, arriving from the Docker network's
/// gateway) and containers on the same network, all in Docker's default address pools; the
/// gateway's address depends on the network, hence the pools rather than one address.
/// Trusting them makes the server count each client by the `X-Forwarded-For` Nginx sets
/// instead of giving every client the gateway's single sign-in budget.
pub const HOST_TRUSTED_PROXIES: &str = "127.0.0.1,::1,172.16.0.0/12,192.168.0.0/16";

/// `docker run --detach …` for a chat container.
pub fn run(spec: &RunSpec) -> Cmd {
    let mut c = Cmd::new("docker").args([
        "run",
        "--detach",
        "--restart",
        &spec.restart,
        "--name",
        &spec.name,
        "--publish",
    ]);
    c = c.arg(format!(
        "127.0.0.1:{}:{}",
        spec.host_port, spec.container_port
    ));
    if let Some(net) = &spec.network {
        c = c.args(["--network", net]);
    }
    for (volume, path) in &spec.volumes {
        c = c.arg("--volume").arg(format!("{volume}:{path}"));
    }
    for (k, v) in &spec.labels {
        c = c.arg("--label").arg(format!("{k}={v}"));
    }
    for (k, v) in &spec.env {
        c = c.arg("--env").arg(format!("{k}={v}"));
    }
    if !spec
        .env
        .iter()
        .any(|(k, _)| k == "FULLSLACK_TRUSTED_PROXIES")
    {
        c = c
            .arg("--env")
            .arg(format!("FULLSLACK_TRUSTED_PROXIES={HOST_TRUSTED_PROXIES}"));
    }
    if let Some(f) = &spec.env_file {
        c = c.args(["--env-file", f]);
    }
    c.arg(&spec.image)
}

/// Settings of an accessory container (a stack's own Redis or MongoDB): no published port,
/// reached by its name on the stack's Docker network only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessorySpec {
    /// Container name (also its host name on the network).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// The stack's Docker network.
    pub network: String,
    /// Named volume and the path it is mounted at (the service's data directory).
    pub volume: (String, String),
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Arguments after the image (the service's options; the image's entrypoint runs them).
    pub args: Vec<String>,
}

/// `docker run --detach --restart unless-stopped …` for an accessory.
pub fn run_accessory(spec: &AccessorySpec) -> Cmd {
    let mut c = Cmd::new("docker").args([
        "run",
        "--detach",
        "--restart",
        "unless-stopped",
        "--name",
        &spec.name,
        "--network",
        &spec.network,
    ]);
    c = c
        .arg("--volume")
        .arg(format!("{}:{}", spec.volume.0, spec.volume.1));
    for (k, v) in &spec.labels {
        c = c.arg("--label").arg(format!("{k}={v}"));
    }
    c.arg(&spec.image)
        .args(spec.args.iter().map(String::as_str))
}

/// `docker network inspect --format '{{.Name}}' NAME`: fails when there is no such network.
pub fn network_inspect(name: &str) -> Cmd {
    Cmd::new("docker").args(["network", "inspect", "--format", "{{.Name}}", name])
}

/// `docker network create NAME` (a bridge network on this engine).
pub fn network_create(name: &str, labels: &[(String, String)]) -> Cmd {
    let mut c = Cmd::new("docker").args(["network", "create"]);
    for (k, v) in labels {
        c = c.arg("--label").arg(format!("{k}={v}"));
    }
    c.arg(name)
}

/// `docker inspect --format FORMAT NAME`: what FORMAT (a Go template) says of a container;
/// fails when there is no such container.
pub fn inspect(name: &str, format: &str) -> Cmd {
    Cmd::new("docker").args(["inspect", "--format", format, name])
}

/// `docker inspect --format '{{.Image}} {{.State.Status}}' NAME`: the image id a container
/// runs and its state; fails when there is no such container.
pub fn container_image(name: &str) -> Cmd {
    inspect(name, "{{.Image}} {{.State.Status}}")
}

/// `docker start NAME`.
pub fn start(name: &str) -> Cmd {
    Cmd::new("docker").args(["start", name])
}

/// `docker unpause NAME` (a paused container cannot be started).
pub fn unpause(name: &str) -> Cmd {
    Cmd::new("docker").args(["unpause", name])
}

/// `docker restart --time SECS NAME`: SIGTERM (the server drains), then started again.
pub fn restart(name: &str, grace_secs: u32) -> Cmd {
    Cmd::new("docker")
        .args(["restart", "--time"])
        .arg(grace_secs.to_string())
        .arg(name)
}

/// `docker stop --time SECS NAME`: SIGTERM, then the server drains its sockets.
pub fn stop(name: &str, grace_secs: u32) -> Cmd {
    Cmd::new("docker")
        .args(["stop", "--time"])
        .arg(grace_secs.to_string())
        .arg(name)
}

/// `docker rm --force NAME`.
pub fn rm(name: &str) -> Cmd {
    Cmd::new("docker").args(["rm", "--force", name])
}

/// `docker volume create NAME` (idempotent: an existing volume is kept as it is).
pub fn volume_create(name: &str, labels: &[(String, String)]) -> Cmd {
    let mut c = Cmd::new("docker").args(["volume", "create"]);
    for (k, v) in labels {
        c = c.arg("--label").arg(format!("{k}={v}"));
    }
    c.arg(name)
}

/// `docker logs --tail N NAME` (both streams; the deploy shows them when a release fails).
pub fn logs_tail(name: &str, lines: u32) -> Cmd {
    Cmd::new("docker")
        .args(["logs", "--tail"])
        .arg(lines.to_string())
        .arg(name)
}

/// `docker logs [--follow] [--since WHEN] [--tail N] NAME` (both streams).
pub fn logs(name: &str, follow: bool, since: Option<&str>, tail: Option<u32>) -> Cmd {
    let mut c = Cmd::new("docker").arg("logs");
    if follow {
        c = c.arg("--follow");
    }
    if let Some(s) = since {
        c = c.args(["--since", s]);
    }
    if let Some(n) = tail {
        c = c.arg("--tail").arg(n.to_string());
    }
    c.arg(name)
}

/// `docker exec NAME CMD…` (no terminal, no stdin).
pub fn exec(name: &str, command: &[String]) -> Cmd {
    Cmd::new("docker")
        .args(["exec", name])
        .args(command.iter().map(String::as_str))
}

/// `docker image inspect --format '{{.Id}}' IMAGE`: the image id, or a failure when the host
/// does not have it.
pub fn image_id(image: &str) -> Cmd {
    Cmd::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image])
}

/// `docker save IMAGE` (the image as a tar stream on stdout).
pub fn save(image: &str) -> Cmd {
    Cmd::new("docker").args(["save", image])
}

/// `docker save --output PATH IMAGE` (the image as a tar file: the deploy spools it to leave
/// out the layers a host has, which needs the `manifest.json` at the end of the tar).
pub fn save_to(image: &str, path: &str) -> Cmd {
    Cmd::new("docker").args(["save", "--output", path, image])
}

/// `docker image ls --all --quiet --no-trunc`: every image id, intermediate ones included
/// (their layer chains count too).
pub fn image_ids_all() -> Cmd {
    Cmd::new("docker").args(["image", "ls", "--all", "--quiet", "--no-trunc"])
}

/// `docker image inspect --format '{{json .RootFS.Layers}}' ID…`: one JSON list of diff IDs
/// (bottom layer first) per image.
pub fn rootfs_layers(ids: &[String]) -> Cmd {
    Cmd::new("docker")
        .args(["image", "inspect", "--format", "{{json .RootFS.Layers}}"])
        .args(ids.iter().map(String::as_str))
}

/// `docker load` (a tar stream on stdin, plain or gzip-compressed).
pub fn load() -> Cmd {
    Cmd::new("docker").args(["load", "--quiet"])
}

/// `docker rmi IMAGE` (fails, harmlessly, while a container still uses it).
pub fn rmi(image: &str) -> Cmd {
    Cmd::new("docker").args(["rmi", image])
}

/// `docker pull IMAGE`.
pub fn pull(image: &str) -> Cmd {
    Cmd::new("docker").args(["pull", image])
}

/// `docker login REGISTRY --username USER --password-stdin`: the password goes on stdin.
pub fn login(registry: &str, username: &str, password: SecretString) -> Cmd {
    Cmd::new("docker")
        .args([
            "login",
            registry,
            "--username",
            username,
            "--password-stdin",
        ])
        .stdin(StdinData::Secret(password))
}

/// `docker inspect --format '{{.State.Health.Status}}' NAME`-style state query.
pub fn state(name: &str) -> Cmd {
    inspect(name, "{{.State.Status}}")
}

/// `docker ps` of this stack's containers.
pub fn ps(stack: &str) -> Cmd {
    Cmd::new("docker").args([
        "ps",
        "--all",
        "--filter",
        &format!("label=fullslack.stack={stack}"),
        "--format",
        "{{.Names}}\t{{.Image}}\t{{.Status}}",
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec {
            name: "chat-blue".into(),
            image: "registry.example.com/fullslack/chat:v1".into(),
            host_port: 8100,
            container_port: 8080,
            env: vec![
                ("RUST_LOG".into(), "info".into()),
                ("GREETING".into(), "it's $(whoami) `id`".into()),
            ],
            env_file: Some("/etc/fullslack/chat/env".into()),
            labels: vec![("fullslack.stack".into(), "chat".into())],
            network: Some("fullslack".into()),
            volumes: vec![("chat-data".into(), "/data".into())],
            restart: "unless-stopped".into(),
        }
    }

    #[test]
    fn run_line() {
        assert_eq!(
            run(&spec()).to_shell(),
            "docker run --detach --restart unless-stopped --name chat-blue \
             --publish 127.0.0.1:8100:8080 --network fullslack \
             --volume chat-data:/data --label fullslack.stack=chat --env RUST_LOG=info \
             --env 'GREETING=it'\\''s $(whoami) `id`' \
             --env FULLSLACK_TRUSTED_PROXIES=127.0.0.1,::1,172.16.0.0/12,192.168.0.0/16 \
             --env-file /etc/fullslack/chat/env registry.example.com/fullslack/chat:v1"
        );
        // The stack's own value wins.
        let mut own = spec();
        own.env
            .push(("FULLSLACK_TRUSTED_PROXIES".into(), "10.0.0.2".into()));
        let line = run(&own).to_shell();
        assert!(
            line.contains("--env FULLSLACK_TRUSTED_PROXIES=10.0.0.2 --env-file"),
            "{line}"
        );
        assert_eq!(
            line.matches("FULLSLACK_TRUSTED_PROXIES").count(),
            1,
            "{line}"
        );
    }

    #[test]
    fn stop_rm_pull() {
        assert_eq!(
            stop("chat-green", 30).to_shell(),
            "docker stop --time 30 chat-green"
        );
        assert_eq!(rm("chat-green").to_shell(), "docker rm --force chat-green");
        assert_eq!(
            pull("fullslack/chat:latest").to_shell(),
            "docker pull fullslack/chat:latest"
        );
        assert_eq!(
            pull("evil;rm -rf /").to_shell(),
            "docker pull 'evil;rm -rf /'"
        );
    }

    #[test]
    fn login_keeps_password_off_the_command_line() {
        let c = login(
            "registry.example.com",
            "deploy",
            SecretString::from("s3cr'et"),
        );
        assert_eq!(
            c.to_shell(),
            "docker login registry.example.com --username deploy --password-stdin"
        );
        assert_eq!(
            c.stdin.as_ref().map(StdinData::bytes),
            Some(&b"s3cr'et"[..])
        );
        assert_eq!(
            c.to_string(),
            "docker login registry.example.com --username deploy --password-stdin <<< [redacted]"
        );
    }

    #[test]
    fn volume_logs_image_lines() {
        assert_eq!(
            volume_create("chat-data", &[("fullslack.stack".into(), "chat".into())]).to_shell(),
            "docker volume create --label fullslack.stack=chat chat-data"
        );
        assert_eq!(
            logs_tail("chat-green", 40).to_shell(),
            "docker logs --tail 40 chat-green"
        );
        assert_eq!(
            image_id("chat:v1").to_shell(),
            "docker image inspect --format '{{.Id}}' chat:v1"
        );
        assert_eq!(save("chat:v1").to_shell(), "docker save chat:v1");
        assert_eq!(load().to_shell(), "docker load --quiet");
        assert_eq!(rmi("chat:v0").to_shell(), "docker rmi chat:v0");
    }

    #[test]
    fn accessory_lines() {
        let spec = AccessorySpec {
            name: "chat-redis".into(),
            image: "redis:7-alpine".into(),
            network: "chat-net".into(),
            volume: ("chat-redis-data".into(), "/data".into()),
            labels: vec![("fullslack.stack".into(), "chat".into())],
            args: vec!["--appendonly".into(), "yes".into()],
        };
        assert_eq!(
            run_accessory(&spec).to_shell(),
            "docker run --detach --restart unless-stopped --name chat-redis --network chat-net \
             --volume chat-redis-data:/data --label fullslack.stack=chat redis:7-alpine \
             --appendonly yes"
        );
        assert_eq!(
            network_create("chat-net", &[("fullslack.stack".into(), "chat".into())]).to_shell(),
            "docker network create --label fullslack.stack=chat chat-net"
        );
        assert_eq!(
            network_inspect("chat-net").to_shell(),
            "docker network inspect --format '{{.Name}}' chat-net"
        );
        assert_eq!(
            container_image("chat-redis").to_shell(),
            "docker inspect --format '{{.Image}} {{.State.Status}}' chat-redis"
        );
        assert_eq!(start("chat-redis").to_shell(), "docker start chat-redis");
    }

    #[test]
    fn logs_and_exec_lines() {
        assert_eq!(
            logs("chat-blue", true, Some("10m"), Some(50)).to_shell(),
            "docker logs --follow --since 10m --tail 50 chat-blue"
        );
        assert_eq!(
            logs("chat-blue", false, None, None).to_shell(),
            "docker logs chat-blue"
        );
        assert_eq!(
            exec(
                "chat-blue",
                &["sh".into(), "-c".into(), "echo $HOME; id".into()]
            )
            .to_shell(),
            "docker exec chat-blue sh -c 'echo $HOME; id'"
        );
    }

    #[test]
    fn ps_and_state() {
        assert_eq!(
            ps("chat").to_shell(),
            "docker ps --all --filter label=fullslack.stack=chat --format '{{.Names}}\t{{.Image}}\t{{.Status}}'"
        );
        assert_eq!(
            state("chat-blue").to_shell(),
            "docker inspect --format '{{.State.Status}}' chat-blue"
        );
    }
}
