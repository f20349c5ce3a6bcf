//! EC2 stacks end to end: plan, apply, no-op, drift, stale plans, destroy; SSH exposure;
//! changing the instance count.

use super::*;

#[test]
fn ec2_plan_apply_noop_drift_stale_plan_destroy() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let stack = ec2_stack(dir.path(), "ec2-test", Some("203.0.113.7/32"));
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");

    // Something that is not ours must survive the destroy at the end.
    let foreign = rt
        .block_on(
            aws.ec2()
                .create_security_group()
                .group_name("not-fullslack")
                .description("someone else's")
                .send(),
        )
        .expect("foreign sg")
        .group_id()
        .unwrap()
        .to_string();

    let plan_path = dir.path().join("plan.json");
    first_plan_creates_everything(&moto, &stack, &plan_path);
    // Apply exactly that plan.
    let applied = ok(&fullslack(&moto, &["apply", s(&plan_path)], None));
    assert!(applied.contains("is running"), "{applied}");
    assert!(applied.contains("Applied: 5 change(s)"), "{applied}");

    let have = applied_resources_are_as_planned(&rt, &aws);
    // Second plan: nothing to do (exit 0); a second apply is a no-op.
    let again = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("No changes"), "{}", text(&again));
    let noop = ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&stack), "--yes"],
        None,
    ));
    assert!(noop.contains("Nothing to do"), "{noop}");

    let stack2 = stale_plan_refused_after_drift(&moto, dir.path(), &stack, &rt, &aws, &have[1]);

    // Without --yes and without a terminal, apply refuses to change anything.
    let replace = fullslack(&moto, &["apply", "--stack", s(&stack2)], None);
    assert_eq!(replace.status.code(), Some(64), "{}", text(&replace));
    assert!(text(&replace).contains("--yes"), "{}", text(&replace));

    destroy_removes_only_what_is_ours(&moto, &stack, &rt, &aws, &foreign);
}

/// First plan: everything to create, with a labelled cost estimate; exit 2. Saved to
/// `plan_path`.
fn first_plan_creates_everything(moto: &Moto, stack: &Path, plan_path: &Path) {
    let first = fullslack(
        moto,
        &["plan", "--stack", s(stack), "--out", s(plan_path)],
        None,
    );
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    let out = text(&first);
    for want in [
        "+ ecr_repository ec2-test/chat: create",
        "+ security_group ec2-test: create",
        "tcp/22 from 203.0.113.7/32",
        "tcp/443 from 0.0.0.0/0",
        "+ key_pair ec2-test-key: create",
        "+ instance ec2-test-1: create",
        "+ elastic_ip ec2-test-1: create",
        "5 to create",
        "ESTIMATE",
        "instance ec2-test-1 (t3.small)",
        "total (estimate)",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
}

/// What exists after the first apply, read back with the SDK: the five resources, the
/// instance running, tagged, with its key and user data. Returns them.
fn applied_resources_are_as_planned(
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
) -> Vec<fullslack_aws::Resource> {
    let have = rt
        .block_on(fullslack_aws::read_actual(
            aws,
            "ec2-test",
            "ec2",
            &fullslack_aws::Lookup {
                ecr_repository: Some("ec2-test/chat".into()),
                cluster: None,
            },
        ))
        .expect("read actual");
    let kinds: Vec<Kind> = have.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::EcrRepository,
            Kind::SecurityGroup,
            Kind::KeyPair,
            Kind::Instance,
            Kind::ElasticIp
        ],
        "{have:#?}"
    );
    let inst = &have[3];
    assert_eq!(inst.input("state"), "running");
    assert_eq!(inst.text("instance_type"), "t3.small");
    let eip = &have[4];
    assert_eq!(eip.text("instance"), "ec2-test-1");
    let instance_id = inst.id.clone().unwrap();
    let described = rt
        .block_on(
            aws.ec2()
                .describe_instances()
                .instance_ids(&instance_id)
                .send(),
        )
        .expect("describe");
    let i = &described.reservations()[0].instances()[0];
    assert!(i
        .tags()
        .iter()
        .any(|t| t.key() == Some("fullslack:stack") && t.value() == Some("ec2-test")));
    assert_eq!(i.key_name(), Some("ec2-test-key"));
    assert!(i.image_id().unwrap_or_default().starts_with("ami-"));
    let ud = rt
        .block_on(
            aws.ec2()
                .describe_instance_attribute()
                .instance_id(&instance_id)
                .attribute(fullslack_aws::sdk::ec2::types::InstanceAttributeName::UserData)
                .send(),
        )
        .expect("user data");
    let ud = ud.user_data().and_then(|v| v.value()).unwrap_or_default();
    let ud = String::from_utf8(base64_decode(ud)).unwrap_or_default();
    assert!(
        ud.contains("systemctl enable --now docker") && ud.contains("nginx"),
        "{ud}"
    );
    have
}

