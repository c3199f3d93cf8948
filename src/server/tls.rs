//! HTTPS on the listener (`[tls]`): the rustls server config built from PEM files, read
//! again when they change.
//!
//! [`ReloadingTls::current`] is asked once per accepted connection; at most once a second
//! it reads the files (a few kilobytes) and compares them with what it last read, and on
//! a change builds a new config from them. (Contents, not modification times: those are
//! coarse, and a renewed certificate has the same size as the old one.) A new pair that does not load (half-written,
//! a key that does not match the certificate, a CA file with no certificate) keeps the
//! config in use and logs a warning, and is tried again when the files change again;
//! connections already open keep the certificate they were made with.
//!
//! With `client_ca_file` the handshake requires a client certificate signed by one of
//! its CAs (mutual TLS); the HTTP layers above know nothing of it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use serde::{Deserialize, Serialize};

/// HTTPS on the listener. The files are read again when they change, so a renewed
/// certificate is served without a restart (an unreadable or mismatched new pair keeps
/// the old one, with a warning).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM, leaf first.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// With it, mutual TLS: a client must present a certificate signed by one of these
    /// CA certificates (PEM), or the handshake fails.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

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

/// A file's contents when last read (`None`: unreadable).
type Stamp = Option<Vec<u8>>;

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
            .map(|path| std::fs::read(path).ok())
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
    check_interval: Duration,
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
            check_interval: CHECK_INTERVAL,
        })
    }

    /// The config a new connection is served with: the files' newest valid contents.
    pub fn current(&self) -> Arc<ServerConfig> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if loaded.checked.elapsed() >= self.check_interval {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a function issuing certificates for `localhost` signed by it.
    struct Authority(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

    impl Authority {
        fn new() -> Authority {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            Authority(
                rcgen::CertifiedIssuer::self_signed(
                    params,
                    rcgen::KeyPair::generate().expect("key"),
                )
                .expect("CA"),
            )
        }

        /// Certificate PEM, key PEM, certificate DER.
        fn issue(&self) -> (String, String, Vec<u8>) {
            let params =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
            let key = rcgen::KeyPair::generate().expect("key");
            let certificate = params.signed_by(&key, &self.0).expect("sign");
            (
                certificate.pem(),
                key.serialize_pem(),
                certificate.der().to_vec(),
            )
        }
    }

    /// The leaf certificate a config serves, seen by a client trusting `authority` in
    /// a handshake over memory.
    fn served(config: Arc<ServerConfig>, authority: &Authority) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(authority.0.der().clone()).expect("CA");
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut client =
            rustls::ClientConnection::new(Arc::new(client_config), name).expect("client");
        let mut server = rustls::ServerConnection::new(config).expect("server");
        for _ in 0..10 {
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).expect("client writes");
            server
                .read_tls(&mut bytes.as_slice())
                .expect("server reads");
            server.process_new_packets().expect("server handshake");
            let mut bytes = Vec::new();
            server.write_tls(&mut bytes).expect("server writes");
            client
                .read_tls(&mut bytes.as_slice())
                .expect("client reads");
            client.process_new_packets().expect("client handshake");
            if !client.is_handshaking() {
                break;
            }
        }
        client.peer_certificates().expect("a server certificate")[0].to_vec()
    }

    fn write_pair(dir: &Path, (certificate, key, _): &(String, String, Vec<u8>)) {
        std::fs::write(dir.join("tls.crt"), certificate).expect("cert");
        std::fs::write(dir.join("tls.key"), key).expect("key");
    }

    #[test]
    fn a_changed_pair_is_served_and_a_mismatched_or_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let authority = Authority::new();
        let first = authority.issue();
        write_pair(dir.path(), &first);
        let files = TlsFiles {
            cert_file: dir.path().join("tls.crt"),
            key_file: dir.path().join("tls.key"),
            client_ca_file: None,
        };
        let mut tls = ReloadingTls::new(files).expect("loads");
        tls.check_interval = Duration::ZERO;
        assert_eq!(served(tls.current(), &authority), first.2);

        // the new certificate before its key: they do not fit, the old pair stays
        let second = authority.issue();
        std::fs::write(dir.path().join("tls.crt"), &second.0).expect("cert");
        assert_eq!(served(tls.current(), &authority), first.2);
        // then the key: the new pair is served
        std::fs::write(dir.path().join("tls.key"), &second.1).expect("key");
        assert_eq!(served(tls.current(), &authority), second.2);
        // a half-written certificate keeps the pair in use
        std::fs::write(dir.path().join("tls.crt"), &second.0[..second.0.len() / 2]).expect("cut");
        assert_eq!(served(tls.current(), &authority), second.2);
    }

    #[test]
    fn unusable_files_fail_with_the_setting_and_the_file_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let authority = Authority::new();
        let pair = authority.issue();
        write_pair(dir.path(), &pair);
        std::fs::write(dir.path().join("empty.pem"), "").expect("empty");
        let files = |cert: &str, key: &str, ca: Option<&str>| TlsFiles {
            cert_file: dir.path().join(cert),
            key_file: dir.path().join(key),
            client_ca_file: ca.map(|ca| dir.path().join(ca)),
        };
        let message = |files: TlsFiles| files.load().expect_err("refused").to_string();
        let missing = message(files("missing.crt", "tls.key", None));
        assert!(missing.starts_with("`tls.cert_file` `"), "{missing}");
        assert!(missing.contains("missing.crt`: cannot read"), "{missing}");
        let no_key = message(files("tls.crt", "empty.pem", None));
        assert!(no_key.contains("`tls.key_file`"), "{no_key}");
        assert!(no_key.contains("no PEM private key"), "{no_key}");
        let other = authority.issue();
        std::fs::write(dir.path().join("other.key"), &other.1).expect("key");
        let mismatch = message(files("tls.crt", "other.key", None));
        assert!(
            mismatch.contains("does not fit the certificate"),
            "{mismatch}"
        );
        let no_ca = message(files("tls.crt", "tls.key", Some("empty.pem")));
        assert!(no_ca.starts_with("`tls.client_ca_file`"), "{no_ca}");
        assert!(files("tls.crt", "tls.key", Some("tls.crt")).load().is_ok());
    }
}
