//! `fullslack doctor` against a real DNS server on loopback (pebble-challtestsrv, records added
//! through its management API) and real listeners.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fullslack_test_support::{
    certs::make_certs, free_port, fullslack, paths::tempdir, pebble::ChallTestSrv, wait_for_port,
    ProcessGuard,
};

use serde_json::{json, Value};

/// The DNS server (pebble-challtestsrv); started with no default answer, so only the
/// records a test adds exist.
type Dns = ChallTestSrv;

/// A minimal HTTP server on 127.0.0.1 answering every request with a Date header (for the
/// clock check), plus a plain listener for 443.
struct Web {
    http_port: u16,
    https_port: u16,
    _https: TcpListener,
}

fn start_web() -> Web {
    let http = TcpListener::bind("127.0.0.1:0").expect("bind");
    let https = TcpListener::bind("127.0.0.1:0").expect("bind");
    let http_port = http.local_addr().expect("addr").port();
    let https_port = https.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in http.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let date = httpdate::fmt_http_date(std::time::SystemTime::now());
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Web {
        http_port,
        https_port,
        _https: https,
    }
}

fn stack_file(dir: &Path, domain: &str) -> PathBuf {
    let path = dir.join("stack.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"chat\"\ndomains = [\"{domain}\"]\ntarget = \"ssh\"\n\
             [[hosts]]\naddress = \"127.0.0.1\"\nipv4 = \"127.0.0.1\"\n\
             [image]\nname = \"fullslack/chat\"\n\
             [tls]\nacme_email = \"ops@example.test\"\n\
             [secrets]\nFULLSLACK_AUTH__JWT_SECRET = {{ env = \"JWT\" }}\n"
        ),
    )
    .expect("stack");
    path
}

fn doctor(stack: &Path, dns: &Dns, web: &Web, json_out: bool) -> (i32, String) {
    doctor_with(stack, dns, web, json_out, &["--skip", "tls"])
}