/// Drift: a rule added out of band shows up, and a plan saved before that (an instance type
/// change, `sg` untouched) is refused; applying the stack reverts the drift. Returns the
/// edited stack file of that stale plan.
fn stale_plan_refused_after_drift(
    moto: &Moto,
    dir: &Path,
    stack: &Path,
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    sg: &fullslack_aws::Resource,
) -> PathBuf {
    let stale_path = dir.join("stale.json");
    let sg_id = sg.id.clone().unwrap();
    // A plan made while the stack still matched… (an instance type change: replace)
    let edited = std::fs::read_to_string(stack)
        .unwrap()
        .replace("t3.small", "t3.medium");
    let stack2 = dir.join("stack2.toml");
    std::fs::write(&stack2, edited).unwrap();
    let p = fullslack(
        moto,
        &["plan", "--stack", s(&stack2), "--out", s(&stale_path)],
        None,
    );
    assert_eq!(p.status.code(), Some(2), "{}", text(&p));
    assert!(
        text(&p).contains("instance_type: t3.small → t3.medium"),
        "{}",
        text(&p)
    );
    // Resized in place (stop, modify, start), not replaced.
    assert!(
        text(&p).contains("~ instance ec2-test-1") && text(&p).contains("resized in place"),
        "{}",
        text(&p)
    );
    open_mysql_out_of_band(rt, aws, &sg_id);
    let drift = fullslack(moto, &["plan", "--stack", s(stack)], None);
    assert_eq!(drift.status.code(), Some(2), "{}", text(&drift));
    let d = text(&drift);
    assert!(d.contains("~ security_group ec2-test"), "{d}");
    assert!(
        d.contains("ingress: - tcp/3306 from 0.0.0.0/0   (not in the stack: drift)"),
        "{d}"
    );
    // …no longer matches reality: refused, nothing changed.
    let refused = fullslack(moto, &["apply", s(&stale_path)], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("no longer matches"),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("hint: make a new plan"),
        "{}",
        text(&refused)
    );
    // Applying the stack reverts the drift.
    let fixed = ok(&fullslack(
        moto,
        &["apply", "--stack", s(stack), "--yes"],
        None,
    ));
    assert!(
        fixed.contains("removed `tcp/3306 from 0.0.0.0/0`"),
        "{fixed}"
    );
    let clean = fullslack(moto, &["plan", "--stack", s(stack)], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    stack2
}

/// Destroy removes exactly what is tagged for the stack (the `foreign` group stays), and a
/// second destroy has nothing to do.
fn destroy_removes_only_what_is_ours(
    moto: &Moto,
    stack: &Path,
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    foreign: &str,
) {
    let gone = ok(&fullslack(
        moto,
        &["destroy", "--stack", s(stack), "--yes"],
        None,
    ));
    assert!(gone.contains("Destroy plan"), "{gone}");
    assert!(
        gone.contains("5 to delete") || gone.contains("6 to delete"),
        "{gone}"
    );
    let after = rt
        .block_on(fullslack_aws::read_actual(
            aws,
            "ec2-test",
            "ec2",
            &fullslack_aws::Lookup {
                ecr_repository: Some("ec2-test/chat".into()),
                cluster: None,
            },
        ))
        .expect("read actual");
    assert!(after.is_empty(), "{after:#?}");
    let still = rt
        .block_on(
            aws.ec2()
                .describe_security_groups()
                .group_ids(foreign)
                .send(),
        )
        .expect("foreign sg still there");
    assert_eq!(still.security_groups().len(), 1);
    let nothing = ok(&fullslack(
        moto,
        &["destroy", "--stack", s(stack), "--yes"],
        None,
    ));
    assert!(nothing.contains("Nothing to destroy"), "{nothing}");
}

/// A rule (tcp/3306 from anywhere) added to security group `sg_id` behind the stack's back.
fn open_mysql_out_of_band(rt: &tokio::runtime::Runtime, aws: &Aws, sg_id: &str) {
    rt.block_on(
        aws.ec2()
            .authorize_security_group_ingress()
            .group_id(sg_id)
            .ip_permissions(
                fullslack_aws::sdk::ec2::types::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(3306)
                    .to_port(3306)
                    .ip_ranges(
                        fullslack_aws::sdk::ec2::types::IpRange::builder()
                            .cidr_ip("0.0.0.0/0")
                            .build(),
                    )
                    .build(),
            )
            .send(),
    )
    .expect("out-of-band rule");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

#[test]
fn ssh_is_never_open_to_the_world_without_the_flag_and_closed_without_ssh_cidr() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let stack = ec2_stack(dir.path(), "ssh-test", Some("0.0.0.0/0"));
    let refused = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("--allow-ssh-from-anywhere"),
        "{}",
        text(&refused)
    );
    let forced = fullslack(
        &moto,
        &["plan", "--stack", s(&stack), "--allow-ssh-from-anywhere"],
        None,
    );
    assert_eq!(forced.status.code(), Some(2), "{}", text(&forced));
    assert!(
        text(&forced).contains("tcp/22 from 0.0.0.0/0"),
        "{}",
        text(&forced)
    );

    // No ssh_cidr: port 22 stays closed, and the plan says so. The plan is a function of the
    // stack file and AWS alone (no what-is-my-IP service), so a colleague's plan is the same.
    let dir2 = tempdir();
    let stack2 = ec2_stack(dir2.path(), "ssh-none", None);
    let closed = fullslack(&moto, &["plan", "--stack", s(&stack2)], None);
    assert_eq!(closed.status.code(), Some(2), "{}", text(&closed));
    let t = text(&closed);
    assert!(!t.contains("tcp/22"), "{t}");
    assert!(
        t.contains("Note: port 22 stays closed: ec2.ssh_cidr is not set"),
        "{t}"
    );
}

