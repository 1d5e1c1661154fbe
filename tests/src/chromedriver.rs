//! chromedriver as a child process. One is enough: every WebDriver session
//! it creates is a separate Chromium process.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running chromedriver on a free 127.0.0.1 port, killed on drop.
pub struct ChromeDriver {
    child: Child,
    addr: SocketAddr,
    /// The driver's TMPDIR, where it puts each session's fresh profile.
    tmp: PathBuf,
}

impl ChromeDriver {
    /// Starts `$CHROMEDRIVER` (default `/usr/bin/chromedriver`) and waits
    /// until its `/status` says ready. `$CHROMEDRIVER_LOG=<file>` keeps a
    /// verbose log.
    pub fn start() -> anyhow::Result<Self> {
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let tmp = std::env::temp_dir().join(format!("p2p-e2e-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&tmp)?;
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--port={port}"))
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(log) = std::env::var("CHROMEDRIVER_LOG") {
            cmd.arg(format!("--log-path={log}")).arg("--verbose");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {bin} (set CHROMEDRIVER to its path)"))?;
        let mut driver = Self { child, addr, tmp };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, body)) = crate::http::get(addr, "/status") {
                if body.replace(' ', "").contains("\"ready\":true") {
                    return Ok(driver);
                }
            }
            if let Some(status) = driver.child.try_wait()? {
                bail!("{bin} exited at startup: {status}");
            }
            if Instant::now() > deadline {
                bail!("{bin} not ready on {addr} after 30 s");
            }
            std::thread::sleep(crate::POLL);
        }
    }

    /// `http://127.0.0.1:PORT`, for WebDriver clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
