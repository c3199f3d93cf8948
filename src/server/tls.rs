//! HTTPS on the listener (`[tls]`): the rustls server config built from PEM files, read
//! again when they change.
//!
//! [`ReloadingTls::current`] is asked once per accepted connection; at most once a second
//! it compares the files' modification times and sizes with those it last read, and on
//! a change builds a new config from them. A new pair that does not load (half-written,
//! a key that does not match the certificate, a CA file with no certificate) keeps the
//! config in use and logs a warning, and is tried again when the files change again;
//! connections already open keep the certificate they were made with.
//!
//! With `client_ca_file` the handshake requires a client certificate signed by one of
//! its CAs (mutual TLS); the HTTP layers above know nothing of it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// How often a connection may look at the files.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A TLS file that cannot be used, naming the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`tls.{field}` `{}`: cannot read: {source}", .path.display())]
    Read {
        field: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`tls.{field}` `{}`: {reason}", .path.display())]
    Invalid {
        field: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The files of `[tls]`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// What a file looked like when read: modification time and size (`None`: missing).
type Stamp = Option<(SystemTime, u64)>;

impl TlsFiles {
    /// The files of `config`; empty paths when `[tls]` is off (check
    /// [`TlsConfig::enabled`] first).
    pub fn from_config(config: &TlsConfig) -> TlsFiles {
        TlsFiles {
            cert_file: config.cert_file.clone().unwrap_or_default(),
            key_file: config.key_file.clone().unwrap_or_default(),
            client_ca_file: config.client_ca_file.clone(),
        }
    }

    /// Reads the files into a server config (HTTP/1.1 over TLS 1.2 or 1.3).
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        crate::install_tls_provider();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificates = read_certificates("cert_file", &self.cert_file)?;
        let key = read(
            "key_file",
            &self.key_file,
            PrivateKeyDer::from_pem_slice,
            "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )?;
        let invalid = |field, path: &Path, reason: String| TlsError::Invalid {
            field,
            path: path.to_path_buf(),
            reason,
        };
        // the pair must belong together, or every handshake would fail later
        rustls::sign::CertifiedKey::from_der(certificates.clone(), key.clone_key(), &provider)
            .map_err(|error| {
                invalid(
                    "key_file",
                    &self.key_file,
                    format!(
                        "does not fit the certificate of `{}`: {error}",
                        self.cert_file.display()
                    ),
                )
            })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| invalid("cert_file", &self.cert_file, error.to_string()))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in read_certificates("client_ca_file", path)? {
                    roots.add(certificate).map_err(|error| {
                        invalid(
                            "client_ca_file",
                            path,
                            format!("not a CA certificate: {error}"),
                        )
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|error| invalid("client_ca_file", path, error.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certificates, key)
            .map_err(|error| invalid("cert_file", &self.cert_file, error.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn stamps(&self) -> Vec<Stamp> {
        std::iter::once(&self.cert_file)
            .chain(std::iter::once(&self.key_file))
            .chain(&self.client_ca_file)
            .map(|path| {
                let metadata = std::fs::metadata(path).ok()?;
                Some((metadata.modified().ok()?, metadata.len()))
            })
            .collect()
    }
}

fn read<T>(
    field: &'static str,
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, rustls::pki_types::pem::Error>,
    missing: &str,
) -> Result<T, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        field,
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes).map_err(|error| TlsError::Invalid {
        field,
        path: path.to_path_buf(),
        reason: match error {
            rustls::pki_types::pem::Error::NoItemsFound => missing.to_owned(),
            error => format!("not valid PEM: {error}"),
        },
    })
}

fn read_certificates(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = read(
        field,
        path,
        |bytes| CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>(),
        "holds no PEM certificate",
    )?;
    if certificates.is_empty() {
        return Err(TlsError::Invalid {
            field,
            path: path.to_path_buf(),
            reason: "holds no PEM certificate".to_owned(),
        });
    }
    Ok(certificates)
}

/// The listener's TLS config, rebuilt when its files change.
pub struct ReloadingTls {
    files: TlsFiles,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    /// The files as last read (successfully or not).
    stamps: Vec<Stamp>,
    checked: Instant,
}

impl ReloadingTls {
    /// Loads the files once; an error names the file and fails the start.
    pub fn new(files: TlsFiles) -> Result<ReloadingTls, TlsError> {
        let stamps = files.stamps();
        let config = files.load()?;
        Ok(ReloadingTls {
            files,
            loaded: Mutex::new(Loaded {
                config,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The config a new connection is served with: the files' newest valid contents.
    pub fn current(&self) -> Arc<ServerConfig> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if loaded.checked.elapsed() >= CHECK_INTERVAL {
            loaded.checked = Instant::now();
            let stamps = self.files.stamps();
            if stamps != loaded.stamps {
                loaded.stamps = stamps;
                match self.files.load() {
                    Ok(config) => {
                        loaded.config = config;
                        tracing::info!(cert_file = %self.files.cert_file.display(), "TLS files changed: new connections get the new certificate");
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "TLS files changed but do not load; still serving the previous certificate"
                    ),
                }
            }
        }
        Arc::clone(&loaded.config)
    }
}
