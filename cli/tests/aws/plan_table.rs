//! The table of planned changes for an EC2 stack: every attribute changed one at a time is
//! planned, applied, and leaves an empty plan.

use super::*;

pub(super) type Change<'a> = Box<dyn Fn(&mut String) + 'a>;

/// One row of the table: what, the (kind, attribute) pairs it covers, what the plan shows, the
/// change.
pub(super) type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>, Change<'a>);

pub(super) fn change<'a>(f: impl Fn(&mut String) + 'a) -> Change<'a> {
    Box::new(f)
}

/// What a plan JSON says changes: (kind, attribute) pairs, and the action per resource.
pub(super) fn planned_attrs(plan: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for ch in plan["changes"].as_array().into_iter().flatten() {
        let action = ch["action"].as_str().unwrap_or_default().to_string();
        let res = if ch["after"].is_null() {
            &ch["before"]
        } else {
            &ch["after"]
        };
        let kind = res["kind"].as_str().unwrap_or_default().to_string();
        for a in ch["changed"].as_array().into_iter().flatten() {
            out.push((
                kind.clone(),
                a.as_str().unwrap_or_default().to_string(),
                action.clone(),
            ));
        }
    }
    out
}

/// Every attribute a plan can show as changed, changed one at a time (in the stack file or
/// behind the stack's back in AWS): the plan shows it, apply carries it out, and the next plan
/// is empty. The last check makes the table complete: every attribute the stack's resources
/// have must have been covered by a case.
#[test]
fn every_planned_change_applies_and_the_next_plan_is_empty() {
    let moto = Moto::start(None);
    let dir = tempdir();
    let name = "conv";
    let stack = ec2_stack(dir.path(), name, Some("203.0.113.7/32"));
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");

    let plan_path = dir.path().join("first.json");
    let first = fullslack(
        &moto,
        &["plan", "--stack", s(&stack), "--out", s(&plan_path)],
        None,
    );
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).unwrap()).unwrap();
    let all = compared_attrs(&first);
    ok(&fullslack(&moto, &["apply", s(&plan_path)], None));

    let env = Ec2Env {
        ec2: aws.ec2(),
        rt,
        aws,
        name,
        other_key: ssh_keygen(&{
            let d = dir.path().join("k2");
            std::fs::create_dir_all(&d).unwrap();
            d
        }),
    };
    env.safer_defaults_hold();
    let mut text_now = std::fs::read_to_string(&stack).unwrap();
    let cases = ec2_cases(&env);
    let covered = run_ec2_cases(&env, &moto, dir.path(), &stack, &mut text_now, &cases);
    let missing: Vec<_> = all.iter().filter(|a| !covered.contains(a)).collect();
    assert!(
        missing.is_empty(),
        "attributes no case changes: {missing:?}"
    );
}

/// What the EC2 cases act on: the runtime, the AWS clients, the stack's name, and a second
/// public key to change the key pair's material to.
struct Ec2Env {
    rt: tokio::runtime::Runtime,
    aws: Aws,
    ec2: fullslack_aws::sdk::ec2::Client,
    name: &'static str,
    other_key: PathBuf,
}

impl Ec2Env {
    /// A security group of someone else's, named `n`, in VPC `vpc`.
    fn foreign_sg(&self, vpc: &str, n: &str) -> String {
        self.rt
            .block_on(
                self.ec2
                    .create_security_group()
                    .group_name(n)
                    .description("not ours")
                    .vpc_id(vpc)
                    .send(),
            )
            .unwrap()
            .group_id()
            .unwrap()
            .to_string()
    }

    /// The stack's instance, as read now.
    fn instance(&self) -> fullslack_aws::Resource {
        instances_of(&self.rt, &self.aws, self.name).remove(0)
    }

    /// Safer defaults: IMDSv2 required, the root volume encrypted (and 20 GB).
    fn safer_defaults_hold(&self) {
        use fullslack_aws::sdk::ec2::types as t;
        let inst = &self.instance();
        let d = self
            .rt
            .block_on(
                self.ec2
                    .describe_instances()
                    .instance_ids(inst.id.clone().unwrap())
                    .send(),
            )
            .unwrap();
        let i = &d.reservations()[0].instances()[0];
        assert_eq!(
            i.metadata_options().and_then(|m| m.http_tokens()),
            Some(&t::HttpTokensState::Required)
        );
        let vols = self
            .rt
            .block_on(
                self.ec2
                    .describe_volumes()
                    .filters(
                        t::Filter::builder()
                            .name("attachment.instance-id")
                            .values(inst.id.clone().unwrap())
                            .build(),
                    )
                    .send(),
            )
            .unwrap();
        assert_eq!(vols.volumes()[0].encrypted(), Some(true));
        assert_eq!(vols.volumes()[0].size(), Some(20));
    }
}

