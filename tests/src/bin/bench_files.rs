//! File transfers: throughput against a plain-JS ceiling, and a small swarm.
//!
//! 1. Throughput. Visitor A shares a 100 MiB file of pseudo-random bytes
//!    (`peer.shareFile`); visitor B, another Chromium, opens its link and
//!    is timed from its navigation start to `#status[data-state]` turning
//!    "verified" (or "holding"), on B's own clock. The floor, run in
//!    turn with ours, is `tests/floor/bulk-{sender,receiver}.html` on a second
//!    broker: one RTCDataChannel, the same 100 MiB sent with backpressure,
//!    the receiver only counting bytes, timed from its navigation start to
//!    the last byte the same way. The floor runs with 16, 64 and 256 KiB
//!    messages (ours sends 256 KiB ones); ours is compared with the best.
//!    Then once more with the receiver doing the work every download must
//!    besides moving bytes: each 256 KiB message hashed with WebCrypto and
//!    written to the origin private file system by a worker. That row is
//!    not a target; it shows what the required work costs on this machine,
//!    and how much of the gap to the floor is ours' own. And once more
//!    over two connections, each sending half (not a target either: the
//!    floor the target names is one channel).
//!    Also B's peak wasm memory during ours (`window.wasmMemory`).
//! 2. Swarm. A fresh seeder shares a 32 MiB file; first one downloader
//!    alone, then (with a new seeder and file) four fresh downloaders that
//!    navigate at once. Wall time from the bench process, from just before
//!    the first navigation to the last downloader verified, and the bytes
//!    the seeder uploaded.
//!
//! The moment of "verified" is caught in the page by a probe that Chromium
//! runs at the start of every document (DevTools
//! `Page.addScriptToEvaluateOnNewDocument`): a MutationObserver on
//! `data-state` attributes, so it never misses a transfer that ends before
//! WebDriver could ask, and costs no polling over WebDriver. The app's
//! `peer.onevent` is left alone (it has no getter to chain to).
//!
//! `cargo run --release -p tests --bin bench_files` (root; re-executes
//! itself in a private network namespace, see `tests::netns`; needs the app
//! built with the files API, `just build`). `BENCH_FILE_MIB` sets the size
//! of the throughput file (default 100; above 256 the file is written to
//! disk and chosen in A's file picker, e.g. 1024 to check 1 GiB).
//! `BENCH_FILE_RUNS` sets the number of throughput runs of each (default
//! 3). `BENCH_PROFILE=<dir>` records DevTools CPU profiles of both pages
//! of every throughput run into `<dir>`.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{json, Value};
use tests::{Broker, ChromeDriver, Visitor};

const MIB: f64 = (1 << 20) as f64;
/// The throughput file: 100 MiB, or `BENCH_FILE_MIB` (e.g. 1024 to check
/// that a 1 GiB file goes through with the wasm heap staying small).
fn file_bytes() -> u64 {
    static BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        let mib = std::env::var("BENCH_FILE_MIB").map_or(100, |v| {
            v.parse()
                .expect("BENCH_FILE_MIB must be a whole number of MiB")
        });
        mib << 20
    })
}
/// The swarm file.
const SWARM_BYTES: u64 = 32 << 20;
/// Floor message sizes: the size every browser once accepted, a common
/// choice, and the largest Chromium accepts. The best of them is the floor.
const FLOOR_MESSAGES: [u64; 3] = [16 << 10, 64 << 10, 256 << 10];
/// The floor in other modes of `bulk-receiver.html`, not targets: its
/// name in every line the bench prints, message size, mode, and what its
/// ratio line says it shows.
struct FloorVariant {
    name: &'static str,
    message: u64,
    mode: &'static str,
    shows: &'static str,
}
const FLOOR_VARIANTS: [FloorVariant; 2] = [
    // The work every download must do besides moving bytes: each 256 KiB
    // message hashed with WebCrypto and written to the origin private file
    // system. Not a ceiling for ours, which does more; it shows what that
    // work alone costs on this machine.
    FloorVariant {
        name: "floor + hash + store",
        message: 256 << 10,
        mode: "work",
        shows: "the plain-JS pair also hashing and storing every chunk, as a download must",
    },
    // Two connections, each sending half: two SCTP associations over two
    // UDP sockets share the datagram losses and recover from them apart.
    FloorVariant {
        name: "floor, 2 connections",
        message: 64 << 10,
        mode: "two",
        shows: "the plain-JS pair over two RTCPeerConnections, each sending half",
    },
];
/// Targets: ours at least 90% of the best floor; the swarm of four at
/// most twice as long as one download; the seeder uploading at most twice
/// the file (the downloaders share the rest among themselves).
const TARGET_THROUGHPUT: f64 = 0.9;
const TARGET_SWARM_WALL: f64 = 2.0;
const TARGET_SEEDER_UPLOAD: f64 = 2.0;
/// A 100 MiB transfer at a crawl still ends well within this.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
/// Without the back/forward cache, a page left behind is really gone (as
/// in bench_open).
const NO_BFCACHE: &str = "--disable-features=BackForwardCache";

