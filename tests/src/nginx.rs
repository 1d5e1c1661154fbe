//! nginx as a child process, terminating TLS in front of a broker with the
//! operators' configuration, `deploy/nginx/peerpage.conf`.
//!
//! The deploy file is used as it is, except for the values it marks
//! `# replace:`: certificate paths (a self-signed certificate made with the
//! `openssl` CLI at start), listen ports (free ones) and the broker's
//! address. A small `nginx.conf` around it keeps pid, logs and temporary
//! files in a fresh directory, removed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

/// The operators' server block.
pub fn deploy_conf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/peerpage.conf")
}

/// A running `nginx -g 'daemon off;'`, stopped on drop.
pub struct Nginx {
    process: NginxProcess,
    https: SocketAddr,
    http: SocketAddr,
}

/// An nginx master process (`daemon off`) with its configuration, pid,
/// logs and temporary files in one directory: stopped on drop (its logs
/// printed if a test panics), the directory removed.
pub(crate) struct NginxProcess {
    child: Child,
    dir: PathBuf,
}

impl NginxProcess {
    /// Runs nginx with `conf` (in `dir`) and waits until each of
    /// `listening` accepts connections.
    pub(crate) fn spawn(
        dir: PathBuf,
        conf: &Path,
        listening: &[SocketAddr],
    ) -> anyhow::Result<Self> {
        let bin = nginx_bin();
        // -e: startup errors go to our log, not the packaged default path.
        let child = Command::new(&bin)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (install Debian's nginx or set NGINX)",
                    bin.display()
                )
            })?;
        let mut process = NginxProcess { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(addr) = listening.iter().find(|a| TcpStream::connect(a).is_err()) {
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "{} exited at startup ({status}); error log:\n{}",
                    bin.display(),
                    process.error_log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "nginx not listening on {addr} after 30 s; error log:\n{}",
                    process.error_log()
                );
            }
            std::thread::sleep(crate::POLL);
        }
        Ok(process)
    }

    /// The master's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The access log so far.
    pub(crate) fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The error log so far.
    pub(crate) fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

/// nginx: `$NGINX`, else Debian's `/usr/sbin/nginx` (often not on a
/// user's PATH), else `nginx` from PATH.
pub(crate) fn nginx_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NGINX") {
        return bin.into();
    }
    let debian = Path::new("/usr/sbin/nginx");
    if debian.is_file() {
        debian.into()
    } else {
        "nginx".into()
    }
}

impl Nginx {
    /// Starts nginx with the deploy server block proxying to `broker`, and
    /// waits until it accepts connections. `http_directives` go into the
    /// `http` block before the server block, so they are defaults the
    /// deploy file may override (e.g. `proxy_read_timeout 3s;`).
    pub fn start(broker: SocketAddr, http_directives: &str) -> anyhow::Result<Self> {
        let dir = fresh_dir("nginx")?;
        let (https, http) = (free_addr()?, free_addr()?);
        let (cert, key) = self_signed_cert(&dir)?;
        let deploy = std::fs::read_to_string(deploy_conf())
            .with_context(|| format!("cannot read {}", deploy_conf().display()))?;
        let server = substitute(
            &deploy,
            &replacements(https, http, broker, &cert, &key),
            &deploy_conf(),
        )?;
        std::fs::write(dir.join("peerpage.conf"), server)?;
        let d = dir.display();
        let conf = format!(
            "pid {d}/nginx.pid;
error_log {d}/error.log info;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    log_format upgrades '$scheme $request_method $uri $status';
    access_log {d}/access.log upgrades;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    {http_directives}
    include {d}/peerpage.conf;
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;

        let process = NginxProcess::spawn(dir, &conf_path, &[https])?;
        let nginx = Self {
            process,
            https,
            http,
        };
        Ok(nginx)
    }

    /// `https://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.https)
    }

    /// The plain-HTTP listener (the deploy file's redirect to HTTPS).
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The access log so far, one `scheme method uri status` line per
    /// finished request (a WebSocket's line is written when it closes).
    pub fn access_log(&self) -> String {
        self.process.access_log()
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        self.process.error_log()
    }
}

impl Drop for NginxProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[nginx] access log:\n{}[nginx] error log:\n{}",
                self.access_log(),
                self.error_log()
            );
        }
        // SIGTERM: the master stops its workers too (SIGKILL would orphan
        // them, still holding the ports).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(crate::POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new directory under the system's temp dir, named so that tests in
/// other namespaces (where process ids repeat) never share it. Readable by
/// nginx's unprivileged workers, which use the temp paths in it.
pub(crate) fn fresh_dir(name: &str) -> anyhow::Result<PathBuf> {
    loop {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("peerpage-{name}-{nanos:x}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
}

/// A free 127.0.0.1 port.
pub(crate) fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The deploy file's values marked `# replace:`, with what replaces them.
fn replacements(
    https: SocketAddr,
    http: SocketAddr,
    broker: SocketAddr,
    cert: &Path,
    key: &Path,
) -> [(&'static str, String); 5] {
    [
        ("listen 443 ssl;", format!("listen {https} ssl;")),
        ("listen 80;", format!("listen {http};")),
        ("server 127.0.0.1:8080;", format!("server {broker};")),
        (
            "/etc/letsencrypt/live/peerpage.example/fullchain.pem",
            cert.display().to_string(),
        ),
        (
            "/etc/letsencrypt/live/peerpage.example/privkey.pem",
            key.display().to_string(),
        ),
    ]
}

/// Replaces each `(from, to)` in `text`, requiring every `from` exactly
/// once: if the deploy file changes its marked values, this says so rather
/// than testing a half-substituted file.
pub(crate) fn substitute(
    text: &str,
    pairs: &[(&str, String)],
    file: &Path,
) -> anyhow::Result<String> {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        let n = out.matches(from).count();
        if n != 1 {
            bail!(
                "{} should contain `{from}` exactly once (a value marked `# replace:`), found {n}",
                file.display()
            );
        }
        out = out.replace(from, to);
    }
    Ok(out)
}

/// Makes a self-signed certificate for 127.0.0.1 in `dir`; returns the
/// certificate and key paths.
fn self_signed_cert(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("cannot run openssl (install Debian's openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl could not make a certificate ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((cert, key))
}

#[cfg(test)]
mod unit {
    use std::path::Path;

    #[test]
    fn deploy_file_has_each_marked_value_once() {
        let text = std::fs::read_to_string(super::deploy_conf()).unwrap();
        let addr = "127.0.0.9:9".parse().unwrap();
        let pairs = super::replacements(addr, addr, addr, Path::new("c"), Path::new("k"));
        let out = super::substitute(&text, &pairs, &super::deploy_conf()).unwrap();
        assert!(out.contains("listen 127.0.0.9:9 ssl;  # replace: HTTPS port"));
        assert!(super::substitute("x x", &[("x", "y".into())], &super::deploy_conf()).is_err());
        assert!(super::substitute("x", &[("z", "y".into())], &super::deploy_conf()).is_err());
    }
}
