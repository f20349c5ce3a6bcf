//! Deploying through a registry (Debian's `docker-registry` on loopback, htpasswd auth): the
//! deploy pushes the release's image first (no `fullslack push` before it), then the host logs
//! in with the password on stdin and pulls it; a second deploy of the same image finds it in
//! the registry and pushes nothing. A wrong password fails the deploy at the push, before
//! anything changes on the host.

use super::{text, Host};
use fullslack_test_support::registry::{start_registry, Registry};

#[test]
fn a_registry_deploy_logs_in_with_the_password_on_stdin_and_pulls() {
    let reg = start_registry(Some(("deployer", "registry pass 123")));
    let (_, pass) = reg.credentials.clone().expect("the registry has auth on");
    let h = Host::with_registry(&reg.addr);
    h.build("v1", None);
    let reference = format!("{}:v1", h.repo);

    // The wrong password: the push fails, the host is not touched.
    let bad = {
        let mut c = h.cli(&["deploy", "--version", "v1"]);
        c.args(h.switch_args())
            .env("DEPLOY_TEST_REGISTRY_PW", "not the password");
        c.output().expect("deploy")
    };
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&format!("push of {reference} failed (auth)")),
        "{err}"
    );
    assert!(
        !err.contains("not the password"),
        "the password was printed: {err}"
    );
    assert!(h.containers().is_empty(), "{:?}", h.containers());
    assert_eq!(reg.digest(registry_path(&reg, &h.repo), "v1"), None);

    let good = {
        let mut c = h.cli(&["deploy", "--json", "--version", "v1"]);
        c.args(h.switch_args())
            .env("DEPLOY_TEST_REGISTRY_PW", &pass);
        c.output().expect("deploy")
    };
    assert!(good.status.success(), "{}", text(&good));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        !all.contains("registry pass 123"),
        "the password was printed"
    );
    let v: serde_json::Value = serde_json::from_slice(&good.stdout).expect("json");
    assert_eq!(v["hosts"][0]["version"], "v1", "{v:#}");
    assert_eq!(
        v["hosts"][0]["bytes_sent"], 0,
        "a registry deploy streams nothing over SSH"
    );
    assert_eq!(h.containers(), [format!("{}-blue v1", h.name)]);
    // The deploy pushed it: the registry has the tag at the digest the deploy reported.
    assert_eq!(v["image"]["result"], "pushed", "{v:#}");
    assert_eq!(v["image"]["reference"], reference.as_str(), "{v:#}");
    let digest = reg.digest(registry_path(&reg, &h.repo), "v1");
    assert!(digest.is_some(), "v1 is not in the registry");
    assert_eq!(v["image"]["digest"].as_str(), digest.as_deref(), "{v:#}");
    let health = super::health_through_nginx(&h);
    assert!(health.status.success(), "{}", text(&health));

    // Deployed again: the registry has that digest under the tag, nothing is pushed.
    let again = {
        let mut c = h.cli(&["deploy", "--version", "v1"]);
        c.args(h.switch_args())
            .env("DEPLOY_TEST_REGISTRY_PW", &pass);
        c.output().expect("deploy")
    };
    assert!(again.status.success(), "{}", text(&again));
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(
        out.contains(&format!(
            "{reference}@{} already in the registry: not pushed",
            digest.unwrap_or_default()
        )),
        "{out}"
    );
    let _ = std::process::Command::new("docker")
        .args(["logout", &reg.addr])
        .output();
}

/// The registry's path of `repo` (`ADDR/PATH`).
fn registry_path<'a>(reg: &Registry, repo: &'a str) -> &'a str {
    repo.strip_prefix(&format!("{}/", reg.addr))
        .expect("a repository of the registry")
}
