//! Certificates made at run time: a private CA and a server certificate
//! that it signs for `localhost`, `127.0.0.1` and `::1`.

use crate::ReceiverError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fmt;
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// Names the server certificate is valid for.
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Certificates start one day in the past so that small clock differences
/// between processes do not make them "not yet valid".
const VALID_BEFORE_NOW: Duration = Duration::days(1);
const VALID_AFTER_NOW: Duration = Duration::days(365);

/// A CA and a server certificate signed by it, generated in memory.
///
/// Clients trust `ca_pem`, and the receiver serves the server certificate.
/// Keys are ECDSA P-256. `Debug` does not print the private key.
#[derive(Clone)]
pub struct TestPki {
    /// The CA certificate, PEM-encoded.
    pub ca_pem: String,
    /// The server certificate, PEM-encoded.
    pub server_cert_pem: String,
    /// The server certificate's private key, PKCS#8 PEM.
    pub server_key_pem: String,
    server_cert_der: Vec<u8>,
    server_key_der: Vec<u8>,
}

impl TestPki {
    /// Generates a new CA and a server certificate for `localhost`,
    /// `127.0.0.1` and `::1`, valid from one day before now until 365 days after.
    pub fn generate() -> Result<Self, ReceiverError> {
        let now = OffsetDateTime::now_utc();

        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params(now).self_signed(&ca_key)?;

        let server_key = KeyPair::generate()?;
        let server_cert = server_params(now)?.signed_by(&server_key, &ca_cert, &ca_key)?;

        Ok(Self {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_cert_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
        })
    }

    /// Writes the CA certificate as PEM to `path`, for a client's CA file
    /// setting such as Hookline's `delivery.ca_file`.
    pub fn write_ca(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, &self.ca_pem)
    }

    /// Returns the chain the server presents: the server certificate alone,
    /// because clients already hold the CA.
    pub(crate) fn server_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.server_cert_der.clone())]
    }

    pub(crate) fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.server_key_der.clone()).into()
    }
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki")
            .field("ca_pem", &self.ca_pem)
            .field("server_cert_pem", &self.server_cert_pem)
            .field("server_key_pem", &"<redacted>")
            .finish()
    }
}

fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name("Hookline test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - VALID_BEFORE_NOW;
    params.not_after = now + VALID_AFTER_NOW;
    params
}

fn server_params(now: OffsetDateTime) -> Result<CertificateParams, rcgen::Error> {
    let names: Vec<String> = SERVER_NAMES.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = common_name("localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - VALID_BEFORE_NOW;
    params.not_after = now + VALID_AFTER_NOW;
    Ok(params)
}

fn common_name(name: &str) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    distinguished_name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_produces_pem_and_der() {
        let pki = TestPki::generate().unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki
            .server_cert_pem
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki
            .server_key_pem
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(pki.server_chain().len(), 1);
        assert_ne!(pki.ca_pem, pki.server_cert_pem);
    }

    #[test]
    fn debug_redacts_private_key() {
        let pki = TestPki::generate().unwrap();
        let debug = format!("{pki:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains("PRIVATE KEY"));
    }

    #[test]
    fn write_ca_writes_pem_file() {
        let pki = TestPki::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        pki.write_ca(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pki.ca_pem);
    }
}
