//! TLS for a listener: certificate and key from PEM files, client certificates checked against
//! a CA for mTLS, everything re-read when the files change (new connections get the new
//! certificate; open ones keep theirs).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Whether clients must show a certificate (mTLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    /// Checked when shown; a client without one still connects (and needs a bearer token).
    Optional,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// The current server configuration of one listener.
pub struct Tls {
    settings: TlsSettings,
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl Tls {
    /// Reads the files; `alpn` is the protocol the listener speaks (`h2` for gRPC).
    pub fn new(settings: TlsSettings, alpn: &[&[u8]]) -> Result<Tls, String> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let config = build(&settings, &alpn)?;
        Ok(Tls {
            settings,
            alpn,
            current: RwLock::new(Arc::new(config)),
        })
    }

    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn files(&self) -> Vec<Option<Vec<u8>>> {
        let s = &self.settings;
        [Some(&s.cert), Some(&s.key), s.client_ca.as_ref()]
            .into_iter()
            .map(|p| p.and_then(|p| std::fs::read(p).ok()))
            .collect()
    }

    /// Checks the files every `every` and rebuilds the configuration when their bytes change;
    /// a bad new file keeps the old configuration (and says why).
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut last = self.files();
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = self.files();
            if now == last {
                continue;
            }
            match build(&self.settings, &self.alpn) {
                Ok(config) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
                    tracing::info!("TLS certificate {} re-read", self.settings.cert.display());
                    last = now;
                }
                // Often a certificate written before its key: try again next tick.
                Err(e) => tracing::warn!("{e}; the previous certificate stays in use"),
            }
        }
    }
}

fn build(settings: &TlsSettings, alpn: &[Vec<u8>]) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(&settings.cert)?)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", settings.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", settings.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&settings.key)?)
        .map_err(|e| format!("{}: no private key ({e})", settings.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read(ca)?) {
                let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match settings.client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", settings.cert.display()))?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

/// The subject of a client's certificate, RFC 4514 (`CN=client,O=acme`).
pub fn subject(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    Some(cert.tbs_certificate.subject.to_string())
}
