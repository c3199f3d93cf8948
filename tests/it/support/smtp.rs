//! A real SMTP server on loopback: `aiosmtpd` (PyPI; `scripts/test` installs it) run by
//! `python3`, with STARTTLS required (a certificate from a private CA the test makes with
//! the `openssl` CLI) or without TLS, AUTH LOGIN/PLAIN for one user, and scripted replies
//! to DATA (`451 …`, `550 …`) before it accepts. Each accepted mail is written as JSON
//! (whether it came over TLS, the AUTH login, its headers, the content types of its
//! parts) to a directory the test reads.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SERVER: &str = r#"
import asyncio, email, json, os, ssl, sys
from aiosmtpd.smtp import SMTP, AuthResult

directory, replies, cert, key, user, password = sys.argv[1:7]
replies = [reply for reply in replies.split("|") if reply]
count = 0

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok, auth_data=user if ok else None)

class Handler:
    async def handle_DATA(self, server, session, envelope):
        global count
        if replies:
            return replies.pop(0)
        message = email.message_from_bytes(envelope.content)
        count += 1
        record = {
            "tls": session.ssl is not None,
            "login": session.auth_data if session.authenticated else None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {name.lower(): value for name, value in message.items()},
            "content_type": message.get_content_type(),
            "parts": [part.get_content_type() for part in message.walk() if not part.is_multipart()],
            "bodies": [part.get_payload(decode=True).decode() for part in message.walk() if not part.is_multipart()],
        }
        path = os.path.join(directory, "%04d.json" % count)
        with open(path + ".tmp", "w") as file:
            json.dump(record, file)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 OK queued"

async def main():
    context = None
    if cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), hostname="127.0.0.1", tls_context=context,
                     require_starttls=context is not None, authenticator=authenticator,
                     auth_require_tls=context is not None),
        host="127.0.0.1", port=0)
    print("listening on %d" % server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

/// Whether `python3` with `aiosmtpd` is here; says why not (the test then skips).
pub fn available() -> Result<(), String> {
    let status = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(_) => Err("the Python package aiosmtpd is missing (scripts/test installs it)".into()),
        Err(_) => Err("python3 is not installed (scripts/test installs it)".into()),
    }
}

/// A private CA and a certificate for 127.0.0.1 it signed: (CA PEM, cert, key).
pub fn private_ca(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let openssl = |arguments: &[&str]| -> Result<(), String> {
        let output = Command::new("openssl")
            .args(arguments)
            .current_dir(dir)
            .output()
            .map_err(|error| format!("the openssl CLI is not installed: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
    )
    .map_err(|error| error.to_string())?;
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Lookout test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])?;
    Ok((
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    ))
}

/// An SMTP server in `dir` that requires STARTTLS with a certificate of a fresh private
/// CA and AUTH as `lookout` with `password`, answering the first DATA commands with
/// `replies`: the server and the CA to trust. `None` (saying why) when aiosmtpd is not
/// installed.
pub fn start_with_private_ca(
    dir: &Path,
    replies: &[&str],
    password: &str,
) -> Option<(SmtpServer, PathBuf)> {
    if let Err(reason) = available() {
        eprintln!("skipped: {reason}");
        return None;
    }
    let (ca, cert, key) = private_ca(dir)
        .unwrap_or_else(|reason| panic!("cannot make a private CA with the openssl CLI: {reason}"));
    let server = SmtpServer::start(dir, Some((&cert, &key)), replies, ("lookout", password));
    Some((server, ca))
}

/// A running aiosmtpd, killed when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    mails: PathBuf,
}

impl SmtpServer {
    /// Starts the server in `dir`: with `tls` (cert, key) STARTTLS is required; `replies`
    /// answer the first DATA commands (e.g. `451 4.3.0 Try again later`); AUTH accepts
    /// `user`/`password`.
    pub fn start(
        dir: &Path,
        tls: Option<(&Path, &Path)>,
        replies: &[&str],
        (user, password): (&str, &str),
    ) -> SmtpServer {
        let mails = dir.join("mails");
        std::fs::create_dir_all(&mails).expect("mkdir");
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SERVER).expect("script");
        let (cert, key) = tls.map_or((String::new(), String::new()), |(cert, key)| {
            (cert.display().to_string(), key.display().to_string())
        });
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&mails)
            .arg(replies.join("|"))
            .args([cert, key, user.to_string(), password.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("listening on ") {
                    let _ = sender.send(port.parse::<u16>().expect("port"));
                }
            }
        });
        let port = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("aiosmtpd printed `listening on`");
        SmtpServer { child, port, mails }
    }

    /// The mails accepted so far, in order.
    pub fn mails(&self) -> Vec<Value> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.mails)
            .expect("mails")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "json")
            })
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|path| serde_json::from_slice(&std::fs::read(path).expect("mail")).expect("json"))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
