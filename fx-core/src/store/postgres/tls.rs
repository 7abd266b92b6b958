//! TLS to PostgreSQL with rustls (ring; no OpenSSL): the connector of each `tls_mode`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connection::{PgTlsMode, PostgresSettings};
use crate::error::{Error, Result};

/// The TLS connector `settings` ask for; `None` without TLS.
pub(crate) fn connector(settings: &PostgresSettings) -> Result<Option<MakeRustlsConnect>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal("configuring tls for postgresql").with_source(e))?;
    let config = match settings.tls_mode {
        PgTlsMode::Disable => return Ok(None),
        PgTlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
        PgTlsMode::VerifyFull => {
            let Some(path) = &settings.ca_file else {
                return Err(Error::invalid(
                    "postgresql tls_mode = \"verify-full\" needs ca_file: the PEM file of the CA that signs the server's certificate",
                ));
            };
            let mut roots = RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(path).map_err(|e| {
                Error::invalid(format!(
                    "postgresql ca_file {}: cannot read it as PEM: {e}",
                    path.display()
                ))
            })?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| {
                    Error::invalid(format!(
                        "postgresql ca_file {}: not a PEM certificate: {e}",
                        path.display()
                    ))
                })?;
                roots.add(certificate).map_err(|e| {
                    Error::invalid(format!(
                        "postgresql ca_file {}: not a usable CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::invalid(format!(
                    "postgresql ca_file {} holds no certificate",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// `require`: the connection is encrypted, the server's certificate is not checked (libpq's
/// semantics); its signatures still are, so the handshake is with the key of the certificate
/// the server sent.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
