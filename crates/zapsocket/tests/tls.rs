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

/// A CA and a client certificate it signed, for mutual TLS: (CA PEM, cert PEM, key PEM).
fn client_pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "zapsocket client CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["ada.example".into()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "ada");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn client_config(
    ca: &str,
    identity: Option<(&str, &str)>,
) -> std::sync::Arc<zapsocket::rustls::ClientConfig> {
    use zapsocket::rustls::{self, pki_types::CertificateDer, pki_types::PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap())
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    std::sync::Arc::new(config)
}

/// Mutual TLS with the server's own rustls configuration: a client certificate signed by
/// the client CA gets in, and the `authorize` hook sees it; a client without one is
/// refused in the TLS handshake.
#[tokio::test]
async fn mutual_tls_with_an_own_server_config_shows_the_client_certificate_to_the_hook() {
    use std::sync::Arc;
    use zapsocket::rustls::{self, pki_types::CertificateDer, pki_types::PrivateKeyDer};
    let (ca, cert, key) = test_pki();
    let (client_ca, client_cert, client_key) = client_pki();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_roots = rustls::RootCertStore::empty();
    client_roots.add(CertificateDer::from_pem_slice(client_ca.as_bytes()).unwrap()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider.clone())
            .build()
            .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server = Server::builder()
        .tls(Identity::from_config(Arc::new(config)))
        .authorize(|request| async move {
            let certs = request.peer_certificates().map_or(0, <[_]>::len);
            Ok(zapsocket::Accept::new().data(certs))
        })
        .bind()
        .await
        .unwrap();
    let port = server.local_addr().port();
    tokio::spawn(server.serve(|ws: WebSocket| async move {
        let certs = ws.data::<usize>().copied().unwrap_or_default();
        let der_len = ws.request().and_then(|r| r.peer_certificates()).map_or(0, |c| c[0].len());
        let _ = ws.send(format!("{certs} {der_len}")).await;
    }));
    let url = format!("wss://localhost:{port}/");
    let mut ws = Client::builder()
        .tls_config(client_config(&ca, Some((&client_cert, &client_key))))
        .connect(&url)
        .await
        .unwrap();
    let seen = ws.recv().await.unwrap().unwrap();
    let der = CertificateDer::from_pem_slice(client_cert.as_bytes()).unwrap();
    assert_eq!(seen.as_text(), Some(format!("1 {}", der.len()).as_str()));

    let refused = Client::builder().tls_config(client_config(&ca, None)).connect(&url).await;
    let refused = match refused {
        Err(e) => e.to_string(),
        // TLS 1.3: the client may finish its side before the server's alert arrives.
        Ok(mut ws) => format!("{:?}", ws.recv().await),
    };
    assert!(refused.contains("CertificateRequired") || refused.contains("certificate"), "{refused}");
}

/// A renewed certificate without a restart: after `Identity::replace`, new handshakes
/// get the new certificate (clients trusting only the old CA are refused), and a
/// connection opened before goes on.
#[tokio::test]
async fn a_replaced_identity_serves_new_handshakes_and_keeps_open_connections() {
    let (old_ca, old_cert, old_key) = test_pki();
    let (new_ca, new_cert, new_key) = test_pki();
    let identity = Identity::from_pem(old_cert.as_bytes(), old_key.as_bytes()).unwrap();
    let server = Server::builder().tls(identity.clone()).bind().await.unwrap();
    let port = server.local_addr().port();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    }));
    let url = format!("wss://localhost:{port}/");
    let trusting = |ca: &str| Client::builder().tls_config(client_config(ca, None));
    let mut before = trusting(&old_ca).connect(&url).await.unwrap();

    identity.replace(&Identity::from_pem(new_cert.as_bytes(), new_key.as_bytes()).unwrap());
    // (Both test CAs have the same name: the new certificate fails the old CA's signature.)
    let refused = trusting(&old_ca).connect(&url).await.unwrap_err();
    assert!(refused.is_tls() && refused.to_string().contains("invalid peer certificate"), "{refused}");
    let mut after = trusting(&new_ca).connect(&url).await.unwrap();
    for ws in [&mut before, &mut after] {
        ws.send("still here").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("still here"));
    }
}