fn doctor_with(
    stack: &Path,
    dns: &Dns,
    web: &Web,
    json_out: bool,
    extra: &[&str],
) -> (i32, String) {
    let mut c = fullslack!();
    c.arg("doctor")
        .arg("--stack")
        .arg(stack)
        .args(["--dns-server", &format!("127.0.0.1:{}", dns.dns_port)])
        .args(["--http-port", &web.http_port.to_string()])
        .args(["--https-port", &web.https_port.to_string()])
        .args(["--timeout", "2"])
        .args(["--skip", "ssh", "--skip", "docker", "--skip", "aws"])
        .args(extra);
    if json_out {
        c.arg("--json");
    }
    let out = c.output().expect("run doctor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn checks<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["name"] == name)
        .collect()
}

#[test]
fn correct_setup_passes() {
    let dns = Dns::start("");
    let web = start_web();
    let dir = tempdir();
    let domain = "chat.good.test";
    dns.add("add-a", json!({"host": domain, "addresses": ["127.0.0.1"]}));
    dns.add(
        "add-caa",
        json!({"host": "good.test", "policies": [{"tag": "issue", "value": "letsencrypt.org"}]}),
    );
    let (code, stdout) = doctor(&stack_file(dir.path(), domain), &dns, &web, true);
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(checks(&report, "dns.a")[0]["outcome"], "ok");
    assert_eq!(checks(&report, "dns.aaaa")[0]["outcome"], "ok");
    let reach = checks(&report, "reach.ipv4");
    assert_eq!(reach.len(), 2, "80 and 443: {report:#}");
    assert!(reach.iter().all(|c| c["outcome"] == "ok"));
    let caa = checks(&report, "dns.caa")[0];
    assert_eq!(caa["outcome"], "ok");
    assert!(caa["detail"]
        .as_str()
        .expect("detail")
        .contains("good.test"));
    assert_eq!(checks(&report, "clock")[0]["outcome"], "ok", "{report:#}");
}

#[test]
fn skipping_dns_still_checks_reach_and_clock_on_the_stack_addresses() {
    let dns = Dns::start("");
    let web = start_web();
    let dir = tempdir();
    // No DNS record at all: with DNS skipped, the hosts' addresses from the stack are used.
    let stack = stack_file(dir.path(), "chat.nodns.test");
    let (code, stdout) = doctor_with(
        &stack,
        &dns,
        &web,
        true,
        &["--skip", "dns", "--skip", "tls"],
    );
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(code, 0, "{report:#}");
    assert!(checks(&report, "dns.a").is_empty(), "{report:#}");
    let reach = checks(&report, "reach.ipv4");
    assert_eq!(reach.len(), 2, "80 and 443 still probed: {report:#}");
    assert!(reach.iter().all(|c| c["outcome"] == "ok"), "{report:#}");
    assert_eq!(checks(&report, "clock")[0]["outcome"], "ok", "{report:#}");
    assert_eq!(checks(&report, "dns")[0]["outcome"], "skip");
    let (_, text) = doctor_with(
        &stack,
        &dns,
        &web,
        false,
        &["--skip", "dns", "--skip", "tls"],
    );
    assert!(!text.contains("all checks passed"), "{text}");
    assert!(text.contains("skipped (") && text.contains("dns"), "{text}");
}

/// Replaces the plain 443 listener by a real TLS server (`openssl s_server`) with a
/// certificate for `domain` from a test CA; returns the CA file.
fn serve_tls(web: &mut Web, domain: &str, dir: &Path) -> (ProcessGuard, PathBuf) {
    make_certs(dir, &[domain]);
    let port = free_port();
    let server = ProcessGuard::spawn(
        "openssl s_server",
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(dir.join("fullchain.pem"))
            .arg("-key")
            .arg(dir.join("privkey.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(10));
    web.https_port = port;
    (server, dir.join("ca.pem"))
}

#[test]
fn certificate_days_left_and_trust_are_checked() {
    let dns = Dns::start("");
    let mut web = start_web();
    let dir = tempdir();
    let domain = "chat.tls.test";
    dns.add("add-a", json!({"host": domain, "addresses": ["127.0.0.1"]}));
    let (_tls, ca) = serve_tls(&mut web, domain, dir.path());
    let stack = stack_file(dir.path(), domain);
    let ca = ca.display().to_string();

    // Trusted through the test CA, 30 days left.
    let (code, stdout) = doctor_with(&stack, &dns, &web, true, &["--ca-file", &ca]);
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(code, 0, "{report:#}");
    let cert = checks(&report, "tls.certificate")[0];
    assert_eq!(cert["outcome"], "ok", "{report:#}");
    assert!(cert["detail"]
        .as_str()
        .expect("detail")
        .contains("days left"));

    // Not enough days left for a 60-day policy.
    let (code, stdout) = doctor_with(
        &stack,
        &dns,
        &web,
        true,
        &["--ca-file", &ca, "--cert-min-days", "60"],
    );
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(code, 1);
    let cert = checks(&report, "tls.certificate")[0];
    assert_eq!(cert["outcome"], "fail");
    assert!(cert["detail"]
        .as_str()
        .expect("detail")
        .contains("expires soon"));

    // Without the CA the certificate is untrusted.
    let (code, stdout) = doctor_with(&stack, &dns, &web, true, &[]);
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(code, 1);
    let cert = checks(&report, "tls.certificate")[0];
    assert_eq!(cert["outcome"], "fail");
    assert!(cert["detail"]
        .as_str()
        .expect("detail")
        .contains("not trusted"));
}

#[test]
fn aaaa_record_for_a_host_without_ipv6_fails_with_the_fix() {
    let dns = Dns::start("");
    let web = start_web();
    let dir = tempdir();
    let domain = "chat.v6broken.test";
    dns.add("add-a", json!({"host": domain, "addresses": ["127.0.0.1"]}));
    // The original outage: an AAAA record pointing at an address where nothing answers.
    dns.add("add-aaaa", json!({"host": domain, "addresses": ["::1"]}));
    let (code, stdout) = doctor(&stack_file(dir.path(), domain), &dns, &web, true);
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["ok"], false);
    let aaaa = checks(&report, "dns.aaaa")[0];
    assert_eq!(aaaa["outcome"], "fail");
    assert!(aaaa["detail"].as_str().expect("detail").contains("::1"));
    assert!(aaaa["fix"]
        .as_str()
        .expect("fix")
        .contains("delete the AAAA record"));
    let v6 = checks(&report, "reach.ipv6");
    assert_eq!(v6.len(), 2, "{report:#}");
    assert!(v6.iter().all(|c| c["outcome"] == "fail"), "{report:#}");
    assert!(v6[0]["fix"].as_str().expect("fix").contains("IPv6"));
    // IPv4 is fine: only the IPv6 half is reported broken.
    assert!(checks(&report, "reach.ipv4")
        .iter()
        .all(|c| c["outcome"] == "ok"));

    // Human output says the same, with the fix.
    let (code, text) = doctor(&stack_file(dir.path(), domain), &dns, &web, false);
    assert_eq!(code, 1);
    assert!(text.contains("FAIL dns.aaaa"), "{text}");
    assert!(text.contains("fix: delete the AAAA record"), "{text}");
}

#[test]
fn missing_a_record_and_wrong_address_fail() {
    let dns = Dns::start("");
    let web = start_web();
    let dir = tempdir();
    let (code, stdout) = doctor(
        &stack_file(dir.path(), "chat.missing.test"),
        &dns,
        &web,
        true,
    );
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(code, 1, "{report:#}");
    let a = checks(&report, "dns.a")[0];
    assert_eq!(a["outcome"], "fail");
    assert_eq!(a["detail"], "no A record");
    assert!(a["fix"]
        .as_str()
        .expect("fix")
        .contains("add an A record chat.missing.test -> 127.0.0.1"));

    let domain = "chat.elsewhere.test";
    dns.add("add-a", json!({"host": domain, "addresses": ["127.0.0.2"]}));
    let (code, stdout) = doctor(&stack_file(dir.path(), domain), &dns, &web, true);
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(code, 1);
    let a = checks(&report, "dns.a")[0];
    assert_eq!(a["outcome"], "fail");
    assert!(a["detail"].as_str().expect("detail").contains("127.0.0.2"));
}

#[test]
fn caa_that_excludes_the_ca_fails() {
    let dns = Dns::start("");
    let web = start_web();
    let dir = tempdir();
    let domain = "chat.caa.test";
    dns.add("add-a", json!({"host": domain, "addresses": ["127.0.0.1"]}));
    dns.add(
        "add-caa",
        json!({"host": domain, "policies": [{"tag": "issue", "value": "pki.goog"}]}),
    );
    let (code, stdout) = doctor(&stack_file(dir.path(), domain), &dns, &web, true);
    let report: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(code, 1);
    let caa = checks(&report, "dns.caa")[0];
    assert_eq!(caa["outcome"], "fail");
    assert!(caa["fix"]
        .as_str()
        .expect("fix")
        .contains("CAA 0 issue \"letsencrypt.org\""));
}

#[tokio::test]
async fn docker_aws_and_ssh_key_checks() {
    let dir = tempdir();
    let stack = fullslack::stack::parse(
        "name = \"c\"\ndomains = [\"c.example.test\"]\ntarget = \"ec2\"\n\
         [ec2]\nregion = \"us-east-1\"\n[ssh]\nidentity_file = \"~/.ssh/missing_key\"\n\
         [image]\nname = \"x\"\n[tls]\nacme_email = \"a@b.test\"\n\
         [secrets]\nFULLSLACK_AUTH__JWT_SECRET = { ssm = \"/c/jwt\" }\n",
    )
    .expect("stack");
    let mut o = fullslack::doctor::DoctorOptions {
        home: Some(dir.path().to_path_buf()),
        skip: ["dns", "reach", "caa", "tls", "clock"]
            .iter()
            .map(ToString::to_string)
            .collect(),
        docker_socket: dir.path().join("no-docker.sock"),
        ..Default::default()
    };
    let aws_in_env = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
    // The SDK's chain ends with the EC2 instance role: never ask a metadata service from here.
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let r = fullslack::doctor::run(&stack, &o).await;
    let get = |r: &fullslack::check::Report, n: &str| {
        r.checks
            .iter()
            .find(|c| c.name == n)
            .cloned()
            .unwrap_or_else(|| panic!("no {n}: {r:#?}"))
    };
    use fullslack::check::Outcome;
    assert_eq!(get(&r, "docker").outcome, Outcome::Fail);
    assert!(get(&r, "docker").fix.expect("fix").contains("start Docker"));
    assert_eq!(get(&r, "ssh.key").outcome, Outcome::Fail);
    assert!(get(&r, "ssh.key").fix.expect("fix").contains("ssh-keygen"));
    if !aws_in_env {
        assert_eq!(get(&r, "aws").outcome, Outcome::Fail);
        assert!(get(&r, "aws").fix.expect("fix").contains("aws configure"));
        // A profile file makes it pass.
        std::fs::create_dir_all(dir.path().join(".aws")).expect("mkdir");
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIA\naws_secret_access_key = x\n",
        )
        .expect("write");
        let r = fullslack::doctor::run(&stack, &o).await;
        assert_eq!(get(&r, "aws").outcome, Outcome::Ok, "{:?}", get(&r, "aws"));
    }
    // The real Docker Engine of this machine answers /_ping (TESTBED: it runs on every box).
    let real = PathBuf::from("/var/run/docker.sock");
    if real.exists() {
        o.docker_socket = real;
        let r = fullslack::doctor::run(&stack, &o).await;
        assert_eq!(get(&r, "docker").outcome, Outcome::Ok, "{r:#?}");
    }
}
