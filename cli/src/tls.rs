//! TLS helpers: a rustls client config with the web PKI roots plus optional extra CAs, and a
//! certificate inspection that reports validity and days left even for a bad certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;

/// Errors of the TLS boundary.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A CA file could not be read.
    #[error("cannot read CA file {path}: {message}")]
    CaFile {
        /// File.
        path: String,
        /// Cause.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup failed: {0}")]
    Setup(#[from] rustls::Error),
    /// Connecting failed.
    #[error("TLS connection to {addr} failed: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// No certificate was presented or it could not be parsed.
    #[error("cannot read the certificate of {0}")]
    Certificate(String),
    /// Timed out.
    #[error("TLS handshake with {0} timed out")]
    Timeout(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Root store: web PKI roots plus every certificate in `ca_file`.
pub fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let err = |message: String| TlsError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let iter = CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))?;
        let mut n = 0;
        for cert in iter {
            let cert = cert.map_err(|e| err(e.to_string()))?;
            roots.add(cert).map_err(|e| err(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(err("no PEM certificate in it".into()));
        }
    }
    Ok(roots)
}

/// A client config that verifies against [`root_store`].
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = root_store(ca_file)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// What a server's certificate looks like.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Subject of the leaf certificate.
    pub subject: String,
    /// Issuer of the leaf certificate.
    pub issuer: String,
    /// Expiry, RFC 2822-ish text from the certificate.
    pub not_after: String,
    /// Whole days until expiry (negative when expired).
    pub days_left: i64,
    /// Chain and name verified against the roots; `None` when valid.
    pub verify_error: Option<String>,
}

#[derive(Debug)]
struct Recording {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    result: Mutex<Option<String>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Err(e) = r {
            if let Ok(mut slot) = self.result.lock() {
                *slot = Some(e.to_string());
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Connects to `addr` with SNI `server_name` and reads the leaf certificate.
pub async fn inspect(
    addr: SocketAddr,
    server_name: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<CertInfo, TlsError> {
    let roots = Arc::new(root_store(ca_file)?);
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Setup(rustls::Error::General(e.to_string())))?;
    let verifier = Arc::new(Recording {
        inner,
        result: Mutex::new(None),
    });
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| TlsError::Certificate(server_name.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let label = format!("{server_name} ({addr})");
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| TlsError::Connect {
                addr: label.clone(),
                source,
            })?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|source| TlsError::Connect {
                addr: label.clone(),
                source,
            })
    };
    let stream = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| TlsError::Timeout(label.clone()))??;
    let der = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| TlsError::Certificate(label.clone()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| TlsError::Certificate(label.clone()))?;
    let not_after = cert.validity().not_after;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days_left = (not_after.timestamp() - now).div_euclid(86_400);
    let verify_error = verifier.result.lock().ok().and_then(|r| r.clone());
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: not_after.to_string(),
        days_left,
        verify_error,
    })
}
