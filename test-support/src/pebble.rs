//! A real ACME CA on loopback for the CLI's `certs` tests: pebble (Let's Encrypt's test CA)
//! with pebble-challtestsrv as its DNS server. Every name resolves to 127.0.0.1 unless a test
//! adds its own A record, so any test domain validates against a web server on loopback.
//! Pebble's own HTTPS uses a throwaway CA made by [`crate::certs::make_certs`]; the root its
//! certificates chain to is new on every start and read from its management port.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{certs::make_certs, free_port, paths, wait_for_port, ProcessGuard};

/// pebble and its DNS server, stopped on drop.
pub struct Pebble {
    // Declared first: dropped (killed) before the directory with their files goes.
    _pebble: ProcessGuard,
    challtestsrv: ChallTestSrv,
    dir: tempfile::TempDir,
    /// DNS server (UDP and TCP) pebble's validation authority asks.
    pub dns_port: u16,
    /// challtestsrv's management API (plain HTTP).
    pub dns_management_port: u16,
    /// `https://127.0.0.1:PORT/dir`.
    pub directory_url: String,
    /// pebble's management port (HTTPS): `/roots/0`, `/intermediates/0`.
    pub management_port: u16,
}

impl Pebble {
    /// Starts both; pebble's validation authority dials `http_port` for HTTP-01. Every order
    /// validates afresh (no authorization reuse), and validation does not sleep.
    pub fn start(http_port: u16) -> Pebble {
        let dir = paths::tempdir();
        make_certs(dir.path(), &["localhost"]);
        let dns = ChallTestSrv::start("127.0.0.1");
        let (dns_port, dns_management_port) = (dns.dns_port, dns.management_port);
        let port = free_port();
        let management_port = free_port();
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("fullchain.pem"),
            "privateKey": dir.path().join("privkey.pem"),
            "httpPort": http_port,
            // Nothing listens there: TLS-ALPN-01 is never the challenge answered.
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        let conf = dir.path().join("pebble.json");
        std::fs::write(&conf, config.to_string()).expect("write pebble config");
        let pebble = ProcessGuard::spawn(
            "pebble",
            Command::new(paths::program("/usr/bin/pebble"))
                .arg("-config")
                .arg(&conf)
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for_port(port, Duration::from_secs(20));
        wait_for_port(management_port, Duration::from_secs(20));
        Pebble {
            _pebble: pebble,
            challtestsrv: dns,
            dir,
            dns_port,
            dns_management_port,
            directory_url: format!("https://127.0.0.1:{port}/dir"),
            management_port,
        }
    }

    /// The CA of pebble's own HTTPS certificate (for `tls.directory_ca_file`).
    pub fn tls_ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The `[tls]` table of a stack file whose certificates come from this pebble.
    pub fn stack_tls_section(&self) -> String {
        format!(
            "[tls]\nenabled = true\nacme_email = \"ops@example.test\"\n\
             directory_url = \"{}\"\ndirectory_ca_file = \"{}\"\n",
            self.directory_url,
            self.tls_ca().display()
        )
    }

    fn management_get(&self, path: &str) -> String {
        let ca = std::fs::read(self.tls_ca()).expect("read pebble CA");
        let client = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pebble CA"))
            .build()
            .expect("client");
        let r = client
            .get(format!("https://127.0.0.1:{}{path}", self.management_port))
            .send()
            .expect("pebble management API");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.text().expect("body")
    }

    /// The root (PEM) the certificates pebble issues chain to.
    pub fn root_pem(&self) -> String {
        self.management_get("/roots/0")
    }

    /// A call of challtestsrv's management API (`add-caa`, `add-aaaa`, …).
    pub fn dns(&self, what: &str, body: Value) {
        self.challtestsrv.add(what, body);
    }

    /// Points `host` at `ip` instead of the default 127.0.0.1.
    pub fn set_a(&self, host: &str, ip: &str) {
        self.dns("add-a", json!({"host": host, "addresses": [ip]}));
    }

    /// Back to the default answer (127.0.0.1) for `host`.
    pub fn clear_a(&self, host: &str) {
        self.dns("clear-a", json!({"host": host}));
    }
}

/// pebble-challtestsrv as a DNS server on loopback only (no challenge listeners), stopped on
/// drop. Records are added through its management API ([`ChallTestSrv::add`]).
pub struct ChallTestSrv {
    _proc: ProcessGuard,
    /// DNS (UDP and TCP).
    pub dns_port: u16,
    /// The management API (plain HTTP).
    pub management_port: u16,
}

impl ChallTestSrv {
    /// Starts it; `default_ipv4` answers every A query without a record of its own (`""`:
    /// only the records a test adds exist).
    pub fn start(default_ipv4: &str) -> ChallTestSrv {
        let dns_port = free_port();
        let management_port = free_port();
        let proc = ProcessGuard::spawn(
            "pebble-challtestsrv",
            Command::new(paths::program("/usr/bin/pebble-challtestsrv"))
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{management_port}")])
                .args(["-defaultIPv4", default_ipv4, "-defaultIPv6", ""])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for_port(management_port, Duration::from_secs(10));
        // The DNS listener is UDP and TCP; TCP tells us it is up.
        wait_for_port(dns_port, Duration::from_secs(10));
        ChallTestSrv {
            _proc: proc,
            dns_port,
            management_port,
        }
    }

    /// A call of the management API (`add-a`, `add-caa`, `clear-a`, …).
    pub fn add(&self, what: &str, body: Value) {
        let r = reqwest::blocking::Client::new()
            .post(format!("http://127.0.0.1:{}/{what}", self.management_port))
            .json(&body)
            .send()
            .expect("challtestsrv management API");
        assert!(r.status().is_success(), "{what}: {}", r.status());
    }
}