#[test]
fn ec2_count_change_adds_and_removes_instances_with_their_addresses() {
    let moto = Moto::start(None);
    let dir = tempdir();
    // More than one node needs MongoDB and Redis (run on the hosts here).
    let base = ec2_stack(dir.path(), "scale-test", Some("203.0.113.7/32"));
    let stack = dir.path().join("one.toml");
    std::fs::write(
        &stack,
        std::fs::read_to_string(&base).unwrap()
            + "\n[redis]\nmode = \"managed\"\n\n[mongodb]\nmode = \"managed\"\n",
    )
    .unwrap();
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&stack), "--yes"],
        None,
    ));

    let two = dir.path().join("two.toml");
    std::fs::write(
        &two,
        std::fs::read_to_string(&stack)
            .unwrap()
            .replace("count = 1", "count = 2"),
    )
    .unwrap();
    let up = fullslack(&moto, &["plan", "--stack", s(&two)], None);
    assert_eq!(up.status.code(), Some(2), "{}", text(&up));
    let t = text(&up);
    assert!(
        t.contains("2 to create, 0 to update, 0 to replace, 0 to delete, 5 unchanged"),
        "{t}"
    );
    assert!(
        t.contains("+ instance scale-test-2: create")
            && t.contains("+ elastic_ip scale-test-2: create"),
        "{t}"
    );
    assert!(t.contains("instance scale-test-2 (t3.small)"), "{t}");
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&two), "--yes"],
        None,
    ));
    let same = fullslack(&moto, &["plan", "--stack", s(&two)], None);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));

    // Back to one: the second instance and its address go, the first stays untouched.
    let down = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(down.status.code(), Some(2), "{}", text(&down));
    let t = text(&down);
    assert!(
        t.contains("0 to create, 0 to update, 0 to replace, 2 to delete"),
        "{t}"
    );
    let eip = t.find("- elastic_ip scale-test-2").expect("eip delete");
    let inst = t.find("- instance scale-test-2").expect("instance delete");
    assert!(
        eip < inst,
        "the address is released before its instance goes:\n{t}"
    );
    ok(&fullslack(
        &moto,
        &["apply", "--stack", s(&stack), "--yes"],
        None,
    ));
    let clean = fullslack(&moto, &["plan", "--stack", s(&stack)], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
}
