//! coturn (`turnserver`) as a child process, set up as for TURN REST
//! credentials: `use-auth-secret` with a `static-auth-secret` shared with
//! the broker, which mints each peer's username and password from it.
//!
//! Its verbose log is kept in memory: tests read from it which usernames
//! got an allocation, which were refused, and how many bytes each
//! allocation relayed.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The realm coturn puts in its log lines.
pub const REALM: &str = "peerpage.test";

/// A running `turnserver` listening on one UDP port of `ip`, killed on
/// drop (its temporary directory, with config, pid file and database, is
/// removed then too).
pub struct TurnServer {
    child: Child,
    addr: SocketAddr,
    secret: String,
    dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

/// What one allocation relayed, from coturn's `peer usage` line, written
/// when the allocation ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUsage {
    /// The TURN username (`<expiry>:<peer id>` with the broker's scheme).
    pub username: String,
    /// Bytes received from the allocation's peers (relayed to the client).
    pub received: u64,
    /// Bytes sent to the allocation's peers (relayed from the client).
    pub sent: u64,
}

impl TurnServer {
    /// Starts `$TURNSERVER` (default `/usr/bin/turnserver`, Debian's
    /// `coturn`) on a free UDP port of `ip`, relaying from `ip` too, with a
    /// fresh random secret; waits until its UDP listener is open. With
    /// `echo`, its log is also forwarded to stderr prefixed with `[turn]`.
    pub fn start(ip: Ipv4Addr, echo: bool) -> anyhow::Result<Self> {
        let bin = std::env::var("TURNSERVER").unwrap_or_else(|_| "/usr/bin/turnserver".into());
        let port = UdpSocket::bind((ip, 0))
            .with_context(|| format!("no free UDP port on {ip}: is it a local address?"))?
            .local_addr()?
            .port();
        let addr = SocketAddr::from((ip, port));
        let secret = random_secret()?;
        let dir = std::env::temp_dir().join(format!("peerpage-turn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // Two relay addresses on the same host are ordinary peers: no
        // `allow-loopback-peers` is needed, and the default relay port
        // range is fine in a private namespace. The database and pid file
        // go to our directory, not the system's.
        let config = format!(
            "listening-ip={ip}\nrelay-ip={ip}\nlistening-port={port}\n\
             realm={REALM}\nuse-auth-secret\nstatic-auth-secret={secret}\n\
             no-tls\nno-dtls\nno-cli\nverbose\nlog-file=stdout\nsimple-log\n\
             pidfile={dir}/turnserver.pid\nuserdb={dir}/turndb\n",
            dir = dir.display()
        );
        let conf = dir.join("turnserver.conf");
        std::fs::write(&conf, config)?;
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("cannot start {bin}: install Debian's coturn or set TURNSERVER")
            })?;
        let log = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("piped"), log.clone(), echo);
        collect(child.stderr.take().expect("piped"), log.clone(), echo);
        let mut server = Self {
            child,
            addr,
            secret,
            dir,
            log,
        };
        server.wait_ready(&bin)?;
        Ok(server)
    }

    fn wait_ready(&mut self, bin: &str) -> anyhow::Result<()> {
        let ready = format!("UDP listener opened on: {}", self.addr);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().iter().any(|l| l.contains(&ready)) {
            let exited = self.child.try_wait()?;
            if exited.is_some() || Instant::now() > deadline {
                bail!(
                    "{bin} did not log `{ready}` (exit status: {exited:?}); its log:\n{}",
                    self.log().join("\n")
                );
            }
            std::thread::sleep(crate::POLL);
        }
        Ok(())
    }

    /// `turn:IP:PORT?transport=udp`, for the broker's `--turn-url`.
    pub fn url(&self) -> String {
        format!("turn:{}?transport=udp", self.addr)
    }

    /// The `static-auth-secret`, for the broker's `--turn-secret`.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Usernames that got an allocation, in order, without repeats.
    pub fn allocated(&self) -> Vec<String> {
        allocated(&self.log())
    }

    /// Usernames refused with 401 (a wrong password), in order, without
    /// repeats. The anonymous first request every client makes is left
    /// out.
    pub fn refused(&self) -> Vec<String> {
        refused(&self.log())
    }

    /// The `peer usage` of every allocation that ended.
    pub fn peer_usage(&self) -> Vec<PeerUsage> {
        self.log().iter().filter_map(|l| peer_usage(l)).collect()
    }

    /// Polls the log until `done` accepts it, for at most `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&TurnServer) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(t) = done(self) {
                return t;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "coturn: timed out after {timeout:?} waiting for {what}; allocated: {:?}; \
                     refused: {:?}; peer usage: {:?}",
                    self.allocated(),
                    self.refused(),
                    self.peer_usage()
                );
            }
            tokio::time::sleep(crate::POLL).await;
        }
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 128 bits from the kernel, as hex.
fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn collect(stream: impl Read + Send + 'static, log: Arc<Mutex<Vec<String>>>, echo: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if echo {
                eprintln!("[turn] {line}");
            }
            log.lock().expect("log lock").push(line);
        }
    });
}

