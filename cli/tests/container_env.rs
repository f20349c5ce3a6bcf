//! The environment a stack gives its chat containers, tried on real `fullslack-chat`
//! processes: every node signs with the stack's one secret in production mode, so a token from
//! one node is accepted by another (and by the next release).

use std::path::PathBuf;

use fullslack_test_support::{chat_binary::spawn_chat_server_with_env, paths::tempdir};

use fullslack::secret::{SecretRef, SecretString};
use fullslack::stack;

const SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0-stack-jwt-secret";

fn example(name: &str) -> stack::Stack {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../stacks/{name}.toml"));
    stack::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The variables one node of `s` runs with, as the image and the stack set them, with the
/// secret references resolved; then what only a test changes: a loopback port, a data
/// directory of its own, and one store shared by the nodes (MongoDB in a real multi-node
/// stack; here one SQLite file in WAL mode).
fn node_env(
    s: &stack::Stack,
    data_dir: &std::path::Path,
    store: &std::path::Path,
) -> Vec<(String, String)> {
    let env = s
        .container_env(|r| match r {
            SecretRef::Env(var) if var == stack::JWT_SECRET_ENV => {
                Ok::<_, String>(SecretString::from(SECRET))
            }
            other => Err(format!("unexpected secret reference {other}")),
        })
        .expect("container env");
    std::fs::create_dir_all(data_dir).expect("data dir");
    let mut vars = env.effective();
    for (k, v) in [
        ("FULLSLACK_LISTEN", "127.0.0.1:0".to_string()),
        ("FULLSLACK_DATA_DIR", data_dir.display().to_string()),
        ("FULLSLACK_STORE_URL", format!("sqlite:{}", store.display())),
    ] {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v));
    }
    vars
}

#[test]
fn two_nodes_started_from_a_stack_accept_each_others_tokens() {
    let s = example("ssh-host");
    let dir = tempdir();
    let store = dir.path().join("shared.db");
    let env_a = node_env(&s, &dir.path().join("a"), &store);
    assert!(
        env_a.contains(&("FULLSLACK_MODE".into(), "production".into())),
        "deployed images run in production mode: {:?}",
        env_a.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    assert!(env_a.contains(&(stack::JWT_SECRET_ENV.into(), SECRET.into())));
    let a = spawn_chat_server_with_env(&env_a).unwrap_or_else(|e| panic!("node a: {e}"));
    let b = spawn_chat_server_with_env(&node_env(&s, &dir.path().join("b"), &store))
        .unwrap_or_else(|e| panic!("node b: {e}"));

    let client = reqwest::blocking::Client::new();
    let signed_up: serde_json::Value = client
        .post(format!("{}/api/auth/register", a.base))
        .json(&serde_json::json!({"username": "crossing", "password": "token-crosses-nodes"}))
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .and_then(reqwest::blocking::Response::json)
        .expect("register on node a");
    let token = signed_up["token"].as_str().expect("token");
    for (name, node) in [("a", &a), ("b", &b)] {
        let me = client
            .get(format!("{}/api/me", node.base))
            .bearer_auth(token)
            .send()
            .expect("GET /api/me");
        assert_eq!(me.status(), 200, "node {name} refuses node a's token");
    }
    // A node's logs carry no colour codes when they do not go to a terminal.
    let logs = a.stderr();
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI codes in piped logs: {logs:?}"
    );
}

#[test]
fn a_node_without_the_stack_secret_refuses_to_start_instead_of_making_its_own() {
    let s = example("ssh-host");
    let dir = tempdir();
    let mut env = node_env(&s, &dir.path().join("a"), &dir.path().join("x.db"));
    // The name the examples used to carry: the server does not read it.
    env.retain(|(k, _)| k != stack::JWT_SECRET_ENV);
    env.push(("FULLSLACK_JWT_SECRET".into(), SECRET.into()));
    let Err(err) = spawn_chat_server_with_env(&env) else {
        panic!("production mode started without FULLSLACK_AUTH__JWT_SECRET")
    };
    assert!(err.contains("FULLSLACK_AUTH__JWT_SECRET"), "{err}");
    // And `stack check` refuses that name before anything is deployed.
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stacks/ssh-host.toml"),
    )
    .expect("read")
    .replace("FULLSLACK_AUTH__JWT_SECRET = {", "FULLSLACK_JWT_SECRET = {");
    let errs = stack::parse(&text).expect_err("misspelt setting refused");
    let d = errs
        .iter()
        .find(|d| d.key == "secrets.FULLSLACK_JWT_SECRET")
        .unwrap_or_else(|| panic!("{errs:#?}"));
    assert!(
        d.hint.contains("did you mean `FULLSLACK_AUTH__JWT_SECRET`"),
        "{d:?}"
    );
}

#[test]
fn every_deployed_example_carries_the_jwt_secret_and_local_runs_in_local_mode() {
    for name in ["ec2-single", "ec2-scaled", "ecs-fargate", "ssh-host"] {
        let s = example(name);
        assert!(
            s.secrets.contains_key(stack::JWT_SECRET_ENV),
            "{name} has no {}",
            stack::JWT_SECRET_ENV
        );
    }
    let local = example("local");
    let env = local
        .container_env(|_| Err::<SecretString, ()>(()))
        .expect("local stack has no secrets");
    assert!(env
        .effective()
        .contains(&("FULLSLACK_MODE".into(), "local".into())));
}
