//! The load itself: connect many peers, then relay signals between pairs.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::dialect::{stamp, Server, STAMP_DIGITS};
use crate::wire::{Conn, CLOSE, PING, TEXT};

/// Padding that makes a relayed payload about the size of an ICE candidate.
const PAD: usize = 160;

/// Connections opened at once; more would overflow listen backlogs.
const CONNECT_PARALLEL: usize = 256;

/// A connected peer that knows its id.
pub struct Peer {
    conn: Conn,
    /// The id other peers address it by.
    pub id: String,
}

/// Connects peers number `indices` to `server` at `addr`, each waiting
/// for the frame that gives its id. Numbers must be unique per server:
/// PeerJS clients choose their ids from them.
pub async fn connect_all(
    server: Server,
    addr: SocketAddr,
    indices: Range<usize>,
) -> anyhow::Result<Vec<Peer>> {
    let first = indices.start;
    let mut peers: Vec<Option<Peer>> = indices.clone().map(|_| None).collect();
    for start in indices.clone().step_by(CONNECT_PARALLEL) {
        let mut batch = JoinSet::new();
        for index in start..indices.end.min(start + CONNECT_PARALLEL) {
            batch.spawn(async move { (index, connect_one(server, addr, index).await) });
        }
        while let Some(done) = batch.join_next().await {
            let (index, peer) = done?;
            peers[index - first] = Some(peer.with_context(|| format!("peer {index}"))?);
        }
    }
    Ok(peers
        .into_iter()
        .map(|p| p.expect("every peer connected"))
        .collect())
}

async fn connect_one(server: Server, addr: SocketAddr, index: usize) -> anyhow::Result<Peer> {
    let mut conn = Conn::connect(addr, &server.path(index)).await?;
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        frames.clear();
        let read = tokio::time::timeout_at(deadline, conn.read(&mut frames)).await;
        if !read.context("no id from the server within 30 s")?? {
            bail!("closed before the server gave an id");
        }
        for (opcode, range) in frames.drain(..) {
            if opcode == TEXT {
                if let Some(id) = server.own_id(index, conn.payload(range)) {
                    return Ok(Peer { conn, id });
                }
            }
        }
    }
}

/// How fast each peer sends.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Keep this many signals in flight per peer: each one relayed to a
    /// peer makes it send the next. Finds the server's throughput.
    InFlight(usize),
    /// One signal per peer every this long, at staggered phases.
    Every(Duration),
}

/// What one relay run measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Signals relayed inside the window.
    pub relayed: u64,
    /// Their relay latencies in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Peers whose connection failed during the run.
    pub broken: usize,
    /// Length of the measured window.
    pub window: Duration,
}

impl Measured {
    /// Relayed signals per second.
    pub fn rate(&self) -> f64 {
        self.relayed as f64 / self.window.as_secs_f64()
    }

    /// A latency percentile in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let Some(last) = self.latencies_us.len().checked_sub(1) else {
            return f64::NAN;
        };
        self.latencies_us[(last as f64 * p).round() as usize] as f64 / 1000.0
    }
}

/// Pairs peers `2k` and `2k+1` and has them signal each other for
/// `warmup + window`, measuring only the window. Returns the peers for
/// the next run.
///
/// Send times count from `epoch`, shared by all runs, so a signal still in
/// flight from an earlier run is recognised as old rather than misread.
pub async fn relay(
    server: Server,
    peers: Vec<Peer>,
    pace: Pace,
    epoch: Instant,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<(Measured, Vec<Peer>)> {
    let start = Instant::now();
    let from = start + warmup;
    let until = from + window;
    let ids: Vec<String> = peers.iter().map(|p| p.id.clone()).collect();
    let count = peers.len();
    let mut tasks = JoinSet::new();
    for (index, peer) in peers.into_iter().enumerate() {
        let partner = &ids[index ^ 1];
        let (before, after) = server.signal(partner, PAD);
        // Spread paced peers over the period so the load is even.
        let phase = match pace {
            Pace::Every(period) => period.mul_f64(index as f64 / count as f64),
            Pace::InFlight(_) => Duration::ZERO,
        };
        let job = Job {
            before,
            after,
            pace,
            phase,
            start,
            epoch,
            from,
            until,
        };
        tasks.spawn(async move { (index, job.run(peer).await) });
    }
    let mut measured = Measured {
        window,
        ..Measured::default()
    };
    let mut back: Vec<Option<Peer>> = (0..count).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (index, (peer, seen)) = done?;
        match peer {
            Some(peer) => back[index] = Some(peer),
            None => measured.broken += 1,
        }
        measured.relayed += seen.len() as u64;
        measured.latencies_us.extend(seen);
    }
    measured.latencies_us.sort_unstable();
    if measured.broken > 0 {
        bail!(
            "{} of {count} connections broke during the run",
            measured.broken
        );
    }
    Ok((measured, back.into_iter().flatten().collect()))
}

/// One peer's part of a relay run.
struct Job {
    before: Vec<u8>,
    after: Vec<u8>,
    pace: Pace,
    phase: Duration,
    start: Instant,
    epoch: Instant,
    from: Instant,
    until: Instant,
}

impl Job {
    /// Runs until `until`; returns the peer (unless its connection broke)
    /// and the latencies of signals it received inside the window.
    async fn run(self, mut peer: Peer) -> (Option<Peer>, Vec<u32>) {
        let mut seen = Vec::new();
        match self.drive(&mut peer.conn, &mut seen).await {
            Ok(()) => (Some(peer), seen),
            Err(_) => (None, seen),
        }
    }

    async fn drive(&self, conn: &mut Conn, seen: &mut Vec<u32>) -> anyhow::Result<()> {
        let mut frames: Vec<(u8, Range<usize>)> = Vec::new();
        let mut ticks = match self.pace {
            Pace::InFlight(n) => {
                for _ in 0..n {
                    self.queue_signal(conn);
                }
                conn.flush().await?;
                None
            }
            Pace::Every(period) => Some(tokio::time::interval_at(self.start + self.phase, period)),
        };
        let end = tokio::time::sleep_until(self.until);
        tokio::pin!(end);
        loop {
            tokio::select! {
                biased;
                _ = &mut end => return Ok(()),
                _ = async { ticks.as_mut().unwrap().tick().await }, if ticks.is_some() => {
                    self.queue_signal(conn);
                }
                read = conn.read(&mut frames) => {
                    if !read? {
                        bail!("server closed the connection");
                    }
                    let now = Instant::now();
                    let mut answer = 0;
                    let mut pings = Vec::new();
                    for (opcode, range) in frames.drain(..) {
                        match opcode {
                            TEXT => {
                                let Some(sent) = stamp(conn.payload(range)) else { continue };
                                if now >= self.from {
                                    let sent = self.epoch + Duration::from_nanos(sent);
                                    seen.push(now.saturating_duration_since(sent).as_micros() as u32);
                                }
                                answer += 1;
                            }
                            PING => pings.push(range),
                            CLOSE => bail!("server sent a close frame"),
                            _ => {}
                        }
                    }
                    for range in pings {
                        conn.queue_pong(range);
                    }
                    if let Pace::InFlight(_) = self.pace {
                        for _ in 0..answer {
                            self.queue_signal(conn);
                        }
                    }
                }
            }
            conn.flush().await?;
        }
    }

    fn queue_signal(&self, conn: &mut Conn) {
        let nanos = self.epoch.elapsed().as_nanos() as u64;
        let stamp = format!("{nanos:0STAMP_DIGITS$}");
        conn.queue_text(&[&self.before, stamp.as_bytes(), &self.after]);
    }
}