/// The `<…>` after `key` in `line`.
fn bracketed<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split_once('>').map(|(inside, _)| inside)
}

fn unique(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn allocated(log: &[String]) -> Vec<String> {
    unique(
        log.iter()
            .filter(|l| l.contains("incoming packet ALLOCATE processed, success"))
            .filter_map(|l| bracketed(l, " user <").map(str::to_owned)),
    )
}

fn refused(log: &[String]) -> Vec<String> {
    unique(
        log.iter()
            .filter(|l| l.contains("processed, error 401"))
            .filter_map(|l| bracketed(l, " user <"))
            .filter(|user| !user.is_empty())
            .map(str::to_owned),
    )
}

/// Parses `… peer usage: realm=<r>, username=<u>, rp=N, rb=N, sp=N, sb=N`.
fn peer_usage(line: &str) -> Option<PeerUsage> {
    let rest = &line[line.find("peer usage: ")?..];
    let username = bracketed(rest, "username=<")?.to_owned();
    let number = |key: &str| -> Option<u64> {
        let at = rest.find(key)? + key.len();
        rest[at..].split(',').next()?.trim().parse().ok()
    };
    Some(PeerUsage {
        username,
        received: number(", rb=")?,
        sent: number(", sb=")?,
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    // Lines as coturn 4.6.1 writes them.
    const LOG: &[&str] = &[
        "1: : session 001000000000000001: realm <peerpage.test> user <>: incoming packet message processed, error 401: Unauthorized",
        "1: : session 001000000000000001: realm <peerpage.test> user <1795389607:a>: incoming packet ALLOCATE processed, success",
        "1: : session 001000000000000002: realm <peerpage.test> user <1795389607:a>: incoming packet ALLOCATE processed, success",
        "1: : ERROR: check_stun_auth: Cannot find credentials of user <1795389688:b>",
        "1: : session 001000000000000003: realm <peerpage.test> user <1795389688:b>: incoming packet message processed, error 401: Unauthorized",
        "8: : session 000000000000000001: usage: realm=<peerpage.test>, username=<1795389607:a>, rp=11, rb=1276, sp=11, sb=1024",
        "8: : session 000000000000000001: peer usage: realm=<peerpage.test>, username=<1795389607:a>, rp=3, rb=300, sp=4, sb=412",
    ];

    fn log() -> Vec<String> {
        LOG.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn reads_allocations_and_refusals() {
        assert_eq!(allocated(&log()), ["1795389607:a"]);
        assert_eq!(refused(&log()), ["1795389688:b"]);
    }

    #[test]
    fn reads_peer_usage() {
        let usage: Vec<_> = log().iter().filter_map(|l| peer_usage(l)).collect();
        assert_eq!(
            usage,
            [PeerUsage {
                username: "1795389607:a".into(),
                received: 300,
                sent: 412,
            }]
        );
    }
}
