//! `airlock-connector check` as an operator runs it: a verdict per step, exit 0 only when all
//! pass — including a bridge behind HTTPS with a private certificate authority.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use airlock_bridge::testing::TestBridge;
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_airlock-connector");

/// Runs `airlock-connector check` with a clean environment and these settings.
async fn check(vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .arg("check")
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("AIRLOCK_ECHO_DELAY_MS", "0");
    for (name, value) in vars {
        command.env(name, value);
    }
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_every_step_against_a_working_bridge() {
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("checked").await;
    let output = check(&[
        ("AIRLOCK_BRIDGE_URL", &bridge.url),
        ("AIRLOCK_CONNECTOR_KEY", &key),
    ])
    .await;
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("✓ settings are valid (agent `echo`)"),
        "{text}"
    );
    assert!(text.contains("✓ bridge reachable at"), "{text}");
    assert!(
        text.contains("✓ connector key accepted: `checked`") && text.contains("all interfaces"),
        "{text}"
    );
    assert!(text.contains("✓ agent `echo` answered"), "{text}");
    assert!(text.contains("All checks passed"), "{text}");
    assert!(!text.contains(&key), "the key is never printed");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_step_that_fails() {
    let bridge = TestBridge::start().await;

    let refused = check(&[
        ("AIRLOCK_BRIDGE_URL", &bridge.url),
        ("AIRLOCK_CONNECTOR_KEY", "alk_c_wrong"),
    ])
    .await;
    let text = stdout(&refused);
    assert!(!refused.status.success());
    assert!(text.contains("✓ bridge reachable"), "{text}");
    assert!(text.contains("✗ connector key"), "{text}");
    assert!(text.contains("401"), "{text}");

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = check(&[
        ("AIRLOCK_BRIDGE_URL", &dead_url),
        ("AIRLOCK_CONNECTOR_KEY", "alk_c_any"),
    ])
    .await;
    let text = stdout(&unreachable);
    assert!(!unreachable.status.success());
    assert!(text.contains("✗ bridge at"), "{text}");
    assert!(text.contains("- connector key: skipped"), "{text}");

    let no_model = check(&[
        ("AIRLOCK_BRIDGE_URL", &bridge.url),
        ("AIRLOCK_CONNECTOR_KEY", "alk_c_any"),
        ("AIRLOCK_AGENT", "openai"),
    ])
    .await;
    let text = stdout(&no_model);
    assert!(!no_model.status.success());
    assert!(
        text.contains("✗ settings") && text.contains("AIRLOCK_OPENAI_MODEL"),
        "{text}"
    );
    bridge.shutdown().await;
}

/// A private CA and a certificate for 127.0.0.1 signed by it. Returns (CA PEM, server config).
fn private_pki() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Airlock test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    airlock_connector::bridge::install_crypto_provider();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    (ca_cert.pem(), config)
}

/// Terminates TLS on 127.0.0.1 and forwards the plain bytes to `upstream`, as nginx would.
async fn tls_front(config: rustls::ServerConfig, upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that distrusts the certificate aborts the handshake: nothing to do.
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                if let Ok(mut server) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_with_a_private_certificate_is_trusted_only_with_the_ca_bundle() {
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("tls").await;
    let (ca_pem, server_config) = private_pki();
    let upstream: SocketAddr = bridge.url.trim_start_matches("http://").parse().unwrap();
    let front = tls_front(server_config, upstream).await;
    let url = format!("https://{front}");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, ca_pem).unwrap();
    let bundle = bundle.to_str().unwrap();

    let trusted = check(&[
        ("AIRLOCK_BRIDGE_URL", &url),
        ("AIRLOCK_CONNECTOR_KEY", &key),
        ("AIRLOCK_CA_BUNDLE", bundle),
    ])
    .await;
    let text = stdout(&trusted);
    assert!(trusted.status.success(), "{text}");
    assert!(
        text.contains(&format!("✓ bridge reachable at {url}")),
        "{text}"
    );
    assert!(text.contains("✓ connector key accepted"), "{text}");

    let untrusted = check(&[
        ("AIRLOCK_BRIDGE_URL", &url),
        ("AIRLOCK_CONNECTOR_KEY", &key),
    ])
    .await;
    let text = stdout(&untrusted);
    assert!(!untrusted.status.success());
    assert!(
        text.contains("✗ bridge at") && text.contains("certificate"),
        "{text}"
    );

    let not_pem = dir.path().join("empty.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let broken = check(&[
        ("AIRLOCK_BRIDGE_URL", &url),
        ("AIRLOCK_CONNECTOR_KEY", &key),
        ("AIRLOCK_CA_BUNDLE", not_pem.to_str().unwrap()),
    ])
    .await;
    let text = stdout(&broken);
    assert!(!broken.status.success());
    assert!(text.contains("cannot use the CA bundle"), "{text}");
    bridge.shutdown().await;
}

/// A TCP relay to `upstream` that counts connections. For `http://` targets that is all an HTTP
/// proxy does: the client sends absolute-form requests, which the bridge serves as usual.
async fn counting_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_is_reached_through_the_configured_proxy_unless_no_proxy_says_otherwise() {
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("proxied").await;
    let upstream: SocketAddr = bridge.url.trim_start_matches("http://").parse().unwrap();
    let (proxy, connections) = counting_proxy(upstream).await;
    let proxy_url = format!("http://{proxy}");

    let proxied = check(&[
        ("AIRLOCK_BRIDGE_URL", &bridge.url),
        ("AIRLOCK_CONNECTOR_KEY", &key),
        ("HTTP_PROXY", &proxy_url),
    ])
    .await;
    assert!(proxied.status.success(), "{}", stdout(&proxied));
    let through_proxy = connections.load(Ordering::SeqCst);
    assert!(through_proxy > 0, "no connection went through the proxy");

    let bypassed = check(&[
        ("AIRLOCK_BRIDGE_URL", &bridge.url),
        ("AIRLOCK_CONNECTOR_KEY", &key),
        ("HTTP_PROXY", &proxy_url),
        ("NO_PROXY", "127.0.0.1"),
    ])
    .await;
    assert!(bypassed.status.success(), "{}", stdout(&bypassed));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        through_proxy,
        "NO_PROXY was ignored"
    );
    bridge.shutdown().await;
}