/// Runs every case in order (see [`run_case`]); an Elastic IP must follow a replaced
/// instance before the old one is terminated, a resize must show. Returns the covered
/// (kind, attribute) pairs.
fn run_ec2_cases(
    env: &Ec2Env,
    moto: &Moto,
    dir: &Path,
    stack: &Path,
    text_now: &mut String,
    cases: &[Case<'_>],
) -> Vec<(String, String)> {
    let mut covered: Vec<(String, String)> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let what = case.0;
        let (shown, applied) = run_case(moto, dir, stack, text_now, i, case, &mut covered);
        // An Elastic IP follows a replaced instance before the old one is terminated.
        if shown.contains("-/+ instance") {
            let out = applied;
            let moved = out.find("Elastic IP conv-1 →").expect("address moved");
            let gone = out
                .find("terminated the replaced instance")
                .expect("old terminated");
            assert!(moved < gone, "case `{what}`: {out}");
        }
        if shown.contains("~ instance") && shown.contains("instance_type") {
            assert_eq!(env.instance().text("instance_type"), "t3.medium");
        }
    }
    covered
}

/// The table: every attribute a plan can show as changed, one row each (some rows change it
/// in the stack file, the others behind the stack's back in AWS).
fn ec2_cases(env: &Ec2Env) -> Vec<Case<'_>> {
    use fullslack_aws::sdk::ec2::types as t;
    vec![
        (
            "root volume grows in place",
            vec![("instance", "volume_gb")],
            vec!["~ instance conv-1", "volume_gb: 20 → 30"],
            change(move |t: &mut String| *t = t.replace("count = 1\n", "count = 1\nvolume_gb = 30\n")),
        ),
        (
            "root volume cannot shrink: replaced",
            vec![("instance", "volume_gb")],
            vec![
                "-/+ instance conv-1",
                "volume_gb: 30 → 25   (forces replacement: an EBS volume cannot shrink)",
                "DATA LOSS",
            ],
            change(move |t: &mut String| *t = t.replace("volume_gb = 30", "volume_gb = 25")),
        ),
        (
            "instance type resized in place",
            vec![("instance", "instance_type")],
            vec![
                "~ instance conv-1",
                "instance_type: t3.small → t3.medium",
                "resized in place",
            ],
            change(move |t: &mut String| *t = t.replace("t3.small", "t3.medium")),
        ),
        (
            "image: replaced",
            vec![("instance", "image")],
            vec![
                "-/+ instance conv-1",
                "image: al2023 → ami-04681a1dbd79675a5   (forces replacement: the image is chosen only at launch)",
                "~ elastic_ip conv-1",
            ],
            change(move |t: &mut String| {
                *t = t.replace("ami = \"al2023\"", "ami = \"ami-04681a1dbd79675a5\"");
            }),
        ),
        (
            "key pair name: replaced",
            vec![("instance", "key_name")],
            vec![
                "+ key_pair conv-key2: create",
                "-/+ instance conv-1",
                "key_name: conv-key → conv-key2",
                "- key_pair conv-key (",
            ],
            change(move |t: &mut String| *t = t.replace("conv-key", "conv-key2")),
        ),
        (
            "key material: key pair replaced",
            vec![("key_pair", "public_key_sha256")],
            vec!["-/+ key_pair conv-key2", "public_key_sha256:"],
            change(move |t: &mut String| {
                let line = t.lines().find(|l| l.starts_with("public_key_file")).unwrap().to_string();
                *t = t.replace(&line, &format!("public_key_file = \"{}\"", env.other_key.display()));
            }),
        ),
        (
            "rules of every kind added by hand: revoked",
            vec![("security_group", "ingress")],
            vec![
                "~ security_group conv",
                "ingress: - -1/all from 10.0.0.0/8   (not in the stack: drift)",
                "ingress: - tcp/8080 from ::/0   (not in the stack: drift)",
                "ingress: - tcp/5432 from sg-",
            ],
            change(move |_: &mut String| {
                let sg = env.rt
                    .block_on(fullslack_aws::read_actual(&env.aws, env.name, "ec2", &Default::default()))
                    .unwrap()
                    .into_iter()
                    .find(|r| r.kind == Kind::SecurityGroup)
                    .unwrap();
                let other = env.foreign_sg(sg.text("vpc"), "db-clients");
                let perms = [
                    t::IpPermission::builder()
                        .ip_protocol("-1")
                        .ip_ranges(t::IpRange::builder().cidr_ip("10.0.0.0/8").build())
                        .build(),
                    t::IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(8080)
                        .to_port(8080)
                        .ipv6_ranges(t::Ipv6Range::builder().cidr_ipv6("::/0").build())
                        .build(),
                    t::IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(5432)
                        .to_port(5432)
                        .user_id_group_pairs(t::UserIdGroupPair::builder().group_id(other).build())
                        .build(),
                ];
                for p in perms {
                    env.rt.block_on(
                        env.ec2.authorize_security_group_ingress()
                            .group_id(sg.id.clone().unwrap())
                            .ip_permissions(p)
                            .send(),
                    )
                    .expect("out-of-band rule");
                }
            }),
        ),
        (
            "security groups of the instance edited by hand: set back in place",
            vec![("instance", "security_group")],
            vec!["~ instance conv-1", "security_group: - sg-"],
            change(move |_: &mut String| {
                let i = env.instance();
                let d = env.rt
                    .block_on(env.ec2.describe_instances().instance_ids(i.id.clone().unwrap()).send())
                    .unwrap();
                let inst = &d.reservations()[0].instances()[0];
                let ours = inst.security_groups()[0].group_id().unwrap().to_string();
                let other = env.foreign_sg(inst.vpc_id().unwrap(), "hand-made");
                env.rt.block_on(
                    env.ec2.modify_instance_attribute()
                        .instance_id(i.id.clone().unwrap())
                        .groups(ours)
                        .groups(other)
                        .send(),
                )
                .expect("out-of-band groups");
            }),
        ),
        (
            "IMDSv1 allowed by hand: IMDSv2 required again in place",
            vec![("instance", "metadata_tokens")],
            vec!["~ instance conv-1", "metadata_tokens: optional → required"],
            change(move |_: &mut String| {
                env.rt.block_on(
                    env.ec2.modify_instance_metadata_options()
                        .instance_id(env.instance().id.unwrap())
                        .http_tokens(t::HttpTokensState::Optional)
                        .send(),
                )
                .expect("out-of-band metadata options");
            }),
        ),
        (
            "user data changed: replaced",
            vec![("instance", "user_data_sha256")],
            vec![
                "-/+ instance conv-1",
                "forces replacement: user data runs only on an instance's first boot",
            ],
            change(move |_: &mut String| {
                env.rt.block_on(
                    env.ec2.create_tags()
                        .resources(env.instance().id.unwrap())
                        .tags(
                            t::Tag::builder()
                                .key("fullslack:user-data-sha256")
                                .value("0000")
                                .build(),
                        )
                        .send(),
                )
                .expect("out-of-band tag");
            }),
        ),
        (
            "Elastic IP detached by hand: attached again",
            vec![("elastic_ip", "instance")],
            vec!["~ elastic_ip conv-1", "instance: (none) → conv-1"],
            change(move |_: &mut String| {
                let a = env.rt
                    .block_on(
                        env.ec2.describe_addresses()
                            .filters(
                                t::Filter::builder()
                                    .name("tag:fullslack:stack")
                                    .values(env.name)
                                    .build(),
                            )
                            .send(),
                    )
                    .unwrap();
                let assoc = a.addresses()[0].association_id().unwrap().to_string();
                env.rt.block_on(env.ec2.disassociate_address().association_id(assoc).send())
                    .expect("out-of-band disassociate");
            }),
        ),
        (
            "ECR tags made immutable by hand: mutable again",
            vec![("ecr_repository", "tag_mutability")],
            vec!["~ ecr_repository conv/chat", "tag_mutability: IMMUTABLE → MUTABLE"],
            change(move |_: &mut String| {
                env.rt.block_on(
                    env.aws.ecr()
                        .put_image_tag_mutability()
                        .repository_name("conv/chat")
                        .image_tag_mutability(
                            fullslack_aws::sdk::ecr::types::ImageTagMutability::Immutable,
                        )
                        .send(),
                )
                .expect("out-of-band mutability");
            }),
        ),
        (
            "subnet: replaced",
            vec![("instance", "subnet")],
            vec!["-/+ instance conv-1", "forces replacement: an instance cannot move to another subnet"],
            change(move |t: &mut String| {
                let now = env.instance().text("subnet").to_string();
                let subnets = env.rt
                    .block_on(
                        env.ec2.describe_subnets()
                            .filters(t::Filter::builder().name("default-for-az").values("true").build())
                            .send(),
                    )
                    .unwrap();
                let other = subnets
                    .subnets()
                    .iter()
                    .filter_map(|s| s.subnet_id())
                    .find(|s| *s != now)
                    .unwrap()
                    .to_string();
                *t = t.replace("count = 1\n", &format!("count = 1\nsubnet_id = \"{other}\"\n"));
            }),
        ),
        (
            "another VPC: security group and instance replaced",
            vec![("security_group", "vpc"), ("instance", "subnet")],
            vec![
                "-/+ security_group conv",
                "forces replacement: a security group cannot move to another VPC",
                "-/+ instance conv-1",
            ],
            change(move |t: &mut String| {
                let vpc = env.rt
                    .block_on(env.ec2.create_vpc().cidr_block("10.9.0.0/16").send())
                    .unwrap()
                    .vpc()
                    .unwrap()
                    .vpc_id()
                    .unwrap()
                    .to_string();
                let subnet = env.rt
                    .block_on(
                        env.ec2.create_subnet()
                            .vpc_id(&vpc)
                            .cidr_block("10.9.1.0/24")
                            .send(),
                    )
                    .unwrap()
                    .subnet()
                    .unwrap()
                    .subnet_id()
                    .unwrap()
                    .to_string();
                let line = t.lines().find(|l| l.starts_with("subnet_id")).unwrap().to_string();
                *t = t.replace(&line, &format!("subnet_id = \"{subnet}\""));
            }),
        ),
    ]
}