/// Runs at the start of every document of a timed visitor (see the module
/// comment). `__bench.done`: `performance.now()` when `#status` first turned
/// verified or holding; `mem`: the largest `wasmMemory` seen (sampled every
/// 50 ms; wasm memory never shrinks, so the last sample is the peak).
const PROBE: &str = r#"(() => {
  const b = (window.__bench = { done: null, mem: 0, states: [], waiters: [] });
  const sample = () => {
    const m = window.wasmMemory;
    if (m && m.buffer) b.mem = Math.max(b.mem, m.buffer.byteLength);
  };
  setInterval(sample, 50);
  new MutationObserver(() => {
    const el = document.getElementById("status");
    const state = el && el.getAttribute("data-state");
    const last = b.states[b.states.length - 1];
    if (!last || last[1] !== state) b.states.push([Math.round(performance.now()), state]);
    if (b.done === null && (state === "verified" || state === "holding")) {
      b.done = performance.now();
      sample();
      b.waiters.splice(0).forEach((wake) => wake());
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
})();"#;

/// Resolves with `{ms, mem}` once the probe saw the end, or with null after
/// 5 s (the caller asks again: one long wait would hit the script timeout).
const WAIT_DONE: &str = r#"const done = arguments[arguments.length - 1];
const b = window.__bench;
if (!b) return done({ error: "no bench probe in this page" });
const result = () => {
  const m = window.wasmMemory;
  return { ms: b.done, mem: Math.max(b.mem, m && m.buffer ? m.buffer.byteLength : 0) };
};
if (b.done !== null) return done(result());
b.waiters.push(() => done(result()));
setTimeout(() => done(null), 5000);"#;

/// Makes a File of `size` pseudo-random bytes (`window.makeFile`, see
/// `tests::files::MAKE_FILE`) and shares it with `peer.shareFile`;
/// resolves with `{address, ms}` or `{error}`.
const SHARE_FILE: &str = r#"const [size, seed, name, done] = arguments;
const file = window.makeFile(seed, size, name, "application/octet-stream");
const start = performance.now();
window.peer.shareFile(file, name, "application/octet-stream").then(
  (address) => done({ address, ms: performance.now() - start }),
  (e) => done({ error: String((e && e.message) || e) }),
);"#;

fn main() -> anyhow::Result<()> {
    tests::netns::reexec_self();
    let runs = match std::env::var("BENCH_FILE_RUNS") {
        Ok(n) => n.parse().context("BENCH_FILE_RUNS")?,
        Err(_) => 3,
    };
    ensure!(runs >= 1, "BENCH_FILE_RUNS must be at least 1");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(bench(runs))
}

async fn bench(runs: usize) -> anyhow::Result<()> {
    let driver = ChromeDriver::start()?;
    println!(
        "broker: {}",
        tests::broker::broker_bin()?.canonicalize()?.display()
    );
    let app = Broker::start(&tests::www_dir()?, false)?;
    let floor = Broker::start(&tests::floor_dir(), false)?;

    let throughput = throughput(&driver, &app, &floor, runs).await?;
    let swarm = swarm(&driver, &app).await?;

    println!();
    println!("summary");
    throughput.print();
    swarm.print();
    Ok(())
}

// ---------------------------------------------------------------- throughput

struct Throughput {
    ours: Series,
    /// One per floor message size.
    floors: Vec<Series>,
    /// One per `FLOOR_VARIANTS`.
    variants: Vec<Series>,
    /// B's peak wasm memory over all runs of ours, bytes (0: not exposed).
    peak_wasm: u64,
}

/// The runs of one way of sending the file.
#[derive(Default)]
struct Series {
    /// MiB/s of each run.
    rates: Vec<f64>,
    /// CPU ms per MiB of each run, all Chromium processes together.
    cpu: Vec<f64>,
}

impl Series {
    fn push(&mut self, rate: f64, cpu_ms: f64) {
        self.rates.push(rate);
        self.cpu.push(cpu_ms / (file_bytes() as f64 / MIB));
    }
}

impl Throughput {
    fn print(&self) {
        println!(
            "{:<20} {:>4} {:>13} {:>10} {:>15}",
            format!("{} MiB transfer", file_bytes() >> 20),
            "n",
            "median MiB/s",
            "min MiB/s",
            "CPU ms per MiB"
        );
        let mut rows = vec![("ours".to_owned(), &self.ours)];
        for (size, f) in FLOOR_MESSAGES.iter().zip(&self.floors) {
            rows.push((format!("floor {} KiB msgs", size >> 10), f));
        }
        for (v, series) in FLOOR_VARIANTS.iter().zip(&self.variants) {
            rows.push((v.name.to_owned(), series));
        }
        for (name, v) in rows {
            let min = v.rates.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{name:<20} {:>4} {:>13.1} {min:>10.1} {:>15.0}",
                v.rates.len(),
                median(&v.rates),
                median(&v.cpu)
            );
        }
        let (best, floor) = self
            .floors
            .iter()
            .enumerate()
            .map(|(i, f)| (i, median(&f.rates)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("floors");
        let ratio = median(&self.ours.rates) / floor;
        println!(
            "ours / best floor ({} KiB msgs): {ratio:.2} (target >= {TARGET_THROUGHPUT}: {})",
            FLOOR_MESSAGES[best] >> 10,
            verdict(ratio >= TARGET_THROUGHPUT)
        );
        for (v, series) in FLOOR_VARIANTS.iter().zip(&self.variants) {
            let rate = median(&series.rates);
            println!(
                "{name} / best floor: {:.2}; ours / {name}: {:.2} ({})",
                rate / floor,
                median(&self.ours.rates) / rate,
                v.shows,
                name = v.name,
            );
        }
        if self.peak_wasm > 0 {
            println!(
                "B's peak wasm memory during ours: {:.1} MiB",
                self.peak_wasm as f64 / MIB
            );
        } else {
            println!(
                "B's peak wasm memory during ours: unknown (the app sets no window.wasmMemory)"
            );
        }
    }
}

async fn throughput(
    driver: &ChromeDriver,
    app: &Broker,
    floor: &Broker,
    runs: usize,
) -> anyhow::Result<Throughput> {
    println!(
        "throughput: {} MiB, ours vs plain RTCDataChannel, {runs} runs each",
        file_bytes() >> 20
    );
    // Ours: A shares the file from the compose page and stays there.
    let a = Visitor::new(driver, "A").await?;
    a.goto(&app.url("/")).await;
    // Up to a few hundred MiB the page makes the file in memory; bigger
    // ones come from disk through the file picker, as a user's would
    // (Chromium keeps at most 500 MiB of a page's own Blobs).
    let _on_disk;
    let address = if file_bytes() > ON_DISK_ABOVE {
        let path = std::env::temp_dir().join(format!("bench-{}.bin", std::process::id()));
        std::fs::write(&path, tests::files::content(1, file_bytes() as usize))?;
        _on_disk = RemoveOnDrop(path.clone());
        share_from_disk(&a, &path).await?
    } else {
        share_file(&a, file_bytes(), 1).await?
    };
    wait_metric(app, "broker_addresses", 1.0).await?;
    let link = app.url(&format!("/{address}"));

    // Floor: the sender makes the same bytes.
    let sender = Visitor::new(driver, "floor-sender").await?;
    sender.goto(&floor.url("/bulk-sender.html")).await;
    sender.wait_attr("#status", "data-state", "ready").await;
    let made = sender
        .js(
            "return window.prepare(arguments[0], 1)",
            vec![json!(file_bytes())],
        )
        .await;
    ensure!(
        made.as_u64() == Some(file_bytes()),
        "floor sender made {made} bytes"
    );
    let id = sender.attr("#me", "data-id").await.context("sender id")?;

    let b = timed_visitor(driver, "B").await?;
    let mut result = Throughput {
        ours: Series::default(),
        floors: FLOOR_MESSAGES.iter().map(|_| Series::default()).collect(),
        variants: FLOOR_VARIANTS.iter().map(|_| Series::default()).collect(),
        peak_wasm: 0,
    };
    for run in 1..=runs {
        // Ours. Only A may hold the file: B's previous page must be gone.
        b.goto("about:blank").await;
        wait_metric(app, "broker_peers", 1.0).await?;
        let profile = std::env::var("BENCH_PROFILE").ok();
        let cpu = CpuMeter::start();
        if profile.is_some() {
            // Profiling starts on a page of the same origin and goes on
            // across the navigation.
            b.goto(&app.url("/")).await;
            start_profiles(&[&b, &a]).await?;
            b.js(&format!("location.href = {link:?}"), vec![]).await;
        } else {
            b.goto(&link).await;
        }
        let done = wait_done(&b, &[&a]).await;
        let cpu_ms = cpu.ms();
        if let Some(dir) = &profile {
            save_profiles(dir, &format!("ours-{run}"), &[(&b, "B"), (&a, "A")]).await?;
        }
        let got = b.peer_stats().await.bytes_from_peers;
        ensure!(
            got >= file_bytes(),
            "B verified the file but received only {got} bytes over data channels"
        );
        let ours = mib_per_s(file_bytes(), done.page_ms);
        result.ours.push(ours, cpu_ms);
        result.peak_wasm = result.peak_wasm.max(done.wasm_bytes);
        let mut line = format!(
            "run {run}: ours {ours:6.1} MiB/s ({:5.0} ms, wasm {:.0} MiB, CPU {:.0} ms/MiB)",
            done.page_ms,
            done.wasm_bytes as f64 / MIB,
            result.ours.cpu.last().expect("pushed")
        );
        b.goto("about:blank").await;

        // Floor, each message size, then its other modes.
        let plain = FLOOR_MESSAGES.iter().map(|&size| (size, None));
        let variants = FLOOR_VARIANTS.iter().map(|v| (v.message, Some(v)));
        for (i, (size, variant)) in plain.chain(variants).enumerate() {
            let mode = variant.map_or(String::new(), |v| format!(",{}", v.mode));
            let url = floor.url(&format!("/bulk-receiver.html#{id},{size}{mode}"));
            let cpu = CpuMeter::start();
            if profile.is_some() {
                b.goto(&floor.url("/bulk-receiver.html")).await;
                start_profiles(&[&b, &sender]).await?;
                // Only the fragment differs: reload to start the transfer.
                b.js(
                    &format!("location.href = {url:?}; location.reload()"),
                    vec![],
                )
                .await;
            } else {
                b.goto(&url).await;
            }
            let done = wait_done(&b, &[&sender]).await;
            let cpu_ms = cpu.ms();
            if let Some(dir) = &profile {
                let name = format!("floor-{}k{}-{run}", size >> 10, mode.replace(',', "-"));
                save_profiles(dir, &name, &[(&b, "B"), (&sender, "A")]).await?;
            }
            let got = b.js("return window.received", vec![]).await;
            ensure!(
                got.as_u64() == Some(file_bytes()),
                "floor receiver counted {got} bytes"
            );
            let floor = mib_per_s(file_bytes(), done.page_ms);
            let (series, label) = match variant {
                Some(v) => (
                    &mut result.variants[i - FLOOR_MESSAGES.len()],
                    v.name.to_owned(),
                ),
                None => (&mut result.floors[i], format!("floor {} KiB", size >> 10)),
            };
            series.push(floor, cpu_ms);
            line += &format!(
                ", {label} {floor:6.1} MiB/s ({:.0} ms/MiB)",
                series.cpu.last().expect("pushed")
            );
            b.goto("about:blank").await;
        }
        println!("{line}");
    }
    b.close().await;
    a.close().await;
    sender.close().await;
    Ok(result)
}

// --------------------------------------------------------------------- swarm

struct Swarm {
    single: Duration,
    wall: Duration,
    seeder_sent: u64,
    /// CPU ms of all Chromium processes during the single download and
    /// during the swarm's.
    single_cpu: f64,
    swarm_cpu: f64,
}

impl Swarm {
    fn print(&self) {
        let ratio = self.wall.as_secs_f64() / self.single.as_secs_f64();
        println!(
            "swarm of {} MiB: 1 downloader {:.0} ms, 4 downloaders {:.0} ms wall",
            SWARM_BYTES >> 20,
            self.single.as_secs_f64() * 1e3,
            self.wall.as_secs_f64() * 1e3
        );
        println!(
            "swarm wall / single: {ratio:.2} (target <= {TARGET_SWARM_WALL}: {})",
            verdict(ratio <= TARGET_SWARM_WALL)
        );
        // Moving four times the bytes takes at least this long where the
        // CPU is what runs out.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let least = self.swarm_cpu / 1e3 / cores;
        println!(
            "  CPU: single {:.1} s in {:.1} s wall, swarm {:.1} s in {:.1} s wall on {cores} cores \
             ({:.0}% of the machine); at the swarm's CPU cost no schedule beats {least:.1} s, {:.2}x single",
            self.single_cpu / 1e3,
            self.single.as_secs_f64(),
            self.swarm_cpu / 1e3,
            self.wall.as_secs_f64(),
            100.0 * least / self.wall.as_secs_f64(),
            least / self.single.as_secs_f64(),
        );
        let upload = self.seeder_sent as f64 / SWARM_BYTES as f64;
        println!(
            "seeder upload / file size: {upload:.2} (target <= {TARGET_SEEDER_UPLOAD}: {})",
            verdict(upload <= TARGET_SEEDER_UPLOAD)
        );
    }
}

async fn swarm(driver: &ChromeDriver, app: &Broker) -> anyhow::Result<Swarm> {
    println!();
    println!("swarm: {} MiB, 1 seeder", SWARM_BYTES >> 20);

    // One download alone. Each part gets its own file (seed), so nobody
    // left from before can hold it.
    let seeder = Visitor::new(driver, "seeder-1").await?;
    seeder.goto(&app.url("/")).await;
    // Odd seeds: `makeFile` sets the lowest bit.
    let address = share_file(&seeder, SWARM_BYTES, 3).await?;
    wait_metric(app, "broker_addresses", 1.0).await?;
    let link = app.url(&format!("/{address}"));
    let d = timed_visitor(driver, "single").await?;
    let start = Instant::now();
    let cpu = CpuMeter::start();
    let done = download(&d, &link, &seeder).await;
    let single = done.at - start;
    let single_cpu = cpu.ms();
    let got = d.peer_stats().await.bytes_from_peers;
    let sent = seeder.peer_stats().await.bytes_to_peers;
    println!(
        "single: {:.0} ms wall ({:.0} ms in page, {:.1} MiB/s), bytesFromPeers {got}, \
         seeder bytesToPeers {sent}",
        single.as_secs_f64() * 1e3,
        done.page_ms,
        SWARM_BYTES as f64 / MIB / single.as_secs_f64()
    );
    ensure!(
        got >= SWARM_BYTES,
        "the downloader received only {got} bytes"
    );
    d.close().await;
    seeder.close().await;
    wait_metric(app, "broker_addresses", 0.0).await?;

    // Four at once, from a fresh seeder of a new file.
    let seeder = Visitor::new(driver, "seeder-2").await?;
    seeder.goto(&app.url("/")).await;
    let address = share_file(&seeder, SWARM_BYTES, 5).await?;
    wait_metric(app, "broker_addresses", 1.0).await?;
    let link = app.url(&format!("/{address}"));
    let mut ds = Vec::new();
    for i in 1..=4 {
        ds.push(timed_visitor(driver, &format!("downloader-{i}")).await?);
    }
    let start = Instant::now();
    let cpu = CpuMeter::start();
    let done = tokio::join!(
        download(&ds[0], &link, &seeder),
        download(&ds[1], &link, &seeder),
        download(&ds[2], &link, &seeder),
        download(&ds[3], &link, &seeder),
    );
    let done = [done.0, done.1, done.2, done.3];
    let wall = done.iter().map(|d| d.at - start).max().expect("four");
    let swarm_cpu = cpu.ms();
    // Read right away: once all hold the file, nothing more should move.
    let seeder_sent = seeder.peer_stats().await.bytes_to_peers;
    println!("swarm: {:.0} ms wall", wall.as_secs_f64() * 1e3);
    for (d, done) in ds.iter().zip(&done) {
        let got = d.peer_stats().await.bytes_from_peers;
        println!(
            "  {}: verified at {:.0} ms wall ({:.0} ms in page), bytesFromPeers {got} ({:.2}x file)",
            d.name(),
            (done.at - start).as_secs_f64() * 1e3,
            done.page_ms,
            got as f64 / SWARM_BYTES as f64
        );
        ensure!(got >= SWARM_BYTES, "{} received only {got} bytes", d.name());
    }
    println!(
        "  seeder bytesToPeers {seeder_sent} ({:.2}x file)",
        seeder_sent as f64 / SWARM_BYTES as f64
    );
    for d in ds {
        d.close().await;
    }
    seeder.close().await;
    Ok(Swarm {
        single,
        wall,
        seeder_sent,
        single_cpu,
        swarm_cpu,
    })
}

// ------------------------------------------------------------------- helpers

/// Starts DevTools' sampling CPU profiler in each page.
async fn start_profiles(visitors: &[&Visitor]) -> anyhow::Result<()> {
    for v in visitors {
        for (cmd, params) in [
            ("Profiler.enable", json!({})),
            ("Profiler.setSamplingInterval", json!({ "interval": 200 })),
            ("Profiler.start", json!({})),
        ] {
            v.client().issue_cmd(Cdp { cmd, params }).await?;
        }
    }
    Ok(())
}

/// Stops the profilers and writes `<dir>/<run>-<name>.cpuprofile` files
/// (DevTools' Performance panel opens them).
async fn save_profiles(dir: &str, run: &str, visitors: &[(&Visitor, &str)]) -> anyhow::Result<()> {
    for (v, name) in visitors {
        let stopped = v
            .client()
            .issue_cmd(Cdp {
                cmd: "Profiler.stop",
                params: json!({}),
            })
            .await?;
        let path = format!("{dir}/{run}-{name}.cpuprofile");
        std::fs::write(&path, stopped["profile"].to_string())
            .with_context(|| format!("cannot write {path}"))?;
    }
    Ok(())
}

/// Throughput files bigger than this are shared from disk.
const ON_DISK_ABOVE: u64 = 256 << 20;

/// Deletes a file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Chooses the file at `path` in `v`'s `#file-input` and waits until the
/// page shares it; returns its address.
async fn share_from_disk(v: &Visitor, path: &std::path::Path) -> anyhow::Result<String> {
    v.wait_visible("#file-input").await;
    let start = Instant::now();
    v.client()
        .find(fantoccini::Locator::Css("#file-input"))
        .await?
        .send_keys(&path.display().to_string())
        .await?;
    let path = tests::files::wait_shared(v).await;
    println!(
        "A: shared {} MiB from disk in {} ms (hashing)",
        file_bytes() >> 20,
        start.elapsed().as_millis()
    );
    Ok(path.trim_start_matches('/').to_owned())
}

/// A Chromium whose every page runs [`PROBE`] first.
async fn timed_visitor(driver: &ChromeDriver, name: &str) -> anyhow::Result<Visitor> {
    let v = Visitor::with_args(driver, name, &[NO_BFCACHE]).await?;
    v.client()
        .issue_cmd(Cdp {
            cmd: "Page.addScriptToEvaluateOnNewDocument",
            params: json!({ "source": PROBE }),
        })
        .await
        .with_context(|| format!("{name}: cannot install the bench probe"))?;
    Ok(v)
}

/// chromedriver's pass-through to the DevTools protocol
/// (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Makes and shares a `size`-byte file in `v`'s app page; returns its
/// address.
async fn share_file(v: &Visitor, size: u64, seed: u32) -> anyhow::Result<String> {
    // The app sets window.peer once its wasm is ready.
    v.poll(
        "window.peer",
        tests::PAGE_TIMEOUT,
        "return !!window.peer",
        vec![],
        |x| (x == &json!(true)).then_some(()),
    )
    .await;
    v.js(tests::files::MAKE_FILE, vec![]).await;
    let r = v
        .client()
        .execute_async(
            SHARE_FILE,
            vec![json!(size), json!(seed), json!("bench.bin")],
        )
        .await
        .with_context(|| format!("{}: shareFile script failed", v.name()))?;
    if let Some(e) = r.get("error") {
        bail!("{}: peer.shareFile failed: {e}", v.name());
    }
    let address = r["address"].as_str().unwrap_or_default().to_owned();
    ensure!(
        tests::is_content_path(&format!("/{address}")),
        "{}: peer.shareFile resolved with {r}, not an address",
        v.name()
    );
    println!(
        "{}: shared {} MiB in {:.0} ms (hashing)",
        v.name(),
        size >> 20,
        r["ms"].as_f64().unwrap_or(f64::NAN)
    );
    Ok(address)
}

/// The end of one timed transfer.
struct Done {
    /// ms from the page's navigation start (its `performance.now()`).
    page_ms: f64,
    /// The page's wasm memory at the end, bytes (its peak).
    wasm_bytes: u64,
    /// When the bench process learnt of it.
    at: Instant,
}

/// Opens `link` in `v` and waits for the download to be verified.
async fn download(v: &Visitor, link: &str, seeder: &Visitor) -> Done {
    v.goto(link).await;
    wait_done(v, &[seeder]).await
}

/// Waits for the probe in `v`'s page to see the transfer end; on timeout
/// panics with what `v` and the `others` involved were doing.
async fn wait_done(v: &Visitor, others: &[&Visitor]) -> Done {
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    let failure = loop {
        match v.client().execute_async(WAIT_DONE, vec![]).await {
            Ok(Value::Null) if Instant::now() < deadline => continue,
            Ok(Value::Null) => break format!("not done after {TRANSFER_TIMEOUT:?}"),
            Ok(r) if r["ms"].is_number() => {
                return Done {
                    page_ms: r["ms"].as_f64().unwrap_or_default(),
                    wasm_bytes: r["mem"].as_f64().unwrap_or_default() as u64,
                    at: Instant::now(),
                }
            }
            Ok(r) => break format!("unexpected answer {r}"),
            Err(e) => break format!("waiting failed: {e}"),
        }
    };
    let mut report = format!("{}: {failure}\n{}", v.name(), dump(v).await);
    for o in others {
        report += &format!("\n{}", dump(o).await);
    }
    panic!("{report}");
}

/// A visitor's page, its state changes and its trace (the floor pages keep
/// `window.trace`, the app logs to `#log`), for failure messages.
async fn dump(v: &Visitor) -> String {
    let script = "return {
        states: window.__bench && window.__bench.states,
        trace: window.trace || [...document.querySelectorAll('#log li')].map((li) => li.textContent),
        stats: window.peer && window.peer.stats(),
      }";
    let detail = match v.client().execute(script, vec![]).await {
        Ok(d) => format!("{d:#}"),
        Err(e) => format!("(unreadable: {e})"),
    };
    format!("{}\n{detail}", v.describe().await)
}

/// Polls the broker's metric `name` until it is `want`.
async fn wait_metric(broker: &Broker, name: &str, want: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + tests::PAGE_TIMEOUT;
    loop {
        let got = broker.metric(name)?;
        if got == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "broker metric {name} is {got}, not {want}, after {:?}",
                tests::PAGE_TIMEOUT
            );
        }
        tokio::time::sleep(tests::POLL).await;
    }
}

