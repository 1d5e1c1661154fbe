//! `bench-broker`: loads our broker, PeerJS's server and matchbox_server
//! the same way in one run, and prints relay throughput, relay latency and
//! memory per idle peer side by side.
//!
//! Each server runs pinned to one core and the generator to the other
//! (on a 2-core machine), so no server is measured with the generator's
//! share of the CPU, and runs are repeatable. `just bench-broker` installs
//! the other two servers and runs this.

mod dialect;
mod load;
mod servers;
mod wire;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::time::Instant;

use dialect::Server;
use load::{Measured, Pace};
use servers::{Binaries, Running};

#[derive(Parser, Debug)]
#[command(about = "Signaling load generator: our broker vs PeerJS's server vs matchbox_server")]
struct Args {
    /// Servers to measure (default: all three).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Server>,
    /// Our broker's binary (a release build).
    #[arg(long, default_value = "target/release/broker")]
    broker: PathBuf,
    /// PeerJS server's `dist/bin/peerjs.js` (npm package `peer`).
    #[arg(
        long,
        default_value = "target/bench-tools/peerjs/node_modules/peer/dist/bin/peerjs.js"
    )]
    peerjs: PathBuf,
    /// The `matchbox_server` binary.
    #[arg(
        long,
        default_value = "target/bench-tools/matchbox/bin/matchbox_server"
    )]
    matchbox: PathBuf,
    /// Connected peers during the relay runs (pairs signal each other).
    #[arg(long, default_value_t = 1000)]
    peers: usize,
    /// Signals in flight per peer in the throughput run.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Total signals per second in the fixed-rate run.
    #[arg(long, default_value_t = 20_000)]
    rate: u32,
    /// Measured seconds per relay run (after 2 s of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Idle peers for the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    idle_peers: usize,
    /// Do not pin the server and the generator to separate cores.
    #[arg(long)]
    no_pin: bool,
    /// Where the servers' output goes.
    #[arg(long, default_value = "target/bench-broker")]
    logs: PathBuf,
}

/// One server's figures.
struct Row {
    server: Server,
    saturated: Measured,
    fixed: Measured,
    kib_per_idle_peer: f64,
    /// The server's CPU time per relayed signal in each window, in µs.
    cpu_us_saturated: f64,
    cpu_us_fixed: f64,
}

const WARMUP: Duration = Duration::from_secs(2);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_open_files_limit();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (server_cpu, generator_cpu) = if args.no_pin || cpus < 2 {
        (None, None)
    } else {
        (Some(0), Some(1))
    };
    if let Some(cpu) = generator_cpu {
        pin_to(cpu)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::fs::create_dir_all(&args.logs)?;
    let bins = Binaries {
        broker: args.broker.clone(),
        peerjs: args.peerjs.clone(),
        matchbox: args.matchbox.clone(),
    };
    let servers = if args.only.is_empty() {
        Server::ALL.to_vec()
    } else {
        args.only.clone()
    };
    println!(
        "bench-broker: {} peers, {} in flight each, fixed rate {}/s, {} s windows, {} idle peers, {}",
        args.peers,
        args.in_flight,
        args.rate,
        args.seconds,
        args.idle_peers,
        match server_cpu {
            Some(cpu) => format!("server on CPU {cpu}, generator on CPU {}", generator_cpu.unwrap()),
            None => "unpinned".into(),
        }
    );
    let epoch = Instant::now();
    let mut rows = Vec::new();
    for (n, &server) in servers.iter().enumerate() {
        let port = 19100 + n as u16 * 2;
        let row = runtime
            .block_on(measure(server, &bins, port, server_cpu, &args, epoch))
            .with_context(|| format!("measuring {}", server.name()))?;
        rows.push(row);
    }
    report(&rows, &args);
    Ok(())
}

