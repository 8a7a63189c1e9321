//! TLS with rustls (ring): the server's certificate and key, the client's trusted roots.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's certificate chain and private key, for `wss://`
/// ([`ServerBuilder::tls`](crate::ServerBuilder::tls)).
///
/// ```no_run
/// # async fn run() -> zapsocket::Result<()> {
/// let identity = zapsocket::Identity::from_pem_files("cert.pem", "key.pem")?;
/// let server = zapsocket::Server::builder().port(8443).tls(identity).bind().await?;
/// # Ok(()) }
/// ```
///
/// Clones share one certificate slot: [`Identity::replace`] on any clone changes the
/// certificate of every server built with it, for its next TLS handshakes (a renewed
/// certificate without a restart; `zap serve` does it on SIGHUP).
#[derive(Clone)]
pub struct Identity {
    config: Arc<std::sync::RwLock<Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(..)")
    }
}

impl Identity {
    /// From PEM: the certificate chain (leaf first) and the private key (PKCS#8, PKCS#1
    /// or SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Identity> {
        let certs = parse_certs(cert_chain)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| Error::tls(format!("private key: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::tls(format!("certificate and key: {e}")))?;
        config.alpn_protocols = server_alpn();
        Ok(Identity::from_config(Arc::new(config)))
    }

    /// From a rustls configuration of one's own: client certificates required or
    /// optional (mutual TLS, with rustls' `WebPkiClientVerifier`), protocol versions,
    /// several certificates by name. Set its ALPN to `h2` and `http/1.1` (WebSockets
    /// over HTTP/2 too, with the `http2` feature), `http/1.1`, or leave it empty.
    /// The client's certificates are then in [`Request::peer_certificates`](crate::Request::peer_certificates),
    /// for the [`authorize`](crate::ServerBuilder::authorize) hook and handlers.
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> Identity {
        Identity { config: Arc::new(std::sync::RwLock::new(config)) }
    }

    /// Makes this identity's certificate (and whole configuration) `other`'s, for the
    /// TLS handshakes that start from now on; connections already open keep theirs.
    /// Every clone of this identity, and every server built with one, sees the change.
    pub fn replace(&self, other: &Identity) {
        let config = other.current();
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The configuration in use now.
    pub(crate) fn current(&self) -> Arc<rustls::ServerConfig> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// From PEM files: the certificate chain and the private key.
    pub fn from_pem_files(
        cert_chain: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<Identity> {
        let certs = read(cert_chain.as_ref())?;
        let key = read(key.as_ref())?;
        Identity::from_pem(&certs, &key)
    }

    /// An acceptor with the configuration in use now.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current())
    }
}

/// Certificates a client trusts besides (or instead of) the system's roots
/// ([`ClientBuilder::add_root_certificate`](crate::ClientBuilder::add_root_certificate)).
#[derive(Clone, Debug)]
pub struct Certificate {
    certs: Vec<CertificateDer<'static>>,
}

impl Certificate {
    /// Every certificate in a PEM bundle (at least one).
    pub fn from_pem(pem: &[u8]) -> Result<Certificate> {
        Ok(Certificate { certs: parse_certs(pem)? })
    }

    /// Every certificate in a PEM file.
    pub fn from_pem_file(path: impl AsRef<std::path::Path>) -> Result<Certificate> {
        Certificate::from_pem(&read(path.as_ref())?)
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::tls(format!("{}: {e}", path.display())))
}

fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::tls(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::tls("no certificate in the PEM data"));
    }
    Ok(certs)
}

/// The system's trusted roots, loaded once per process.
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::debug!(error = %e, "a system root certificate could not be loaded");
        }
        loaded.certs
    })
}

/// The ALPN protocols a server offers, preferred first: `h2` with the `http2` feature
/// (WebSockets over HTTP/2, RFC 8441), and `http/1.1`.
pub(crate) fn server_alpn() -> Vec<Vec<u8>> {
    let mut alpn = Vec::new();
    if cfg!(feature = "http2") {
        alpn.push(b"h2".to_vec());
    }
    alpn.push(b"http/1.1".to_vec());
    alpn
}

/// How a client checks the server's certificate.
#[derive(Clone, Debug)]
pub(crate) enum ClientTls {
    /// Against the system roots (if `builtin`) and `extra` roots.
    Roots { builtin: bool, extra: Vec<Certificate> },
    /// As the application's own rustls configuration says.
    Config(Arc<rustls::ClientConfig>),
    /// Not at all (`danger_accept_invalid_certs`): any certificate, any name. The
    /// handshake's signatures are still checked, so the peer holds the key of the
    /// certificate it showed.
    NoCheck,
}

/// Opens TLS to `host` over `stream`, checking its certificate as `tls` says.
pub(crate) async fn connect(
    stream: TcpStream,
    host: &str,
    tls: &ClientTls,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = match tls {
        ClientTls::Config(config) => config.clone(),
        ClientTls::Roots { builtin, extra } => {
            let mut roots = RootCertStore::empty();
            if *builtin {
                roots.add_parsable_certificates(native_roots().iter().cloned());
            }
            for cert in extra.iter().flat_map(|c| &c.certs) {
                roots.add(cert.clone()).map_err(|e| Error::tls(format!("root certificate: {e}")))?;
            }
            let mut config = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        }
        ClientTls::NoCheck => {
            let provider = provider();
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::tls(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCheck(provider)))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        }
    };
    let name =
        ServerName::try_from(host.to_owned()).map_err(|e| Error::invalid(format!("host {host:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    connector.connect(name, stream).await.map_err(|e| match e.get_ref() {
        Some(inner) if inner.is::<rustls::Error>() => Error::tls(inner.to_string()),
        _ => e.into(),
    })
}

/// Accepts any server certificate, but checks the handshake's signatures with it.
#[derive(Debug)]
struct NoCheck(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
