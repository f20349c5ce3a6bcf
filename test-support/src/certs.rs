//! Test certificates from the real `openssl` binary: a throwaway CA and a server certificate
//! signed by it, for TLS servers the tests start (nginx, `openssl s_server`).

use std::{path::Path, process::Command};

/// Runs `openssl` with arguments, panicking on failure.
pub fn openssl(args: &[&str], cwd: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate for `names` (DNS names and 127.0.0.1), written to `dir`
/// as ca.pem, fullchain.pem and privkey.pem.
pub fn make_certs(dir: &Path, names: &[&str]) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=fullslack test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "privkey.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=fullslack test server",
        ],
        dir,
    );
    let mut san = names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>();
    san.push("IP:127.0.0.1".into());
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            san.join(",")
        ),
    )
    .expect("write ext");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "fullchain.pem",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
        ],
        dir,
    );
}
