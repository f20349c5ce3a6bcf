//! `ec2` end to end (issue 14, test 7): `deploy` on an `ec2` stack plans and applies first on
//! moto (the plan shown; refused without `--yes` when there is no terminal), then deploys over
//! SSH to the instance it made. The address moto hands out is not reachable; the stack's
//! `ssh.config_file` (`ssh -F`) maps every host name to the sshd stand-in on loopback, as an
//! ssh config maps a name to a bastion or a tunnel in real life. `health` is green after.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fullslack_test_support::moto::Moto;
use serde_json::Value;

use super::{cli_with, free_port_pair, health_through_nginx, text, Host, LIMITS};

/// The `ec2` twin of the host's stack: same name and image, AWS instead of `[[hosts]]`.
fn ec2_stack(h: &Host) -> PathBuf {
    let config = h.dir.path().join("ssh_config");
    std::fs::write(&config, "Host *\n    HostName 127.0.0.1\n").expect("ssh config");
    let text = format!(
        "name = \"{name}\"\ndomains = [\"chat.example.test\"]\ntarget = \"ec2\"\n\
         [ec2]\nregion = \"us-east-1\"\ninstance_type = \"t3.small\"\ncount = 1\nami = \"al2023\"\n\
         key_name = \"{name}-key\"\npublic_key_file = \"{key}.pub\"\nssh_cidr = \"203.0.113.7/32\"\n\
         [ssh]\nuser = \"{user}\"\nport = {port}\nidentity_file = \"{key}\"\nknown_hosts = \"{kh}\"\n\
         config_file = \"{config}\"\n\
         [image]\nname = \"{repo}\"\n\
         [app]\nhost_port = {app_port}\n[app.env]\n{LIMITS}\
         [tls]\nenabled = false\n\
         [secrets]\nFULLSLACK_AUTH__JWT_SECRET = {{ env = \"DEPLOY_TEST_JWT\" }}\n",
        name = h.name,
        key = h.sshd.identity_file().display(),
        user = h.sshd.user,
        port = h.sshd.port,
        kh = h.sshd.known_hosts().display(),
        config = config.display(),
        repo = h.repo,
        app_port = free_port_pair(),
    );
    let path = h.dir.path().join("ec2.toml");
    std::fs::write(&path, text).expect("stack file");
    path
}

/// `fullslack deploy` of the `ec2` stack against moto, standard input not a terminal.
fn deploy(h: &Host, moto: &Moto, stack: &Path, extra: &[&str]) -> Output {
    let mut c: Command = cli_with(stack, &["deploy", "--version", "v1"]);
    c.args(h.switch_args()).args(extra).stdin(Stdio::null());
    moto.env(&mut c);
    c.env("DEPLOY_TEST_JWT", super::JWT)
        .env("FULLSLACK_PROBE_PASSWORD", super::PROBE_PASSWORD)
        .output()
        .expect("run deploy")
}

#[test]
fn an_ec2_deploy_provisions_then_deploys_over_ssh_and_is_healthy() {
    let moto = Moto::start(None);
    let h = Host::new();
    h.build("v1", None);
    let stack = ec2_stack(&h);

    let out = deploy(&h, &moto, &stack, &[]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("to create"), "the plan is shown: {all}");
    assert!(all.contains("--yes"), "the refusal names --yes: {all}");
    assert!(h.containers().is_empty(), "nothing deployed: {all}");

    let out = deploy(&h, &moto, &stack, &["--yes", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    // stdout: apply's JSON document, then the deploy's.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("JSON documents");
    let deployed = docs.last().expect("the deploy's document");
    let host = deployed["hosts"][0]["host"].as_str().expect("host label");
    assert!(
        !host.contains("@127.0.0.1:"),
        "the host is the instance's address from moto, reached through the ssh config: {deployed:#}"
    );
    assert_eq!(deployed["hosts"][0]["version"], "v1", "{deployed:#}");
    assert_eq!(h.containers(), [format!("{}-blue v1", h.name)]);
    let out = health_through_nginx(&h);
    assert!(out.status.success(), "health: {}", text(&out));
}
