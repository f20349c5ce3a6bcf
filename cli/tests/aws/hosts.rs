//! An `ec2` stack's hosts, found by the stack's tags.

use super::*;

/// An `ec2` stack lists no hosts: `lock` and `doctor` find the instances `apply` made by the
/// stack's tags (as `plan` does), and before any apply they say to run it.
#[test]
fn ec2_hosts_are_found_by_the_stack_tags_after_apply() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let name = "hosts-test";
    let stack = ec2_stack(dir.path(), name, Some("203.0.113.7/32"));

    // Before apply: a clear failure that says what to run, not "lists no hosts".
    let lock = fullslack(&moto, &["lock", "status", "--stack", s(&stack)], None);
    assert_eq!(lock.status.code(), Some(1), "{}", text(&lock));
    let t = text(&lock);
    assert!(t.contains("has no running EC2 instances"), "{t}");
    assert!(t.contains("fullslack apply --stack"), "{t}");
    assert!(!t.contains("lists no hosts"), "{t}");
    let skip_all_but_ssh = [
        "--skip", "dns", "--skip", "reach", "--skip", "caa", "--skip", "tls", "--skip", "clock",
        "--skip", "docker", "--skip", "aws",
    ];
    let mut args = vec!["--json", "doctor", "--stack", s(&stack), "--timeout", "1"];
    args.extend(skip_all_but_ssh);
    let doc = fullslack(&moto, &args, None);
    assert_eq!(doc.status.code(), Some(1), "{}", text(&doc));
    let report: serde_json::Value = serde_json::from_slice(&doc.stdout).expect("doctor JSON");
    let first = &report["checks"][0];
    assert_eq!(first["name"], "ec2.hosts", "{report}");
    assert_eq!(first["outcome"], "fail", "{report}");

    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&stack), "--yes"],
        None,
    ));
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let eip = stack_elastic_ip(&rt, &aws, name);

    // The host found is the instance behind the stack's Elastic IP.
    let found = rt
        .block_on(fullslack_aws::hosts::ec2_hosts(&aws, name))
        .expect("hosts");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, "hosts-test-1");
    assert_eq!(found[0].address(), Some(eip.as_str()), "{found:?}");

    // doctor's SSH check now targets it (the address is not reachable from here; the check
    // names it, which is what this test is about).
    let doc = fullslack(&moto, &args, None);
    let report: serde_json::Value = serde_json::from_slice(&doc.stdout).expect("doctor JSON");
    let checks = report["checks"].as_array().expect("checks");
    assert!(!checks.iter().any(|c| c["name"] == "ec2.hosts"), "{report}");
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "ssh.reach" && c["subject"] == format!("{eip}:22")),
        "{report}"
    );
    // lock resolves the same host (--dry-run prints the commands without connecting).
    let dry = fullslack(
        &moto,
        &["lock", "acquire", "--dry-run", "--stack", s(&stack)],
        None,
    );
    ok(&dry);
}

/// The public address of stack `name`'s Elastic IP (found by its tag).
fn stack_elastic_ip(rt: &tokio::runtime::Runtime, aws: &Aws, name: &str) -> String {
    use fullslack_aws::sdk::ec2::types as t;
    let addrs = rt
        .block_on(
            aws.ec2()
                .describe_addresses()
                .filters(
                    t::Filter::builder()
                        .name("tag:fullslack:stack")
                        .values(name)
                        .build(),
                )
                .send(),
        )
        .expect("describe addresses");
    addrs.addresses()[0]
        .public_ip()
        .expect("the stack's Elastic IP")
        .to_string()
}
