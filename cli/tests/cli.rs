//! The command line: every flag is explained, `--help` is snapshot-tested, completions and
//! `init` work.

mod common;

use clap::CommandFactory;
use fullslack::cli::Cli;

fn all_commands(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
    out.push((path.clone(), cmd.clone()));
    for sub in cmd.get_subcommands() {
        all_commands(sub, format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_flag_and_subcommand_has_help() {
    let mut cmds = Vec::new();
    all_commands(&Cli::command(), "fullslack".into(), &mut cmds);
    let mut missing = Vec::new();
    for (path, cmd) in &cmds {
        if cmd.get_about().is_none() && path != "fullslack help" {
            missing.push(format!("{path}: no about"));
        }
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path}: --{id} has no help"));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
    Cli::command().debug_assert();
}

#[test]
fn help_snapshots() {
    let mut cmds = Vec::new();
    all_commands(&Cli::command(), "fullslack".into(), &mut cmds);
    let mut all = String::new();
    for (path, _) in cmds {
        if path.ends_with(" help") || path.contains(" help ") {
            continue;
        }
        // The real binary's output (not a terminal: clap wraps at 100 columns).
        let out = common::fullslack()
            .args(path.split(' ').skip(1))
            .arg("--help")
            .env_remove("FULLSLACK_STACK")
            .env_remove("COLUMNS")
            .output()
            .expect("run --help");
        assert!(out.status.success(), "{path} --help");
        all.push_str(&format!(
            "==== {path} --help\n{}\n",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    insta::assert_snapshot!("help", all);
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = common::fullslack()
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("doctor"), "{shell}");
        assert!(text.contains("dns-server"), "{shell}");
    }
}

#[test]
fn init_writes_a_valid_stack_and_refuses_to_overwrite() {
    let dir = common::tempdir();
    let path = dir.path().join("fullslack.toml");
    let out = common::fullslack()
        .arg("init")
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fullslack::stack::load(&path).expect("written file validates");
    let check = common::fullslack()
        .args(["stack", "check", "--stack"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(check.status.success());

    let again = common::fullslack()
        .arg("init")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already exists") && err.contains("hint: pass --force"),
        "{err}"
    );
    let forced = common::fullslack()
        .args(["init", "--force"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(forced.status.success());
}

#[test]
fn invalid_stack_exits_1_with_location_and_hint_also_in_json() {
    let dir = common::tempdir();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "name = \"chat\"\ndomains = [\"chat.example.com\"]\ntarget = \"local\"\n[image]\nname = \"x\"\n[tls]\nenabeld = false\n",
    )
    .expect("write");
    let out = common::fullslack()
        .args(["stack", "check", "--stack"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:7:1: `enabeld` unknown field", path.display())),
        "{err}"
    );
    assert!(err.contains("did you mean `enabled`"), "{err}");

    let out = common::fullslack()
        .args(["--json", "stack", "check", "--stack"])
        .arg(&path)
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert!(v["error"].as_str().expect("error").contains(":7:1:"));
    assert!(v["hint"].is_string());
}
