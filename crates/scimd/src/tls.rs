//! HTTPS: a certificate and key from PEM files, or a self-signed one made
//! at start to try things out (the Janssen seed uses `curl -k`). rustls with
//! the ring provider, chosen explicitly so that no process-wide default is
//! assumed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the server's certificate comes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum TlsSource {
    /// Plain HTTP.
    #[default]
    Off,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// A fresh self-signed certificate for `localhost` and 127.0.0.1.
    SelfSigned,
}

pub fn rustls_config(source: &TlsSource) -> anyhow::Result<Option<RustlsConfig>> {
    let (certs, key) = match source {
        TlsSource::Off => return Ok(None),
        TlsSource::Files { cert, key } => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading the certificate {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading the private key {}", key.display()))?;
            (certs, key)
        }
        TlsSource::SelfSigned => {
            let made = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .context("making a self-signed certificate")?;
            tracing::warn!(
                "serving HTTPS with a self-signed certificate: clients must skip verification (curl -k); use --tls-cert/--tls-key in production"
            );
            let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
                .map_err(|e| anyhow::anyhow!("self-signed key: {e}"))?;
            (vec![made.cert.der().clone()], key)
        }
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the TLS certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(RustlsConfig::from_config(Arc::new(config))))
}
