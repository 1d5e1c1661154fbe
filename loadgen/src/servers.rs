//! Starting, probing and stopping the servers under test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::dialect::Server;

/// Where each server's executable is.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// Our broker (release build).
    pub broker: PathBuf,
    /// `peer`'s `dist/bin/peerjs.js`, run with `node`.
    pub peerjs: PathBuf,
    /// `matchbox_server`.
    pub matchbox: PathBuf,
}

/// A running server, killed on drop.
pub struct Running {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Limits that would otherwise stop a load test rather than measure the
/// relay path: browsers never send hundreds of messages a second per
/// connection, the generator does; all its connections come from one
/// address; and the idle test opens more than the default cap.
const OUR_BENCH_FLAGS: &[&str] = &[
    "--max-connections=30000",
    "--max-connections-per-address=30000",
    "--message-rate=100000000",
    "--message-burst=100000000",
    "--outbox-capacity=4096",
    "--max-http-connections-per-address=30000",
];

impl Running {
    /// Starts `server` on `port`, on CPU `cpu` if given, and waits until it
    /// accepts connections. Its output goes to `log_dir/<name>.log`.
    pub fn start(
        server: Server,
        bins: &Binaries,
        port: u16,
        cpu: Option<usize>,
        log_dir: &std::path::Path,
    ) -> anyhow::Result<Running> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let (program, args): (PathBuf, Vec<String>) = match server {
            Server::Ours => {
                let mut args = vec![format!("--listen={addr}"), "--www=/nonexistent".into()];
                args.extend(OUR_BENCH_FLAGS.iter().map(|s| s.to_string()));
                (bins.broker.clone(), args)
            }
            Server::Peerjs => (
                "node".into(),
                vec![
                    bins.peerjs.display().to_string(),
                    "--host=127.0.0.1".into(),
                    format!("--port={port}"),
                    "--concurrent_limit=30000".into(),
                ],
            ),
            Server::Matchbox => (bins.matchbox.clone(), vec![addr.to_string()]),
        };
        let log_path = log_dir.join(format!("{}-{port}.log", server.name()));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        command
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("SERVER_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} ({})", server.name(), program.display()))?;
        let mut running = Running { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = running.child.try_wait()? {
                bail!(
                    "{} exited with {status} before listening; see {}",
                    server.name(),
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!("{} did not listen on {addr} within 30 s", server.name());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(running)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/<pid>/status")
    }
}

/// CPU time (user and system) process `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command name in /proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, in clock
    // ticks of 1/100 s (USER_HZ, the same on every Linux).
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