/// Every (kind, attribute) the resources of a first plan (all creates) are compared on.
pub(super) fn compared_attrs(first: &serde_json::Value) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = Vec::new();
    for ch in first["changes"].as_array().unwrap() {
        let kind = ch["after"]["kind"].as_str().unwrap().to_string();
        for k in ch["after"]["attrs"].as_object().unwrap().keys() {
            if !all.contains(&(kind.clone(), k.clone())) {
                all.push((kind.clone(), k.clone()));
            }
        }
    }
    all
}

/// Runs one row: makes the change, plans (the plan must show `expect` and change every pair
/// the row covers, which go into `covered`), applies, and checks that the next plan is empty.
/// Returns what the plan and the apply printed.
pub(super) fn run_case(
    moto: &Moto,
    dir: &Path,
    stack: &Path,
    text_now: &mut String,
    i: usize,
    (what, covers, expect, change): &Case<'_>,
    covered: &mut Vec<(String, String)>,
) -> (String, String) {
    change(text_now);
    std::fs::write(stack, &*text_now).unwrap();
    let path = dir.join(format!("case-{i}.json"));
    let p = fullslack(
        moto,
        &["plan", "--stack", s(stack), "--out", s(&path)],
        None,
    );
    let shown = text(&p);
    assert_eq!(p.status.code(), Some(2), "case `{what}`: {shown}");
    for want in expect {
        assert!(
            shown.contains(want),
            "case `{what}`: missing `{want}` in:\n{shown}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let changed = planned_attrs(&json);
    for (kind, attr) in covers {
        assert!(
            changed.iter().any(|(k, a, _)| k == kind && a == attr),
            "case `{what}`: {kind}.{attr} not in the plan: {changed:?}"
        );
        covered.push((kind.to_string(), attr.to_string()));
    }
    let applied = fullslack(moto, &["apply", s(&path), "--wait-timeout", "60"], None);
    assert_eq!(
        applied.status.code(),
        Some(0),
        "case `{what}`: {}",
        text(&applied)
    );
    let again = fullslack(moto, &["plan", "--stack", s(stack)], None);
    assert_eq!(
        again.status.code(),
        Some(0),
        "case `{what}`: the plan after apply is not empty:\n{}",
        text(&again)
    );
    (shown, text(&applied))
}