/// CPU time of every Chromium process, from `/proc`: the transfers keep
/// this machine's cores busy, so the CPU a design spends per MiB says more
/// about it than its rate, which moves with whatever else runs.
struct CpuMeter {
    start: std::collections::HashMap<u32, u64>,
}

impl CpuMeter {
    fn start() -> Self {
        CpuMeter {
            start: chromium_ticks(),
        }
    }

    /// CPU ms spent since the start by the processes alive now (those
    /// started since count whole; those gone are lost, which only happens
    /// to pages navigated away from).
    fn ms(&self) -> f64 {
        let ticks: u64 = chromium_ticks()
            .into_iter()
            .map(|(pid, t)| t.saturating_sub(self.start.get(&pid).copied().unwrap_or(0)))
            .sum();
        ticks as f64 * 1e3 / clock_ticks_per_s()
    }
}

/// User + system clock ticks of each Chromium process (not chromedriver).
fn chromium_ticks() -> std::collections::HashMap<u32, u64> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let exe = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        let exe = String::from_utf8_lossy(exe);
        if !exe.contains("chrom") || exe.contains("chromedriver") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name: state is 3rd, utime 14th,
        // stime 15th of the whole line.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(pid, tick(11) + tick(12));
    }
    out
}

fn clock_ticks_per_s() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn mib_per_s(bytes: u64, ms: f64) -> f64 {
    bytes as f64 / MIB / (ms / 1e3)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}
