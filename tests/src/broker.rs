//! The broker as a child process.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

/// A running `broker --listen 127.0.0.1:0 --www <dir>`, killed on drop.
pub struct Broker {
    child: Child,
    addr: SocketAddr,
}

/// The broker binary: `$BROKER_BIN`, else `broker` next to the current
/// executable or one directory up (test executables live in `deps/`), else
/// the other profile's (`target/debug` for a release benchmark, as
/// `just bench` builds it).
pub fn broker_bin() -> anyhow::Result<PathBuf> {
    workspace_bin("broker", "BROKER_BIN")
}

/// The workspace's binary `name` (`$env` if set), found as
/// [`broker_bin`] finds the broker.
pub fn workspace_bin(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(env) {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no directory")?;
    let candidates = [
        dir.join(name),
        dir.join(format!("../{name}")),
        dir.join(format!("../debug/{name}")),
        dir.join(format!("../release/{name}")),
        dir.join(format!("../../debug/{name}")),
        dir.join(format!("../../release/{name}")),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "no {name} binary at {candidates:?}: build it with `cargo build -p {name}` \
                 (add --release for the benchmark) or set {env}"
            )
        })
}

impl Broker {
    /// Starts the broker serving `www` and waits for its
    /// `listening on http://…` line. With `log`, its output is forwarded to
    /// stderr prefixed with `[broker]`; it is always drained.
    pub fn start(www: &Path, log: bool) -> anyhow::Result<Self> {
        Self::start_at(www, "127.0.0.1:0", log)
    }

    /// Like [`Broker::start`], listening on `listen` (e.g. the address of a
    /// broker that was just stopped, to restart it).
    pub fn start_at(www: &Path, listen: &str, log: bool) -> anyhow::Result<Self> {
        Self::start_with(www, listen, log, &[])
    }

    /// Like [`Broker::start_at`], with further command-line flags (e.g.
    /// `--turn-url`).
    pub fn start_with(www: &Path, listen: &str, log: bool, args: &[&str]) -> anyhow::Result<Self> {
        let bin = broker_bin()?;
        let mut child = Command::new(&bin)
            .args(["--listen", listen, "--www"])
            .arg(www)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !announced {
                    if let Some(addr) = line.strip_prefix("listening on http://") {
                        let _ = tx.send(addr.trim().trim_end_matches('/').to_owned());
                        announced = true;
                        continue;
                    }
                }
                if log {
                    eprintln!("[broker] {line}");
                }
            }
        });
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || drain(BufReader::new(stderr), log));

        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not print `listening on http://…` (exit status: {status:?})",
                    bin.display()
                );
            }
        };
        let addr = addr
            .parse()
            .with_context(|| format!("bad address in `listening on http://{addr}`"))?;
        Ok(Self { child, addr })
    }

    /// Stops it as an operator would, with SIGTERM, and waits for it to
    /// exit.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(self.child.wait()?)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The body of `GET /metrics`.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = crate::http::get(self.addr, "/metrics")?;
        anyhow::ensure!(status == 200, "GET /metrics: {status}\n{body}");
        Ok(body)
    }

    /// The sum of all samples of metric `name` (over any labels).
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let body = self.metrics()?;
        parse_metric(&body, name).with_context(|| format!("no metric {name} in /metrics:\n{body}"))
    }

    /// WebSocket text bytes the broker received plus sent so far.
    pub fn ws_bytes(&self) -> anyhow::Result<f64> {
        Ok(self.metric("broker_ws_bytes_in_total")? + self.metric("broker_ws_bytes_out_total")?)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain(reader: impl Read, log: bool) {
    for line in BufReader::new(reader).lines().map_while(Result::ok) {
        if log {
            eprintln!("[broker] {line}");
        }
    }
}

/// Sums the samples of `name` in Prometheus text format.
pub fn parse_metric(body: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if rest.starts_with('{') {
            rest.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

#[cfg(test)]
mod unit {
    #[test]
    fn parses_metrics() {
        let body = "# HELP x_total x\n# TYPE x_total counter\nx_total 12\nx_total_more 5\n\
                    y{a=\"1\"} 2\ny{a=\"2\"} 3 1700000000\n";
        assert_eq!(super::parse_metric(body, "x_total"), Some(12.0));
        assert_eq!(super::parse_metric(body, "y"), Some(5.0));
        assert_eq!(super::parse_metric(body, "z"), None);
    }
}
