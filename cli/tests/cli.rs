//! The command line: every flag is explained, `--help` is snapshot-tested, completions and
//! `init` work.

use fullslack_test_support::{fullslack, paths::tempdir};

use clap::CommandFactory;
use fullslack::args::Cli;

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
        let out = fullslack!()
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
        let out = fullslack!()
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
    let dir = tempdir();
    let path = dir.path().join("fullslack.toml");
    let out = fullslack!().arg("init").arg(&path).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fullslack::stack::load(&path).expect("written file parses");
    // `stack check` does not pass the template's placeholders as a ready stack…
    let check = fullslack!()
        .args(["stack", "check", "--stack"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(check.status.code(), Some(1));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("`domains[0]`") && err.contains("placeholder"),
        "{err}"
    );
    // …and passes once they are replaced, warning that staging certificates are untrusted.
    let text = std::fs::read_to_string(&path)
        .expect("read")
        .replace("chat.example.com", "chat.fullslack.dev")
        .replace("203.0.113.10", "198.18.7.10")
        .replace("ops@example.com", "ops@fullslack.dev");
    std::fs::write(&path, text).expect("write");
    let check = fullslack!()
        .args(["stack", "check", "--stack"])
        .arg(&path)
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(out.contains("warning: tls.directory is `staging`"), "{out}");

    let again = fullslack!().arg("init").arg(&path).output().expect("run");
    assert_eq!(again.status.code(), Some(64), "usage errors exit 64");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already exists") && err.contains("hint: pass --force"),
        "{err}"
    );
    let forced = fullslack!()
        .args(["init", "--force"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(forced.status.success());
}

#[test]
fn invalid_stack_exits_1_with_location_and_hint_also_in_json() {
    let dir = tempdir();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "name = \"chat\"\ndomains = [\"chat.example.com\"]\ntarget = \"local\"\n[image]\nname = \"x\"\n[tls]\nenabeld = false\n",
    )
    .expect("write");
    let out = fullslack!()
        .args(["stack", "check", "--stack"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:7:1: `tls.enabeld` unknown field",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("did you mean `enabled`"), "{err}");

    let out = fullslack!()
        .args(["--json", "stack", "check", "--stack"])
        .arg(&path)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim_end().lines().count(), 1, "one line: {stdout}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert!(v["error"].as_str().expect("error").contains(":7:1:"));
    assert!(v["hint"].is_string());
    assert_eq!(v["exit_code"], 1);
    let d = &v["diagnostics"][0];
    assert_eq!(d["file"], path.display().to_string());
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(7), Some(1))
    );
    assert_eq!(d["key"], "tls.enabeld");
    assert!(d["message"]
        .as_str()
        .expect("message")
        .contains("unknown field"));
    assert!(d["fix"].as_str().expect("fix").contains("enabled"));
}

#[test]
fn usage_errors_exit_64_apart_from_plan_changes_and_in_json_one_line() {
    let out = fullslack!()
        .args(["nginx", "render", "--no-such-flag"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let out = fullslack!()
        .args(["--json", "doctor", "--skip", "dnz"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert!(v["error"].as_str().expect("error").contains("dnz"), "{v}");
}

#[test]
fn a_planned_command_says_it_is_not_available_instead_of_suggesting_another() {
    // (`deploy` and `rollback` were planned here until they were built.)
    let out = fullslack!().arg("serve").output().expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`fullslack serve` is not available yet"),
        "{err}"
    );
    assert!(
        !err.contains("secrets"),
        "must not suggest another command: {err}"
    );
    // `cert` (the name doctor's hints once used) points at the real `certs`.
    let out = fullslack!().arg("cert").output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`fullslack certs`"), "{err}");
    // A typo of a real command still gets clap's suggestion.
    let out = fullslack!().arg("secret").output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secrets"), "{err}");
    assert!(!err.contains("not available"), "{err}");
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let local = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stacks/local.toml");
    for args in [
        vec!["nginx", "render", "--stack", local.to_str().expect("utf-8")],
        vec!["completions", "bash"],
    ] {
        // The reading end is closed before the command starts: its first write fails.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = fullslack!()
            .args(&args)
            .stdout(writer)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
    }
}
