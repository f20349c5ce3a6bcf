//! Stack files: the examples and the init template validate; broken files get precise errors.

use std::path::PathBuf;

use fullslack::stack::{self, ServiceMode, Target};

fn stacks_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stacks")
}

#[test]
fn every_example_stack_parses_and_validates() {
    let expected = [
        ("ec2-single", Target::Ec2),
        ("ec2-scaled", Target::Ec2),
        ("ecs-fargate", Target::Ecs),
        ("ssh-host", Target::Ssh),
        ("local", Target::Local),
    ];
    for (name, target) in expected {
        let path = stacks_dir().join(format!("{name}.toml"));
        let s = stack::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.target, target, "{name}");
    }
    let scaled = stack::load(&stacks_dir().join("ec2-scaled.toml")).expect("valid");
    assert_eq!(scaled.ec2.as_ref().map(|e| e.count), Some(3));
    assert_eq!(scaled.redis.mode, ServiceMode::Managed);
    assert_eq!(scaled.mongodb.mode, ServiceMode::Managed);
    let ecs = stack::load(&stacks_dir().join("ecs-fargate.toml")).expect("valid");
    assert!(ecs
        .secrets
        .values()
        .all(|r| matches!(r, fullslack::secret::SecretRef::Ssm(_))));
}

#[test]
fn no_other_stack_files_go_untested() {
    let mut names: Vec<String> = std::fs::read_dir(stacks_dir())
        .expect("stacks/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ec2-scaled.toml",
            "ec2-single.toml",
            "ecs-fargate.toml",
            "local.toml",
            "ssh-host.toml"
        ]
    );
}

#[test]
fn init_template_is_a_valid_stack() {
    let s = stack::parse(stack::INIT_TEMPLATE).expect("init template validates");
    assert_eq!(s.name, "chat");
    assert_eq!(s.target, Target::Ssh);
}

#[test]
fn unknown_key_points_at_line_and_suggests_the_fix() {
    let text = "name = \"chat\"\ndomains = [\"chat.example.com\"]\ntarget = \"local\"\n\n[image]\nname = \"x\"\n\n[app]\nreplcas = 2\n\n[tls]\nenabled = false\n";
    let errs = stack::parse(text).expect_err("unknown key refused");
    assert_eq!(errs.len(), 1);
    let d = &errs[0];
    assert_eq!((d.line, d.column), (9, 1), "{d:?}");
    assert_eq!(d.key, "replcas");
    assert!(d.message.contains("unknown field `replcas`"), "{d:?}");
    assert!(d.hint.contains("did you mean `replicas`"), "{d:?}");
}

#[test]
fn wrong_enum_value_and_syntax_errors_are_located() {
    let text = "name = \"chat\"\ndomains = [\"chat.example.com\"]\ntarget = \"kubernetes\"\n[image]\nname = \"x\"\n";
    let errs = stack::parse(text).expect_err("bad target");
    assert_eq!(errs[0].line, 3, "{:?}", errs[0]);
    assert!(errs[0].message.contains("kubernetes"), "{:?}", errs[0]);
    assert!(
        errs[0].message.contains("ecs"),
        "lists the variants: {:?}",
        errs[0]
    );

    let errs = stack::parse("name = \"chat\"\ndomains = [\"a.b\"\n").expect_err("syntax");
    assert_eq!(errs[0].line, 2, "{:?}", errs[0]);
}

#[test]
fn semantic_errors_point_at_the_key_with_a_fix() {
    let text = r#"name = "Chat Prod"
domains = ["chat.example.com", "not a domain"]
target = "ssh"

[[hosts]]
address = "203.0.113.10"

[[hosts]]
address = "203.0.113.11"
ipv6 = "not-an-ip"

[image]
name = "fullslack/chat"

[redis]
mode = "external"

[tls]
enabled = true
"#;
    let errs = stack::parse(text).expect_err("invalid");
    let find = |key: &str| {
        errs.iter()
            .find(|d| d.key == key)
            .unwrap_or_else(|| panic!("no diagnostic for {key}: {errs:#?}"))
    };
    assert_eq!(find("name").line, 1);
    assert_eq!(find("domains[1]").line, 2);
    assert_eq!(find("domains[1]").column, 32);
    let v6 = find("hosts[1].ipv6");
    assert_eq!((v6.line, v6.column), (10, 1));
    assert!(v6.hint.contains("remove the key"), "{v6:?}");
    assert_eq!(find("redis.mode").line, 16);
    assert!(find("redis.mode").hint.contains("redis.url"));
    // Two hosts: two chat nodes need MongoDB and Redis (redis is external, so only MongoDB).
    assert!(find("mongodb").message.contains("2 chat nodes"));
    assert!(find("tls").hint.contains("acme_email"));
    assert_eq!(find("tls").line, 18);
}

#[test]
fn load_reports_path_line_and_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"chat\"\nbogus = 1\n").expect("write");
    let err = stack::load(&path).expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{}:2:1: `bogus` unknown field `bogus`",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains("fix: "), "{text}");
    let missing = stack::load(&dir.path().join("nope.toml")).expect_err("missing");
    assert!(missing.hint().contains("fullslack init"));
}

#[test]
fn ecs_refuses_env_secrets_and_managed_services() {
    let text = std::fs::read_to_string(stacks_dir().join("ecs-fargate.toml"))
        .expect("read")
        .replace(
            "FULLSLACK_JWT_SECRET = { ssm = \"/chat-ecs/jwt-secret\" }",
            "FULLSLACK_JWT_SECRET = { env = \"JWT\" }",
        );
    let errs = stack::parse(&text).expect_err("env secret on ECS");
    let d = errs
        .iter()
        .find(|d| d.key == "secrets.FULLSLACK_JWT_SECRET")
        .expect("diagnostic");
    assert!(d.hint.contains("ssm"), "{d:?}");
    assert_eq!(
        d.line,
        text.lines()
            .position(|l| l.starts_with("FULLSLACK_JWT_SECRET"))
            .expect("line")
            + 1
    );
}