async fn measure(
    server: Server,
    bins: &Binaries,
    port: u16,
    cpu: Option<usize>,
    args: &Args,
    epoch: Instant,
) -> anyhow::Result<Row> {
    let window = Duration::from_secs(args.seconds);
    eprintln!("{}: relay runs with {} peers", server.name(), args.peers);
    let running = Running::start(server, bins, port, cpu, &args.logs)?;
    let peers = load::connect_all(server, running.addr, 0..args.peers).await?;
    let cpu_window = CpuWindow::start(running.pid(), window);
    let (saturated, peers) = load::relay(
        server,
        peers,
        Pace::InFlight(args.in_flight),
        epoch,
        WARMUP,
        window,
    )
    .await?;
    let cpu_us_saturated = cpu_window.per_signal_us(&saturated).await?;
    eprintln!(
        "  saturated: {:.0}/s, {cpu_us_saturated:.2} µs CPU per signal",
        saturated.rate()
    );
    let period = Duration::from_secs_f64(args.peers as f64 / args.rate as f64);
    let cpu_window = CpuWindow::start(running.pid(), window);
    let (fixed, peers) =
        load::relay(server, peers, Pace::Every(period), epoch, WARMUP, window).await?;
    let cpu_us_fixed = cpu_window.per_signal_us(&fixed).await?;
    eprintln!(
        "  fixed rate: {:.0}/s, p99 {:.2} ms",
        fixed.rate(),
        fixed.percentile_ms(0.99)
    );
    drop(peers);
    drop(running);

    // A fresh process, so the relay runs' buffers do not count as idle cost.
    eprintln!("{}: {} idle peers", server.name(), args.idle_peers);
    let running = Running::start(server, bins, port + 1, cpu, &args.logs)?;
    let warm = load::connect_all(server, running.addr, 0..2).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = running.rss_kib()?;
    let idle = load::connect_all(server, running.addr, 2..2 + args.idle_peers).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = running.rss_kib()?;
    let kib_per_idle_peer = after.saturating_sub(before) as f64 / idle.len() as f64;
    eprintln!("  RSS {before} KiB -> {after} KiB");
    drop((idle, warm, running));
    Ok(Row {
        server,
        saturated,
        fixed,
        kib_per_idle_peer,
        cpu_us_saturated,
        cpu_us_fixed,
    })
}

/// The server's CPU time over a relay run's measured window, read from
/// `/proc` when the window opens and closes (the run starts now). CPU time
/// per signal moves far less with the machine's other load than rates do.
struct CpuWindow(tokio::task::JoinHandle<anyhow::Result<f64>>);

impl CpuWindow {
    fn start(pid: u32, window: Duration) -> CpuWindow {
        let from = Instant::now() + WARMUP;
        CpuWindow(tokio::spawn(async move {
            tokio::time::sleep_until(from).await;
            let before = servers::cpu_seconds(pid)?;
            tokio::time::sleep_until(from + window).await;
            Ok(servers::cpu_seconds(pid)? - before)
        }))
    }

    /// Microseconds of server CPU per signal relayed in the window.
    async fn per_signal_us(self, run: &Measured) -> anyhow::Result<f64> {
        let seconds = self.0.await??;
        Ok(seconds * 1e6 / run.relayed.max(1) as f64)
    }
}

fn report(rows: &[Row], args: &Args) {
    println!();
    println!(
        "{:<10} {:>14} {:>9} {:>9} {:>7} | {:>12} {:>9} {:>9} {:>7} | {:>14}",
        "server",
        "relayed msg/s",
        "p50 ms",
        "p99 ms",
        "CPU µs",
        "fixed msg/s",
        "p50 ms",
        "p99 ms",
        "CPU µs",
        "KiB/idle peer"
    );
    for r in rows {
        println!(
            "{:<10} {:>14.0} {:>9.2} {:>9.2} {:>7.2} | {:>12.0} {:>9.2} {:>9.2} {:>7.2} | {:>14.2}",
            r.server.name(),
            r.saturated.rate(),
            r.saturated.percentile_ms(0.5),
            r.saturated.percentile_ms(0.99),
            r.cpu_us_saturated,
            r.fixed.rate(),
            r.fixed.percentile_ms(0.5),
            r.fixed.percentile_ms(0.99),
            r.cpu_us_fixed,
            r.kib_per_idle_peer,
        );
    }
    println!("(CPU µs: the server's CPU time per relayed signal, from /proc)");
    let Some(ours) = rows.iter().find(|r| r.server == Server::Ours) else {
        return;
    };
    println!();
    let best_other = rows
        .iter()
        .filter(|r| r.server != Server::Ours)
        .max_by(|a, b| a.saturated.rate().total_cmp(&b.saturated.rate()));
    if let Some(other) = best_other {
        let ratio = ours.saturated.rate() / other.saturated.rate();
        println!(
            "throughput: {ratio:.2}x {} (target >= 1.5x the fastest other: {})",
            other.server.name(),
            verdict(ratio >= 1.5)
        );
    }
    let p99 = ours.fixed.percentile_ms(0.99);
    println!(
        "p99 at {}/s: {p99:.2} ms (target <= 2 ms: {})",
        args.rate,
        verdict(p99 <= 2.0)
    );
    let kib = ours.kib_per_idle_peer;
    println!(
        "memory: {kib:.2} KiB per idle peer at {} peers (target <= 4 KiB: {})",
        args.idle_peers,
        verdict(kib <= 4.0)
    );
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

/// Lets this process (and the servers it starts, which inherit the limit)
/// open as many sockets as the hard limit allows.
fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn pin_to(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: the cpu_set_t is zeroed and filled by the libc macros.
    let ok = unsafe {
        let mut set = std::mem::zeroed::<libc::cpu_set_t>();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    anyhow::ensure!(ok, "cannot pin the generator to CPU {cpu}");
    Ok(())
}
