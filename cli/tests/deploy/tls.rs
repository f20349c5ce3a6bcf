//! A `tls.enabled` stack deployed on a fresh host gets its certificate during the deploy from
//! a real ACME CA: pebble, with pebble-challtestsrv answering every name with 127.0.0.1, which
//! validates HTTP-01 through the host's Nginx. The release switches behind an HTTP-only site
//! (the host has no certificate yet) that serves the challenge, the certificate is issued, and
//! the site turns HTTPS; a second deploy orders nothing; a challenge the CA cannot reach leaves
//! the release serving over plain HTTP and the failure reported with its fix.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fullslack_test_support::{
    free_port, hosts::resolving_to_loopback, pebble::Pebble, wait_for_port,
};
use serde_json::Value;

use super::{health_through_nginx, text, Host, PROBE_PASSWORD};

/// The test stacks' domain (`stack_text`).
const DOMAIN: &str = "chat.example.test";

/// A host stand-in whose stack gets its certificates from its own pebble.
struct TlsHost {
    // Declared first: the host (its containers) goes before the CA.
    host: Host,
    pebble: Pebble,
    https_port: u16,
}

impl TlsHost {
    fn start() -> TlsHost {
        let http_port = free_port();
        let pebble = Pebble::start(http_port);
        let host = Host::with_tls(http_port, &pebble.stack_tls_section());
        // Nginx's workers run as `nobody`: the ACME webroot inside the host's directory must
        // be reachable for them (a temporary directory is 0700).
        std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the host's directory");
        TlsHost {
            host,
            pebble,
            https_port: free_port(),
        }
    }

    fn cert_dir(&self) -> PathBuf {
        self.host.dir.path().join("certs")
    }

    /// `fullslack deploy --version V` with the host's certificate paths and pebble's DNS for
    /// the checks before ordering.
    fn deploy_cmd(&self, version: &str, extra: &[&str]) -> Command {
        let mut c = self.host.cli(&["deploy", "--version", version]);
        c.args(self.host.switch_args())
            .arg("--https-port")
            .arg(self.https_port.to_string())
            .arg("--cert-dir")
            .arg(self.cert_dir())
            .arg("--acme-root")
            .arg(self.host.dir.path().join("acme"))
            .arg("--dns-server")
            .arg(format!("127.0.0.1:{}", self.pebble.dns_port))
            .args(extra);
        c
    }

    fn deploy(&self, version: &str, extra: &[&str]) -> Output {
        self.deploy_cmd(version, extra)
            .output()
            .expect("run fullslack deploy")
    }

    /// The stack's local order log (empty when nothing was ever ordered).
    fn order_log(&self) -> String {
        let path = self
            .host
            .dir
            .path()
            .join(format!(".fullslack/{}/acme/orders.jsonl", self.host.name));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// `fullslack health https://DOMAIN:PORT` with `root` as the only CA, where DOMAIN
    /// resolves to 127.0.0.1.
    fn health_https(&self, root: &Path) -> Output {
        let fullslack = Path::new(env!("CARGO_BIN_EXE_fullslack"));
        resolving_to_loopback(self.host.dir.path(), &[DOMAIN], fullslack)
            .args(["health", "--json", "--ca-file"])
            .arg(root)
            .arg(format!("https://{DOMAIN}:{}", self.https_port))
            .env("FULLSLACK_PROBE_PASSWORD", PROBE_PASSWORD)
            .env_remove("FULLSLACK_STACK")
            .output()
            .expect("run health")
    }

    /// Every check of `fullslack health` over HTTPS passes with pebble's root (fetched from
    /// its management port) as the CA: the served chain verifies against it.
    fn assert_https_healthy(&self) {
        // `nginx -s reload` returns before the master opened the new site's listening socket.
        wait_for_port(self.https_port, Duration::from_secs(20));
        let root = self.host.dir.path().join("pebble-root.pem");
        std::fs::write(&root, self.pebble.root_pem()).expect("write pebble's root");
        let h = self.health_https(&root);
        assert!(h.status.success(), "health over HTTPS: {}", text(&h));
        let report: Value = serde_json::from_slice(&h.stdout).expect("health json");
        let ok = fullslack_test_support::report::checks_with_outcome(&report, "ok");
        assert_eq!(
            ok,
            ["healthz", "readyz", "ws.round_trip", "tls.certificate"],
            "{report:#}"
        );
    }
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn a_tls_stack_on_a_fresh_host_gets_a_certificate_and_a_second_deploy_orders_none() {
    let t = TlsHost::start();
    t.host.build("v1", None);
    t.host.build("v2", None);

    let first = json(&t.deploy("v1", &["--json"]));
    let host = &first["hosts"][0];
    assert_eq!(host["version"], "v1", "{first:#}");
    // No certificate when the release switched: the site went out HTTP-only.
    assert_eq!(host["https"], false, "{first:#}");
    let cert = &first["certificate"];
    assert_eq!(cert["result"], "issued", "{first:#}");
    assert_eq!(cert["names"], serde_json::json!([DOMAIN]), "{first:#}");
    assert_eq!(cert["http_only"], serde_json::json!([]), "{first:#}");
    let serial = cert["serial"].as_str().expect("serial").to_string();
    t.assert_https_healthy();
    let log = t.order_log();
    assert_eq!(log.lines().count(), 1, "{log}");

    // The second deploy (a GitHub Actions step) finds the certificate valid and not due:
    // nothing is ordered.
    let summary = t.host.dir.path().join("step-summary.md");
    let out = t
        .deploy_cmd("v2", &[])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("run fullslack deploy");
    assert!(out.status.success(), "deploy v2: {}", text(&out));
    let md = std::fs::read_to_string(&summary).expect("step summary written");
    assert!(md.contains("**Certificate:** valid until "), "{md}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("certificate: valid until ")
            && stdout.contains(&format!(
                "(serial {serial}) for {DOMAIN}; renewal due from "
            )),
        "{}",
        text(&out)
    );
    assert_eq!(t.order_log(), log, "the second deploy ordered again");
    assert_eq!(t.host.containers(), [format!("{}-green v2", t.host.name)]);
    t.assert_https_healthy();
}

#[test]
fn an_unreachable_challenge_leaves_the_release_serving_and_says_why() {
    let t = TlsHost::start();
    t.host.build("v1", None);
    // The CA resolves the domain to an address where nothing listens. The DNS checks would
    // stop the order before the CA (they compare the record with the host): skipped, so the
    // CA's own failure is what the deploy reports.
    t.pebble.set_a(DOMAIN, "127.0.0.2");
    let out = t.deploy("v1", &["--skip-cert-checks"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("v1 live on Blue (was nothing)"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains(&format!("certificate: FAILED for {DOMAIN}: ")),
        "{}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plain HTTP only")
            && stderr.contains("could not reach the host on port 80"),
        "{}",
        text(&out)
    );
    assert!(stderr.contains("hint: open port 80"), "{}", text(&out));

    // The release switched and serves through Nginx over plain HTTP.
    assert_eq!(t.host.containers(), [format!("{}-blue v1", t.host.name)]);
    let health = health_through_nginx(&t.host);
    assert!(health.status.success(), "{}", text(&health));
    assert!(!t.cert_dir().join("fullchain.pem").exists());
    let log = t.order_log();
    let last: Value = serde_json::from_str(log.lines().last().expect("a line")).expect("json");
    assert_eq!(last["outcome"], "failed", "{log}");
}
