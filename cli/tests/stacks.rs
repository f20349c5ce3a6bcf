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
        .filter_map(Result::ok)
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
fn init_template_is_a_valid_stack_but_check_refuses_its_placeholders() {
    let s = stack::parse(stack::INIT_TEMPLATE).expect("init template validates");
    assert_eq!(s.name, "chat");
    assert_eq!(s.target, Target::Ssh);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fullslack.toml");
    std::fs::write(&path, stack::INIT_TEMPLATE).expect("write");
    let err = stack::check(&path).expect_err("placeholders left as they are");
    let text = err.to_string();
    for key in [
        "domains[0]",
        "hosts[0].address",
        "hosts[0].ipv4",
        "tls.acme_email",
    ] {
        assert!(
            text.contains(&format!("`{key}`")),
            "{key} not named: {text}"
        );
    }
    let filled = stack::INIT_TEMPLATE
        .replace("chat.example.com", "chat.fullslack.dev")
        .replace("203.0.113.10", "198.18.7.10")
        .replace("ops@example.com", "ops@fullslack.dev");
    std::fs::write(&path, filled).expect("write");
    stack::check(&path).expect("filled-in template passes");
}

/// Validation messages of `text` (the file must be invalid).
fn diags(text: &str) -> Vec<stack::Diagnostic> {
    stack::parse(text).expect_err("invalid stack")
}

fn find<'a>(errs: &'a [stack::Diagnostic], key: &str) -> &'a stack::Diagnostic {
    errs.iter()
        .find(|d| d.key == key)
        .unwrap_or_else(|| panic!("no diagnostic for {key}: {errs:#?}"))
}

const LOCAL: &str = "name = \"chat\"\ndomains = [\"chat.localhost.test\"]\ntarget = \"local\"\n[image]\nname = \"fullslack/chat\"\n[tls]\nenabled = false\n";

#[test]
fn type_and_range_errors_name_the_key_and_the_range() {
    let errs = diags(&format!("{LOCAL}[ssh]\nport = 70000\n"));
    let d = find(&errs, "ssh.port");
    assert_eq!(d.line, 9, "{d:?}");
    assert!(d.message.contains("65535"), "{d:?}");
    assert!(d.hint.contains("0 to 65535"), "{d:?}");
    assert!(!d.hint.contains("TOML syntax"), "{d:?}");

    let errs = diags(&format!("{LOCAL}[app]\nreplicas = \"two\"\n"));
    let d = find(&errs, "app.replicas");
    assert!(
        d.hint.contains("u32") || d.hint.contains("integer"),
        "{d:?}"
    );
    assert!(!d.hint.contains("TOML syntax"), "{d:?}");

    let errs = diags(&LOCAL.replace("target = \"local\"", "target = \"ecss\""));
    let d = find(&errs, "target");
    assert!(d.hint.contains("did you mean `ecs`"), "{d:?}");
}

#[test]
fn host_ports_that_overflow_or_hit_nginx_are_refused() {
    for (port, words) in [("65500", "green"), ("80", "itself"), ("343", "443")] {
        let errs = diags(&format!("{LOCAL}[app]\nhost_port = {port}\n"));
        let d = find(&errs, "app.host_port");
        assert!(d.message.contains(words), "{port}: {d:?}");
        assert_eq!(d.line, 9, "{d:?}");
    }
    stack::parse(&format!("{LOCAL}[app]\nhost_port = 8100\n")).expect("8100 is fine");
}

#[test]
fn a_secret_written_inline_is_never_echoed() {
    let secret = "hunter2-inline-value-9f8e7d";
    let ssh = std::fs::read_to_string(stacks_dir().join("ssh-host.toml")).expect("read");
    for line in [
        format!("FULLSLACK_AUTH__JWT_SECRET = \"{secret}\""),
        format!("FULLSLACK_AUTH__JWT_SECRET = {{ value = \"{secret}\" }}"),
    ] {
        let text = ssh.replace(
            "FULLSLACK_AUTH__JWT_SECRET = { env = \"FULLSLACK_AUTH__JWT_SECRET\" }",
            &line,
        );
        let errs = diags(&text);
        let all = format!("{errs:?}");
        assert!(!all.contains(secret), "secret echoed: {all}");
        let d = find(&errs, "secrets.FULLSLACK_AUTH__JWT_SECRET");
        assert!(d.hint.contains("by reference"), "{d:?}");
    }
    let text = ssh.replace(
        "password = { env = \"REGISTRY_PASSWORD\" }",
        &format!("password = \"{secret}\""),
    );
    let all = format!("{:?}", diags(&text));
    assert!(!all.contains(secret), "secret echoed: {all}");
}

