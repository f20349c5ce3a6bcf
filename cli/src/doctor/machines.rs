//! The machines commands run on and from: SSH to each host (key file, port, a real login with
//! strict host key checking), the Docker Engine this machine builds with, AWS credentials.

use std::path::PathBuf;
use std::time::Instant;

use super::{reachable, DoctorOptions};
use crate::check::Check;
use crate::stack::Stack;

fn expand_home(p: &str, home: Option<&PathBuf>) -> PathBuf {
    match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    }
}

/// The SSH key, and each host's SSH port and a real login.
pub(super) async fn ssh_checks(stack: &Stack, o: &DoctorOptions) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(key) = &stack.ssh.identity_file {
        let path = expand_home(key, o.home.as_ref());
        out.push(match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Check::ok("ssh.key", key, format!("{} exists", path.display())),
            _ => Check::fail(
                "ssh.key",
                key,
                format!("{} does not exist", path.display()),
                "create a key with `ssh-keygen -t ed25519` and install it on the host (ssh-copy-id), or fix ssh.identity_file",
            ),
        });
    }
    if stack.hosts.is_empty() {
        out.push(Check::skip(
            "ssh.reach",
            &stack.name,
            "no hosts in the stack file yet (EC2 instances are created by apply)",
        ));
    }
    for h in &stack.hosts {
        let port = h.port.unwrap_or(stack.ssh.port);
        let subject = format!("{}:{port}", h.address);
        let addr = tokio::net::lookup_host((h.address.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next());
        out.push(match addr {
            None => Check::fail(
                "ssh.reach",
                &subject,
                "cannot resolve the host",
                "fix hosts[].address in the stack file",
            ),
            Some(a) => match reachable(a, o.timeout).await {
                Ok(d) => {
                    out.push(Check::ok("ssh.reach", &subject, "SSH port answers").with_latency(d));
                    out.push(ssh_login(stack, h, o).await);
                    continue;
                }
                Err(e) => Check::fail(
                    "ssh.reach",
                    &subject,
                    format!("cannot connect: {e}"),
                    format!("open port {port} to this machine's address and check sshd runs"),
                ),
            },
        });
    }
    out
}

/// Logs in for real (strict host key checking) and runs `true`.
async fn ssh_login(stack: &Stack, h: &crate::stack::Host, o: &DoctorOptions) -> Check {
    use crate::runner::{Runner, SshRunner, SshTarget};
    let user = h.user.clone().unwrap_or_else(|| stack.ssh.user.clone());
    let port = h.port.unwrap_or(stack.ssh.port);
    let subject = format!("{user}@{}:{port}", h.address);
    let mut t = SshTarget::new(h.address.clone(), user, port);
    t.identity_file = stack
        .ssh
        .identity_file
        .as_deref()
        .map(|k| expand_home(k, o.home.as_ref()));
    t.known_hosts = stack
        .ssh
        .known_hosts
        .as_deref()
        .map(|k| expand_home(k, o.home.as_ref()));
    t.connect_timeout = o.timeout;
    t.control_dir = Some(std::env::temp_dir());
    let started = Instant::now();
    let attempt = async {
        let r = SshRunner::connect(&t).await?;
        let res = r.check(&crate::commands::Cmd::new("true")).await;
        let _ = r.close().await;
        res
    };
    match tokio::time::timeout(o.timeout * 3, attempt).await {
        Ok(Ok(_)) => Check::ok("ssh.login", &subject, "logged in with the key, host key known")
            .with_latency(started.elapsed()),
        Ok(Err(e)) => Check::fail(
            "ssh.login",
            &subject,
            e.to_string(),
            format!(
                "install your public key on the host (ssh-copy-id -p {port} {}) and record its host key (ssh-keyscan -p {port} {} >> ~/.ssh/known_hosts, after checking the fingerprint)",
                h.address, h.address
            ),
        ),
        Err(_) => Check::fail(
            "ssh.login",
            &subject,
            "SSH login did not finish in time",
            "check the host's sshd and your network; rerun with -v",
        ),
    }
}

/// The Docker Engine answers `/_ping` on its socket.
pub(super) async fn docker_check(o: &DoctorOptions) -> Check {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = o.docker_socket.display().to_string();
    let attempt = async {
        let mut s = tokio::net::UnixStream::connect(&o.docker_socket).await?;
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match tokio::time::timeout(o.timeout, attempt).await {
        Ok(Ok(resp)) if resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200") => {
            Check::ok("docker", &sock, "Docker Engine answers /_ping")
        }
        Ok(Ok(resp)) => Check::fail(
            "docker",
            &sock,
            format!("unexpected answer: {}", resp.lines().next().unwrap_or("")),
            "restart the Docker Engine (`systemctl restart docker`)",
        ),
        Ok(Err(e)) => Check::fail(
            "docker",
            &sock,
            format!("cannot reach the Docker Engine: {e}"),
            "install and start Docker, and make sure your user may use the socket (group docker), or set DOCKER_HOST",
        ),
        Err(_) => Check::fail(
            "docker",
            &sock,
            "the Docker Engine did not answer in time",
            "restart the Docker Engine",
        ),
    }
}

/// Credentials as the commands will find them: the SDK's default chain (environment, profile
/// files with SSO, web identity, container and instance roles), no AWS API call.
pub(super) async fn aws_check(o: &DoctorOptions) -> Check {
    match fullslack_aws::config::find_credentials(o.home.as_deref()).await {
        Ok(provider) => Check::ok(
            "aws",
            &provider,
            "credentials found by the AWS SDK's default chain",
        ),
        Err(e) => Check::fail(
            "aws",
            "credential chain",
            e.to_string(),
            "run `aws configure` (or `aws sso login --profile NAME` and set AWS_PROFILE), export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a web identity, container or instance role is available",
        ),
    }
}
