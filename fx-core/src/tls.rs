//! TLS to the backends with a private CA: the certificates of a `ca_file` setting, and what a
//! certificate the client refused means for the operator. Used by the S3 package store, the
//! Elasticsearch sink and the executors' secrets delivery, whose reqwest clients (rustls) start
//! from their built-in web PKI roots (`webpki-roots`) and add these: public certificates stay
//! trusted.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, RootCertStore};

use crate::error::{Error, Result};

/// The certificates of `ca_file` at `path`, each checked to be one rustls can trust, so a bad
/// file stops the start with its name rather than failing every request.
pub(crate) fn ca_certificates(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let invalid = |why: String| Error::invalid(format!("{setting} {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
    let mut roots = RootCertStore::empty();
    let mut certificates = Vec::new();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate =
            certificate.map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
        roots
            .add(certificate.clone())
            .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
        certificates.push(certificate);
    }
    if certificates.is_empty() {
        return Err(invalid(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certificates)
}

/// What to tell the operator when `error` is a TLS certificate the client refused, or `None`
/// for any other failure.
pub(crate) fn refused_certificate(
    error: &(dyn std::error::Error + 'static),
    ca_file: Option<&Path>,
    address: &str,
) -> Option<String> {
    let mut cause = Some(error);
    let tls = loop {
        let err = cause?;
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            break tls;
        }
        // rustls's error sits in an `io::Error` (in another, with reqwest), whose `source()`
        // skips the error it wraps: go through `get_ref()`.
        cause = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => err.source(),
        };
    };
    let rustls::Error::InvalidCertificate(certificate) = tls else {
        return Some(format!("the tls handshake failed ({tls})"));
    };
    Some(match (certificate, ca_file) {
        (CertificateError::UnknownIssuer, Some(ca)) => format!(
            "the server's tls certificate is signed neither by the CA in ca_file {} nor by a web PKI root: ca_file must hold the CA that signed it",
            ca.display()
        ),
        (CertificateError::UnknownIssuer, None) => "the server's tls certificate is not signed by a web PKI root: set ca_file to the PEM file of the CA that signed it".into(),
        (CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }, _) => {
            format!("the server's tls certificate does not name the host of the {address} ({tls})")
        }
        _ => format!("the server's tls certificate was refused ({tls})"),
    })
}

/// `ca_file`s that must stop a start, for the tests of every client that reads one: a file
/// name, its contents (`None`: the file does not exist) and what the error must say.
#[cfg(test)]
pub(crate) const BAD_CA_FILES: &[(&str, Option<&str>, &str)] = &[
    ("missing.pem", None, "cannot read it"),
    (
        "plain.txt",
        Some("not a certificate\n"),
        "holds no PEM certificate",
    ),
    (
        "garbled.pem",
        Some("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"),
        "not a PEM certificate",
    ),
    (
        "not-x509.pem",
        Some("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"),
        "not a usable CA certificate",
    ),
];
