//! TLS in `fraudlens serve` (operations issue, item 5): HTTPS with a
//! certificate made by `openssl` (a test CA and a leaf for localhost), HSTS
//! on every response, no plain HTTP on the TLS port, a new certificate served
//! after SIGHUP, a broken one refused on SIGHUP while the current one keeps
//! serving, a key that does not belong to its certificate refused at start,
//! and the console's cookies marked `Secure`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fraudlens_testkit::{Backend, TestDb};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::fraudlens;
use crate::model::trained;
use crate::serve::Server;

/// A test CA in `dir` (ca.pem, ca.key).
fn certificate_authority(dir: &Path) -> PathBuf {
    openssl(
        dir,
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
         -subj /CN=fraudlens-test-CA",
    );
    dir.join("ca.pem")
}

/// A leaf for localhost and 127.0.0.1 signed by the CA of `dir`, written to
/// `name.pem` and `name.key`.
fn leaf(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &format!(
            "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key -out {name}.csr \
             -subj /CN=localhost"
        ),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 \
             -extfile leaf.ext"
        ),
    );
    (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")))
}

/// `openssl ARGS` in `dir` (arguments split on white space).
fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args.split_whitespace())
        .output()
        .expect("running openssl (Debian package openssl)");
    assert!(
        output.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn der(pem: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(pem).unwrap()
}

/// `GET path` over TLS, trusting only `ca`: the certificate the server
/// presented and the raw HTTP response.
async fn get_over_tls(address: &str, ca: &Path, path: &str) -> (CertificateDer<'static>, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca)).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls_graviola::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(address).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap();
    (presented, String::from_utf8_lossy(&response).into_owned())
}

fn hangup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// What the server presents within 10 s of a change, once it is `expected`.
async fn presents(address: &str, ca: &Path, expected: &CertificateDer<'_>) -> bool {
    for _ in 0..100 {
        if get_over_tls(address, ca, "/health/live").await.0 == *expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_https_with_hsts_and_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certificate_authority(dir.path());
    let (first_pem, first_key) = leaf(dir.path(), "first");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::copy(&first_pem, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let env = [
        ("FRAUDLENS_SERVE__TLS_CERT", cert.to_str().unwrap()),
        ("FRAUDLENS_SERVE__TLS_KEY", key.to_str().unwrap()),
        ("FRAUDLENS_SERVE__HEADER_READ_TIMEOUT_SECONDS", "2"),
    ];
    let server = Server::start_with(dir.path(), &db.url, Some(&trained().model()), &env);
    let base = server.url("");
    let address = base
        .strip_prefix("https://")
        .expect("the server announces https")
        .to_owned();

    // HTTPS with the configured certificate, HSTS on every response
    let (presented, response) = get_over_tls(&address, &ca, "/health/live").await;
    assert_eq!(presented, der(&first_pem));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{response}"
    );
    let (_, response) = get_over_tls(&address, &ca, "/api/v1/transactions/x").await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("strict-transport-security"),
        "{response}"
    );

    // the console's cookies carry Secure under TLS
    let (_, response) = get_over_tls(&address, &ca, "/ui/login").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let cookie = response
        .lines()
        .map(str::trim_end)
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie: fraudlens_login="))
        .unwrap_or_else(|| panic!("no sign-in nonce cookie: {response}"));
    assert!(cookie.ends_with("; Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // plain HTTP on the TLS port gets no HTTP answer
    let mut plain = TcpStream::connect(&address).await.unwrap();
    plain
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&answer));

    // clients that open a connection and never finish the handshake (half a
    // ClientHello, or nothing): others are served meanwhile, and the server
    // closes them once the header-read timeout (2 s) is over
    let mut stalled = Vec::new();
    for partial in [&b""[..], &[0x16, 0x03, 0x01, 0x00, 0xff][..]] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(partial).await.unwrap();
        stalled.push(stream);
    }
    let (_, response) = get_over_tls(&address, &ca, "/health/live").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for mut stream in stalled {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a stalled handshake was not closed within 10 s");
    }

    // a new pair in the same files, then SIGHUP: new connections get it
    let (second_pem, second_key) = leaf(dir.path(), "second");
    assert_ne!(der(&first_pem), der(&second_pem));
    std::fs::copy(&second_pem, &cert).unwrap();
    std::fs::copy(&second_key, &key).unwrap();
    hangup(&server);
    assert!(presents(&address, &ca, &der(&second_pem)).await, "{}", server.log());

    // a key that does not belong to the certificate: refused, the second pair keeps serving
    std::fs::copy(&first_key, &key).unwrap();
    hangup(&server);
    let mut refused = false;
    for _ in 0..100 {
        let (_, metrics) = get_over_tls(&address, &ca, "/metrics").await;
        if metrics.contains(r#"tls_certificate_reloads_total{outcome="failed"} 1"#) {
            assert!(
                metrics.contains(r#"tls_certificate_reloads_total{outcome="ok"} 1"#),
                "{metrics}"
            );
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "{}", server.log());
    assert!(
        server.log().contains("TLS certificate not reloaded"),
        "{}",
        server.log()
    );
    let (presented, response) = get_over_tls(&address, &ca, "/health/ready").await;
    assert_eq!(presented, der(&second_pem));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(server.terminate(), 0);
}

#[test]
fn serve_refuses_to_start_with_a_key_of_another_certificate_or_half_a_pair() {
    let dir = tempfile::tempdir().unwrap();
    certificate_authority(dir.path());
    let (first_pem, _) = leaf(dir.path(), "first");
    let (_, second_key) = leaf(dir.path(), "second");
    let database = format!("sqlite://{}", dir.path().join("tls.db").display());
    let serve = ["serve", "--listen", "127.0.0.1:0", "--database", &database];

    let run = fraudlens(
        dir.path(),
        &serve,
        &[
            ("FRAUDLENS_SERVE__TLS_CERT", first_pem.to_str().unwrap()),
            ("FRAUDLENS_SERVE__TLS_KEY", second_key.to_str().unwrap()),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("does the key belong to the certificate?"),
        "{}",
        run.stderr
    );
    assert!(
        !dir.path().join("tls.db").exists(),
        "the store was opened before the certificate was checked"
    );

    let run = fraudlens(
        dir.path(),
        &serve,
        &[("FRAUDLENS_SERVE__TLS_CERT", first_pem.to_str().unwrap())],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("serve.tls_cert and serve.tls_key go together"),
        "{}",
        run.stderr
    );

    let missing = dir.path().join("missing.key");
    let run = fraudlens(
        dir.path(),
        &serve,
        &[
            ("FRAUDLENS_SERVE__TLS_CERT", first_pem.to_str().unwrap()),
            ("FRAUDLENS_SERVE__TLS_KEY", missing.to_str().unwrap()),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("private key") && run.stderr.contains("missing.key"),
        "{}",
        run.stderr
    );
}

/// Without TLS, SIGHUP (`systemctl reload`, a renewal hook) is logged and
/// ignored: SIGHUP's default action would end the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_without_tls_leaves_serve_running() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    // one at a time: two SIGHUPs sent together may arrive as one signal
    for expected in 1..=2 {
        hangup(&server);
        let mut logged = false;
        for _ in 0..100 {
            if server.log().matches("no TLS certificate to reload").count() == expected {
                logged = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(logged, "{}", server.log());
    }
    let live = reqwest::get(server.url("/health/live")).await.unwrap();
    assert_eq!(live.status(), reqwest::StatusCode::OK);
    assert_eq!(server.terminate(), 0);
}
