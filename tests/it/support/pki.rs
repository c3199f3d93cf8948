//! A private certificate authority made with rcgen for the TLS tests: certificates for
//! `localhost` written into a directory, HTTPS clients that trust it (with a client
//! certificate for mutual TLS), and `lookout serve` with `[tls]`.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SerialNumber};

use super::Server;

/// A private certificate authority that issues certificates into a directory.
pub struct Pki {
    pub authority: CertifiedIssuer<'static, KeyPair>,
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Lookout test CA");
        let authority = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        std::fs::write(dir.join("ca.crt"), authority.pem()).expect("write CA");
        Pki {
            authority,
            dir: dir.to_path_buf(),
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.authority.pem().as_bytes()).expect("CA PEM")
    }

    /// A certificate for `localhost` and `127.0.0.1` signed by the CA: PEM of the
    /// certificate, of its key, and its DER.
    pub fn issue(&self, serial: u64) -> (String, String, Vec<u8>) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_after = rcgen::date_time_ymd(2040 + serial as i32 % 20, 1, 1);
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.authority).expect("sign");
        (
            certificate.pem(),
            key.serialize_pem(),
            certificate.der().to_vec(),
        )
    }

    /// Issues a certificate and writes it as `NAME.crt` and `NAME.key`; returns its DER.
    pub fn issue_files(&self, name: &str, serial: u64) -> Vec<u8> {
        let (certificate, key, der) = self.issue(serial);
        std::fs::write(self.dir.join(format!("{name}.crt")), certificate).expect("write cert");
        std::fs::write(self.dir.join(format!("{name}.key")), key).expect("write key");
        der
    }

    /// `cert_file` and `key_file` of `[tls]` for the certificate issued as `server`.
    pub fn server_tls(&self) -> String {
        format!(
            "cert_file = {}\nkey_file = {}",
            toml_path(&self.dir.join("server.crt")),
            toml_path(&self.dir.join("server.key"))
        )
    }

    /// An HTTPS client trusting the CA, with `identity` (certificate and key PEM) when
    /// given.
    pub fn client(&self, identity: Option<&str>) -> reqwest::Client {
        lookout::install_tls_provider();
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(self.ca())
            .timeout(std::time::Duration::from_secs(60));
        if let Some(name) = identity {
            let mut pem = std::fs::read(self.dir.join(format!("{name}.crt"))).expect("cert");
            pem.extend(std::fs::read(self.dir.join(format!("{name}.key"))).expect("key"));
            builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
        }
        builder.build().expect("client")
    }
}

/// Starts `lookout serve` with `[tls]` from `tls` (TOML lines) and points the harness's
/// client and URLs at `https://localhost:PORT`.
pub fn serve_tls(dir: &Path, pki: &Pki, tls: &str) -> Server {
    let config = dir.join("lookout.toml");
    std::fs::write(&config, format!("[tls]\n{tls}\n")).expect("config");
    let mut server = Server::start(
        &dir.join("data"),
        &["--config", config.to_str().expect("UTF-8")],
    );
    let port = server
        .address()
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    server.base = format!("https://localhost:{port}");
    server.client = pki.client(Some("client"));
    server
}

pub fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A private CA in `dir` that issued a `server` and a `client` certificate, and `lookout
/// serve` with `[tls]` serving the first (the harness's client presents the second).
pub fn serve_https(dir: &Path) -> (Pki, Server) {
    let pki = Pki::new(dir);
    pki.issue_files("server", 1);
    pki.issue_files("client", 2);
    let server = serve_tls(dir, &pki, &pki.server_tls());
    (pki, server)
}
