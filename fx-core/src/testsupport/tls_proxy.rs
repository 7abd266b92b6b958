//! A TLS-terminating TCP proxy, for testing clients over TLS against the plain-HTTP servers
//! the test command starts (osmem-server, s3s-fs): it accepts TLS on `127.0.0.1:0` with a
//! certificate and key from files (`FX_TEST_TLS_CERT`, `FX_TEST_TLS_KEY`) and pipes the bytes
//! of each connection to the server, unchanged (the `Host` header included, so request
//! signatures still match).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The certificates of the TLS tests, made by `infra/scripts/start-certs.sh`.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA that signed `cert` (`FX_TEST_TLS_CA`).
    pub ca: PathBuf,
    /// A CA that signed nothing of it (`FX_TEST_TLS_OTHER_CA`).
    pub other_ca: PathBuf,
    /// The server's certificate, for `localhost` and `127.0.0.1` (`FX_TEST_TLS_CERT`).
    pub cert: PathBuf,
    /// Its private key (`FX_TEST_TLS_KEY`).
    pub key: PathBuf,
}

impl TestCertificates {
    /// The certificates the test command made, or `None` (skipped) without them; under
    /// `CI=true` a missing variable fails `test`.
    pub fn from_env(test: &str) -> Option<TestCertificates> {
        let ca = crate::testenv::backend("FX_TEST_TLS_CA", test)?;
        let var = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("{name} must be set with FX_TEST_TLS_CA"))
                .into()
        };
        Some(TestCertificates {
            ca: ca.into(),
            other_ca: var("FX_TEST_TLS_OTHER_CA"),
            cert: var("FX_TEST_TLS_CERT"),
            key: var("FX_TEST_TLS_KEY"),
        })
    }
}

/// A running proxy; dropping it closes the listener and every connection.
pub struct TlsProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsProxy {
    /// Starts a proxy to `upstream`, the base URL of a plain-HTTP server
    /// (`http://127.0.0.1:9200`), serving the server certificate of `certificates`.
    pub async fn start(upstream: &str, certificates: &TestCertificates) -> TlsProxy {
        let (cert, key) = (&certificates.cert, &certificates.key);
        let url = url::Url::parse(upstream).unwrap_or_else(|e| panic!("{upstream}: {e}"));
        let upstream = url
            .socket_addrs(|| None)
            .unwrap_or_else(|e| panic!("{upstream}: {e}"))[0];
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .unwrap_or_else(|e| panic!("reading {}: {e}", cert.display()));
        let key = PrivateKeyDer::from_pem_file(key)
            .unwrap_or_else(|e| panic!("reading {}: {e}", key.display()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .unwrap_or_else(|e| panic!("tls proxy config: {e}"));
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(accept(listener, acceptor, upstream));
        TlsProxy { addr, task }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its base URL, `https://127.0.0.1:<port>` (the test certificates name 127.0.0.1).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port())
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        // The accept task owns the connections' tasks: they end with it.
        self.task.abort();
    }
}

/// Accepts connections until aborted, each piped in a task of its own.
async fn accept(listener: TcpListener, acceptor: TlsAcceptor, upstream: SocketAddr) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Finished connections are reaped as new ones come.
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            // A client that refuses the certificate ends the handshake: nothing to pipe.
            let Ok(mut tls) = acceptor.accept(client).await else {
                return;
            };
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
        });
    }
}
