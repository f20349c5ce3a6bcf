//! What a PEM chain says about its leaf certificate: the names it covers, issuer, serial,
//! validity, and the identifier ACME renewal information (ARI, RFC 9773) asks about.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// The leaf certificate of a chain, as `status` and the renewal rules need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// DNS names of the subject alternative name extension, sorted.
    pub names: Vec<String>,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, hex (`0a:1b:…`).
    pub serial: String,
    /// Start of validity (Unix seconds).
    pub not_before: i64,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// Certificates in the chain (leaf included).
    pub chain_len: usize,
    /// `keyIdentifier` of the authority key identifier and the DER serial: the ARI identifier
    /// (absent when the certificate has no authority key identifier).
    #[serde(skip)]
    pub ari_id: Option<(Vec<u8>, Vec<u8>)>,
}

impl CertSummary {
    /// Lifetime in seconds.
    pub fn lifetime(&self) -> i64 {
        self.not_after - self.not_before
    }

    /// Whether it covers exactly these names (order and case do not matter).
    pub fn covers_exactly(&self, names: &[String]) -> bool {
        sorted_names(names) == self.names
    }
}

/// Names lower-cased, sorted and deduplicated: one set of names, however it was written.
pub fn sorted_names(names: &[String]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    v.sort();
    v.dedup();
    v
}

/// Reads the first certificate of a PEM chain.
pub fn summarize(pem: &str) -> Result<CertSummary, String> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    let leaf = chain.first().ok_or("no certificate in the PEM file")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let mut names = Vec::new();
    let mut aki = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    if let GeneralName::DNSName(d) = n {
                        names.push((*d).to_string());
                    }
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    let raw_serial = cert.tbs_certificate.raw_serial().to_vec();
    Ok(CertSummary {
        names: sorted_names(&names),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        chain_len: chain.len(),
        ari_id: aki.map(|a| (a, raw_serial)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_set_however_written() {
        let a = sorted_names(&["B.example.com".into(), "a.example.com".into()]);
        let b = sorted_names(&[
            "a.example.com".into(),
            "b.example.com".into(),
            "a.example.com".into(),
        ]);
        assert_eq!(a, b);
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let e = summarize("hello").unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }
}
