//! TLS for the API: rustls with Graviola, a crypto provider written in Rust
//! alone (no C compiler, no CMake at build time).
//!
//! - **Certificates**: a PEM chain (leaf first) and its PEM private key
//!   (PKCS#8, PKCS#1 or SEC1). A key that does not belong to the leaf
//!   certificate is refused.
//! - **Reload**: [`Tls::reload`] reads both files again (on SIGHUP, see
//!   [`reload_on_hangup`]); connections made afterwards get the new pair,
//!   open ones keep theirs. A pair that fails to load is refused and the
//!   current one keeps serving.
//! - **Protocols**: TLS 1.3 and 1.2 with the provider's ciphersuites; ALPN
//!   offers `http/1.1` only (the server speaks HTTP/1.1).
//! - **HSTS**: every response over TLS carries `Strict-Transport-Security`
//!   (unless its max age is 0).
//! - **CPUs**: Graviola needs x86-64 with AES-NI, PCLMULQDQ, AVX2, BMI1/2 and
//!   ADX (about 2013 on), or aarch64 with AES, SHA-2, PMULL and NEON. Without
//!   them [`Tls::load`] fails with the features missing; terminate TLS in a
//!   proxy instead (deploy/nginx).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::HeaderValue;
use metrics::counter;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of the two files was configured.
    #[error("serve.tls_cert and serve.tls_key go together: set both, or neither for plain HTTP")]
    Incomplete,
    /// A file could not be read or holds no usable PEM item.
    #[error("{what} {}: {message}", path.display())]
    File {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The key does not match the certificate, or the provider refuses it.
    #[error("certificate {} with key {}: {message}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong with the pair.
        message: String,
    },
    /// This CPU lacks instructions the crypto provider needs.
    #[error(
        "TLS in fraudlens needs CPU features this machine lacks ({0}); terminate TLS in a reverse proxy instead (deploy/nginx)"
    )]
    Cpu(String),
}

/// The server's TLS: the files, the pair in use and the acceptor that serves it.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Resolver>,
    acceptor: TlsAcceptor,
    hsts: Option<HeaderValue>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("hsts", &self.hsts)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads `cert` and `key`; responses carry HSTS with `hsts_max_age_seconds` (0: none).
    pub fn load(cert: &Path, key: &Path, hsts_max_age_seconds: u64) -> Result<Self, TlsError> {
        check_cpu()?;
        let provider = Arc::new(rustls_graviola::default_provider());
        let current = Arc::new(Resolver(ArcSwap::from_pointee(certified_key(cert, key, &provider)?)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Pair {
                cert: cert.to_owned(),
                key: key.to_owned(),
                message: error.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let hsts = (hsts_max_age_seconds > 0).then(|| {
            HeaderValue::from_str(&format!("max-age={hsts_max_age_seconds}")).expect("digits are a valid header value")
        });
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            hsts,
        })
    }

    /// Reads the certificate and key files again; new connections get the new
    /// pair. On an error the current pair keeps serving.
    pub fn reload(&self) -> Result<(), TlsError> {
        let provider = rustls_graviola::default_provider();
        let pair = certified_key(&self.cert, &self.key, &provider)?;
        self.current.0.store(Arc::new(pair));
        Ok(())
    }

    /// Accepts TLS connections with the current pair.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The `Strict-Transport-Security` value of every response, if any.
    pub fn hsts(&self) -> Option<&HeaderValue> {
        self.hsts.as_ref()
    }

    /// The leaf certificate in use (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.0.load().cert[0].clone()
    }
}

/// Handles SIGHUP until the process ends: reloads `tls` (logged, and counted
/// in `tls_certificate_reloads_total{outcome="ok"|"failed"}`), or, without
/// TLS, logs that there is nothing to reload. Installed first thing by
/// `fraudlens serve`: SIGHUP's default action ends the process, and
/// `systemctl reload` (a certificate renewal's hook) sends it at any time.
#[cfg(unix)]
pub fn reload_on_hangup(tls: Option<Arc<Tls>>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    if tls.is_some() {
        counter!("tls_certificate_reloads_total", "outcome" => "ok").absolute(0);
        counter!("tls_certificate_reloads_total", "outcome" => "failed").absolute(0);
    }
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let Some(tls) = &tls else {
                tracing::info!("SIGHUP: no TLS certificate to reload");
                continue;
            };
            match tls.reload() {
                Ok(()) => {
                    counter!("tls_certificate_reloads_total", "outcome" => "ok").increment(1);
                    tracing::info!(cert = %tls.cert.display(), "TLS certificate reloaded");
                }
                Err(error) => {
                    counter!("tls_certificate_reloads_total", "outcome" => "failed").increment(1);
                    tracing::error!(%error, "TLS certificate not reloaded; the current one keeps serving");
                }
            }
        }
    }))
}

/// Always the current pair (swapped by [`Tls::reload`]).
#[derive(Debug)]
struct Resolver(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The chain of `cert` with the key of `key`, checked to belong together.
fn certified_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let file_error = |what, path: &Path, message: String| TlsError::File {
        what,
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|error| file_error("certificate", cert, error.to_string()))?;
    if chain.is_empty() {
        return Err(file_error("certificate", cert, "no CERTIFICATE in the file".to_owned()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|error| file_error("private key", key, error.to_string()))?;
    let pair_error = |message: String| TlsError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        message,
    };
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|error| pair_error(error.to_string()))?;
    let pair = CertifiedKey::new(chain, signing);
    // a key whose public half cannot be compared is refused too: serving it
    // would fail every handshake instead
    pair.keys_match()
        .map_err(|error| pair_error(format!("{error} (does the key belong to the certificate?)")))?;
    Ok(pair)
}

/// Fails when this CPU lacks what Graviola needs (it would panic on first use).
fn check_cpu() -> Result<(), TlsError> {
    #[cfg(target_arch = "x86_64")]
    let missing: Vec<&str> = [
        ("adx", std::arch::is_x86_feature_detected!("adx")),
        ("aes", std::arch::is_x86_feature_detected!("aes")),
        ("avx", std::arch::is_x86_feature_detected!("avx")),
        ("avx2", std::arch::is_x86_feature_detected!("avx2")),
        ("bmi1", std::arch::is_x86_feature_detected!("bmi1")),
        ("bmi2", std::arch::is_x86_feature_detected!("bmi2")),
        ("pclmulqdq", std::arch::is_x86_feature_detected!("pclmulqdq")),
        ("ssse3", std::arch::is_x86_feature_detected!("ssse3")),
    ]
    .into_iter()
    .filter_map(|(name, present)| (!present).then_some(name))
    .collect();
    #[cfg(target_arch = "aarch64")]
    let missing: Vec<&str> = [
        ("aes", std::arch::is_aarch64_feature_detected!("aes")),
        ("neon", std::arch::is_aarch64_feature_detected!("neon")),
        ("pmull", std::arch::is_aarch64_feature_detected!("pmull")),
        ("sha2", std::arch::is_aarch64_feature_detected!("sha2")),
    ]
    .into_iter()
    .filter_map(|(name, present)| (!present).then_some(name))
    .collect();
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let missing = vec!["an x86-64 or aarch64 CPU"];
    if missing.is_empty() {
        Ok(())
    } else {
        Err(TlsError::Cpu(missing.join(", ")))
    }
}