#[test]
fn server_settings_in_the_environment_must_be_names_the_server_reads() {
    let ssh = std::fs::read_to_string(stacks_dir().join("ssh-host.toml")).expect("read");
    let errs = diags(&format!("{ssh}\n[app]\nenv = {{ FULLSLACK_LOG = \"info\", FULLSLACK_RATE_LIMIT__SEND_PER_SECOND = \"5\", RUST_LOG = \"info\" }}\n"));
    assert!(find(&errs, "app.env.FULLSLACK_LOG")
        .hint
        .contains("FULLSLACK_LOG_FORMAT"));
    assert!(find(&errs, "app.env.FULLSLACK_RATE_LIMIT__SEND_PER_SECOND")
        .hint
        .contains("FULLSLACK_RATE_LIMIT__SEND_PER_SEC"));
    assert!(
        !errs.iter().any(|d| d.key.contains("RUST_LOG")),
        "{errs:#?}"
    );
    // A deployed stack without the JWT secret cannot start in production mode.
    let errs = diags(&ssh.replace(
        "FULLSLACK_AUTH__JWT_SECRET = { env = \"FULLSLACK_AUTH__JWT_SECRET\" }",
        "",
    ));
    assert!(find(&errs, "secrets").message.contains("production mode"));
}

#[test]
fn stacks_that_cannot_work_are_refused() {
    let ecs = std::fs::read_to_string(stacks_dir().join("ecs-fargate.toml")).expect("read");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            ecs.replace("memory = 2048", "memory = 512"),
            "ecs.memory",
            "2048 to 8192",
        ),
        (
            ecs.replace("certificate_arn = ", "# certificate_arn = "),
            "tls.enabled",
            "certificate_arn",
        ),
        (
            ecs.replace(
                "[mongodb]\nmode = \"external\"\nurl = { ssm = \"/chat-ecs/mongodb-url\" }",
                "",
            ),
            "mongodb.mode",
            "external",
        ),
        (
            std::fs::read_to_string(stacks_dir().join("ec2-single.toml"))
                .expect("read")
                .replace("count = 1", "count = 0"),
            "ec2.count",
            "1 or more",
        ),
        (
            std::fs::read_to_string(stacks_dir().join("ec2-single.toml"))
                .expect("read")
                .replace("us-east-1", "us-east-7"),
            "ec2.region",
            "did you mean us-east-",
        ),
        (
            std::fs::read_to_string(stacks_dir().join("ec2-single.toml"))
                .expect("read")
                .replace("t3.small", "t3.smal"),
            "ec2.instance_type",
            "did you mean t3.small?",
        ),
        (
            std::fs::read_to_string(stacks_dir().join("ec2-scaled.toml"))
                .expect("read")
                .replace("c7i.large", "c7x.large"),
            "ec2.instance_type",
            "did you mean",
        ),
        (
            ecs.replace("region = \"", "region = \"eu-wset-1\" # was \""),
            "ecs.region",
            "did you mean eu-west-1?",
        ),
        (
            LOCAL.replace("chat.localhost.test", "203.0.113.10"),
            "domains[0]",
            "names",
        ),
        (
            LOCAL.replace("fullslack/chat", "Fullslack/Chat"),
            "image.name",
            "lower-case",
        ),
        (
            LOCAL.replace(
                "name = \"fullslack/chat\"\n",
                "name = \"fullslack/chat\"\ntag = \"v1:2\"\n",
            ),
            "image.tag",
            "letters",
        ),
    ];
    for (text, key, fix) in cases {
        let errs = diags(&text);
        let d = find(&errs, key);
        assert!(d.hint.contains(fix), "{key}: {d:?}");
    }
}

#[test]
fn staging_without_a_directory_is_a_warning() {
    let ssh = stack::load(&stacks_dir().join("ssh-host.toml")).expect("valid");
    let w = stack::warnings(&ssh);
    assert!(w.iter().any(|w| w.contains("not trusted")), "{w:?}");
    let single = stack::load(&stacks_dir().join("ec2-single.toml")).expect("valid");
    assert!(stack::warnings(&single).is_empty(), "production directory");
}

#[test]
fn unknown_key_points_at_line_and_suggests_the_fix() {
    let text = "name = \"chat\"\ndomains = [\"chat.example.com\"]\ntarget = \"local\"\n\n[image]\nname = \"x\"\n\n[app]\nreplcas = 2\n\n[tls]\nenabled = false\n";
    let errs = stack::parse(text).expect_err("unknown key refused");
    assert_eq!(errs.len(), 1);
    let d = &errs[0];
    assert_eq!((d.line, d.column), (9, 1), "{d:?}");
    assert_eq!(d.key, "app.replcas");
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
            "FULLSLACK_AUTH__JWT_SECRET = { ssm = \"/chat-ecs/jwt-secret\" }",
            "FULLSLACK_AUTH__JWT_SECRET = { env = \"JWT\" }",
        );
    let errs = stack::parse(&text).expect_err("env secret on ECS");
    let d = errs
        .iter()
        .find(|d| d.key == "secrets.FULLSLACK_AUTH__JWT_SECRET")
        .expect("diagnostic");
    assert!(d.hint.contains("ssm"), "{d:?}");
    assert_eq!(
        d.line,
        text.lines()
            .position(|l| l.starts_with("FULLSLACK_AUTH__JWT_SECRET"))
            .expect("line")
            + 1
    );
}
