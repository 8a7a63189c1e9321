//! wss:// through real sockets with certificates made at test time (rcgen): the client
//! verifies the server's certificate against a given CA and refuses a wrong one.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

use rcgen::{BasicConstraints, CertificateParams, CertifiedKey, IsCa, KeyPair};
use zapsocket::rustls::pki_types::pem::PemObject;
use zapsocket::{Certificate, Client, Identity, Server, WebSocket};

/// A CA, and a certificate for `localhost`/127.0.0.1 it signed: (CA PEM, cert PEM, key PEM).
fn test_pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose issuer equals its subject looks self-signed to OpenSSL.
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "zapsocket test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

async fn tls_echo_server(cert: &str, key: &str) -> u16 {
    let identity = Identity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let server = Server::builder().tls(identity).bind().await.unwrap();
    let port = server.local_addr().port();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    }));
    port
}

#[tokio::test]
async fn wss_echoes_with_a_trusted_ca() {
    let (ca, cert, key) = test_pki();
    let port = tls_echo_server(&cert, &key).await;
    for host in ["localhost", "127.0.0.1"] {
        let mut ws = Client::builder()
            .add_root_certificate(Certificate::from_pem(ca.as_bytes()).unwrap())
            .connect(&format!("wss://{host}:{port}/"))
            .await
            .unwrap();
        let big = "x".repeat(200_000);
        ws.send("over TLS").await.unwrap();
        ws.send(big.as_str()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("over TLS"));
        assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some(big.as_str()));
    }
}

/// Both directions at once with messages larger than the sockets' buffers: writes that
/// cannot finish at once (and TLS records left to flush) are finished when the socket
/// is writable again, on both sides.
#[tokio::test]
async fn wss_echoes_large_messages_while_both_sides_send() {
    let (ca, cert, key) = test_pki();
    let port = tls_echo_server(&cert, &key).await;
    let ws = Client::builder()
        .add_root_certificate(Certificate::from_pem(ca.as_bytes()).unwrap())
        .connect(&format!("wss://localhost:{port}/"))
        .await
        .unwrap();
    let (tx, mut rx) = ws.split();
    let messages: Vec<Vec<u8>> =
        (0..4u8).map(|i| vec![i.wrapping_mul(37).wrapping_add(1); 3 << 20]).collect();
    let sent = messages.clone();
    let writer = tokio::spawn(async move {
        for m in sent {
            tx.send(m).await.unwrap();
        }
        tx
    });
    for expected in &messages {
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv()).await.unwrap();
        assert_eq!(got.unwrap().unwrap().as_bytes(), &expected[..]);
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn the_client_refuses_a_certificate_it_does_not_trust() {
    let (_ca, cert, key) = test_pki();
    let (other_ca, _, _) = test_pki();
    let port = tls_echo_server(&cert, &key).await;
    let url = format!("wss://localhost:{port}/");

    let err = Client::builder()
        .add_root_certificate(Certificate::from_pem(other_ca.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .connect(&url)
        .await
        .unwrap_err();
    assert!(err.is_tls(), "another CA: {err}");

    let err = Client::connect(&url).await.unwrap_err();
    assert!(err.is_tls(), "system roots do not know the test CA: {err}");
}

#[tokio::test]
async fn the_client_refuses_a_certificate_for_another_name() {
    let (ca, _, _) = test_pki();
    // Signed by a trusted CA, but for another host.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["example.org".into()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let port = tls_echo_server(&cert.pem(), &key.serialize_pem()).await;
    let err = Client::builder()
        .add_root_certificate(Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap())
        .add_root_certificate(Certificate::from_pem(ca.as_bytes()).unwrap())
        .connect(&format!("wss://localhost:{port}/"))
        .await
        .unwrap_err();
    assert!(err.is_tls(), "{err}");
}

#[test]
fn bad_pem_is_a_tls_error() {
    assert!(Identity::from_pem(b"not a cert", b"not a key").unwrap_err().is_tls());
    assert!(Certificate::from_pem(b"").unwrap_err().is_tls());
    let CertifiedKey { cert, .. } = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_key = KeyPair::generate().unwrap();
    assert!(
        Identity::from_pem(cert.pem().as_bytes(), other_key.serialize_pem().as_bytes()).unwrap_err().is_tls()
    );
}

/// The application's own rustls configuration is used as it is (here: only the test CA
/// trusted), and `danger_accept_invalid_certs` lets a client through to a server whose
/// certificate nothing vouches for, where the defaults refuse it.
#[tokio::test]
async fn a_clients_own_rustls_config_and_the_no_check_option() {
    use std::sync::Arc;
    use zapsocket::rustls;
    let (ca, cert, key) = test_pki();
    let port = tls_echo_server(&cert, &key).await;
    let url = format!("wss://localhost:{port}/");

    let mut roots = rustls::RootCertStore::empty();
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap();
    roots.add(ca_der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut ws = Client::builder().tls_config(Arc::new(config)).connect(&url).await.unwrap();
    ws.send("own config").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("own config"));

    let empty = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let refused = Client::builder().tls_config(Arc::new(empty)).connect(&url).await.unwrap_err();
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
    let refused = Client::connect(&url).await.unwrap_err();
    assert!(refused.to_string().contains("UnknownIssuer"), "the defaults do not know the CA: {refused}");

    let mut ws = Client::builder().danger_accept_invalid_certs(true).connect(&url).await.unwrap();
    ws.send("no check").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("no check"));
}
