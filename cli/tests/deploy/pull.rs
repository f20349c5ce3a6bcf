//! Deploying through a registry (Debian's `docker-registry` on loopback, htpasswd auth): the
//! image is pushed, and the host logs in with the password on stdin and pulls it. A wrong
//! password fails the deploy before anything changes on the host.

use super::{text, Host};
use fullslack_test_support::registry::start_registry;

#[test]
fn a_registry_deploy_logs_in_with_the_password_on_stdin_and_pulls() {
    let reg = start_registry(Some(("deployer", "registry pass 123")));
    let (user, pass) = reg.credentials.clone().expect("the registry has auth on");
    let h = Host::with_registry(&reg.addr);
    h.build("v1", None);
    let out = fullslack_test_support::fullslack!()
        .args(["push", &format!("{}:v1", h.repo), "--username", &user])
        .env("FULLSLACK_REGISTRY_PASSWORD", &pass)
        .output()
        .expect("push");
    assert!(out.status.success(), "push: {}", text(&out));

    // The wrong password: the login on the host fails, nothing is started.
    let bad = {
        let mut c = h.cli(&["deploy", "--version", "v1"]);
        c.args(h.switch_args())
            .env("DEPLOY_TEST_REGISTRY_PW", "not the password");
        c.output().expect("deploy")
    };
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("docker login"), "{err}");
    assert!(
        !err.contains("not the password"),
        "the password was printed: {err}"
    );
    assert!(h.containers().is_empty(), "{:?}", h.containers());

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
    let health = super::health_through_nginx(&h);
    assert!(health.status.success(), "{}", text(&health));
    let _ = std::process::Command::new("docker")
        .args(["logout", &reg.addr])
        .output();
}
