//! A real ACME CA on loopback for the CLI's `certs` tests: pebble (Let's Encrypt's test CA)
//! with pebble-challtestsrv as its DNS server. Every name resolves to 127.0.0.1 unless a test
//! adds its own A record, so any test domain validates against a web server on loopback.
//! Pebble's own HTTPS uses a throwaway CA made by [`crate::certs::make_certs`]; the root its
//! certificates chain to is new on every start and read from its management port.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
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
    ///
    /// Its ports come from [`free_port`], which another test may have picked at the same
    /// moment. A second challtestsrv whose DNS port is taken keeps running with its management
    /// API up, and the other one answers its DNS queries: with the same default address every
    /// lookup still looks right until a test adds a record (reproduced by hand; the likely cause
    /// of a CI run where an order meant to fail on an unreachable address validated). So a start only counts once a
    /// record added through this management API comes back from this DNS port, over UDP and
    /// TCP; otherwise it starts again on other ports.
    pub fn start(default_ipv4: &str) -> ChallTestSrv {
        for _ in 0..5 {
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
            let srv = ChallTestSrv {
                _proc: proc,
                dns_port,
                management_port,
            };
            if srv.answers_its_own_records() {
                return srv;
            }
        }
        panic!("pebble-challtestsrv: no start of five answered its own records on its DNS port");
    }

    /// Adds an A record under a name only this instance knows and waits (up to 10 s) until
    /// both DNS transports on `dns_port` return it; false if something else answers there.
    fn answers_its_own_records(&self) -> bool {
        let name = format!(
            "ready-{}-{}-{}.fullslack.test",
            std::process::id(),
            self.dns_port,
            self.management_port
        );
        let probe: std::net::Ipv4Addr = [127, 0, 0, 77].into();
        // The management port may be another program's too: then this is not ours either.
        if !self.try_add(
            "add-a",
            json!({"host": name, "addresses": [probe.to_string()]}),
        ) {
            return false;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut answered = [false, false];
        for (i, protocol) in [Protocol::Udp, Protocol::Tcp].into_iter().enumerate() {
            while std::time::Instant::now() < deadline {
                match runtime.block_on(lookup_a(self.dns_port, protocol, &name)) {
                    Lookup::Found(ips) => {
                        answered[i] = ips == [probe];
                        break;
                    }
                    // Another DNS server on this port: it has never heard of the name.
                    Lookup::NoSuchName => break,
                    Lookup::NoAnswer => std::thread::sleep(Duration::from_millis(25)),
                }
            }
        }
        self.try_add("clear-a", json!({"host": name}));
        answered == [true, true]
    }

    /// A call of the management API (`add-a`, `add-caa`, `clear-a`, …).
    pub fn add(&self, what: &str, body: Value) {
        let r = self.post(what, body).expect("challtestsrv management API");
        assert!(r.status().is_success(), "{what}: {}", r.status());
    }

    /// [`ChallTestSrv::add`] that says whether it worked instead of panicking.
    fn try_add(&self, what: &str, body: Value) -> bool {
        self.post(what, body).is_ok_and(|r| r.status().is_success())
    }

    fn post(&self, what: &str, body: Value) -> reqwest::Result<reqwest::blocking::Response> {
        reqwest::blocking::Client::new()
            .post(format!("http://127.0.0.1:{}/{what}", self.management_port))
            .json(&body)
            .send()
    }
}

/// What one A query to a DNS server on loopback returned.
enum Lookup {
    Found(Vec<std::net::Ipv4Addr>),
    /// The server answered: no such record.
    NoSuchName,
    /// No answer (nothing listening yet, a timeout).
    NoAnswer,
}

async fn lookup_a(port: u16, protocol: Protocol, name: &str) -> Lookup {
    let mut config = ResolverConfig::new();
    config.add_name_server(NameServerConfig::new(
        ([127, 0, 0, 1], port).into(),
        protocol,
    ));
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    let resolver = TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build();
    match resolver.ipv4_lookup(format!("{name}.")).await {
        Ok(found) => Lookup::Found(found.iter().map(|a| a.0).collect()),
        Err(e) if e.is_no_records_found() => Lookup::NoSuchName,
        Err(_) => Lookup::NoAnswer,
    }
}
