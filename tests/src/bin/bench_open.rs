//! Time to open a share link, against a plain-JS floor.
//!
//! Ours: one Chromium holds a shared 40 KB text; a second Chromium opens its
//! link again and again (about:blank in between, so each open is a fresh
//! navigation and the previous page, which held the text too, is gone).
//! Floor: `tests/floor/{holder,wanter}.html` on a second broker, the least a
//! page can do to move 40 KB over one RTCDataChannel via the broker's relay.
//! Both are timed the same way, from the page's own clock:
//! `performance.getEntriesByName('content-shown')[0].startTime`, ms since
//! navigation start. Opens alternate between the two, so load on the machine
//! hits both alike.
//!
//! `cargo run --release -p tests --bin bench_open` (root; re-executes itself
//! in a private network namespace, see `tests::netns`). `BENCH_RUNS` sets
//! the number of timed opens of each (default 20), after 2 untimed warm-ups.
//! `BENCH_TIMINGS=1` prints, after each open of ours, what the page fetched
//! (resource timings: start, end, bytes over the network) and its marks.

use tests::text::random_text;
use tests::{Broker, ChromeDriver, Visitor};

const TEXT_BYTES: usize = 40 * 1024;
const WARMUP: usize = 2;
/// Target: ours within 20% of the floor (median).
const TARGET_RATIO: f64 = 1.2;

fn main() -> anyhow::Result<()> {
    tests::netns::reexec_self();
    let runs = match std::env::var("BENCH_RUNS") {
        Ok(n) => n.parse()?,
        Err(_) => 20,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(bench(runs))
}

async fn bench(runs: usize) -> anyhow::Result<()> {
    let text = random_text(TEXT_BYTES);
    let chars = text.encode_utf16().count() as u64;
    let driver = ChromeDriver::start()?;
    println!(
        "broker: {}",
        tests::broker::broker_bin()?.canonicalize()?.display()
    );

    // Ours: the app, one holder.
    let app = Broker::start(&tests::www_dir()?, false)?;
    let holder = Visitor::new(&driver, "holder").await?;
    holder.goto(&app.url("/")).await;
    holder.type_text("#editor", &text).await;
    holder.click("#share").await;
    holder.wait_state(&["holding"]).await;
    let link = holder.url().await;
    holder.wait_holders(1).await;

    // Floor: the plain pages, one holder.
    let floor = Broker::start(&tests::floor_dir(), false)?;
    let floor_holder = Visitor::new(&driver, "floor-holder").await?;
    floor_holder.goto(&floor.url("/holder.html")).await;
    floor_holder
        .wait_attr("#status", "data-state", "ready")
        .await;
    let id = floor_holder
        .attr("#me", "data-id")
        .await
        .expect("holder id");
    floor_holder
        .js("window.setContent(arguments[0])", vec![text.clone().into()])
        .await;
    let floor_link = floor.url(&format!("/wanter.html#{id}"));

    // Without the back/forward cache: there, a page left behind stays alive,
    // frozen, with its WebSocket open, so it would still count as a holder.
    let opener =
        Visitor::with_args(&driver, "opener", &["--disable-features=BackForwardCache"]).await?;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + runs {
        // Ours.
        opener.goto("about:blank").await;
        opener.goto(&link).await;
        let t = shown(&opener, &holder).await;
        if std::env::var_os("BENCH_TIMINGS").is_some() {
            print_timings(&opener).await;
        }
        check(&opener, &text, chars, i == WARMUP).await;
        // The opener now holds the text too; make sure its page is gone
        // before the next open, so that the holder keeps serving.
        opener.wait_state(&["holding"]).await;
        holder.wait_holders(2).await;
        opener.goto("about:blank").await;
        holder.wait_holders(1).await;

        // Floor.
        opener.goto(&floor_link).await;
        let f = shown(&opener, &floor_holder).await;
        check(&opener, &text, chars, i == WARMUP).await;
        opener.goto("about:blank").await;

        let label = if i < WARMUP { " (warm-up)" } else { "" };
        println!(
            "open {:>2}: ours {t:>7.1} ms, floor {f:>7.1} ms{label}",
            i + 1
        );
        if i >= WARMUP {
            ours.push(t);
            base.push(f);
        }
    }
    opener.close().await;
    holder.close().await;
    floor_holder.close().await;

    let ready = app.metric("broker_ready_offers_total")?;
    let introductions = app.metric("broker_introductions_total")?;
    println!("ours: {ready} of {introductions} introductions carried the holder's ready offer");

    let (ours, base) = (Summary::of(ours), Summary::of(base));
    println!();
    println!("{:<8} {:>4} {:>10} {:>10}", "", "n", "median ms", "p90 ms");
    for (name, s) in [("ours", &ours), ("floor", &base)] {
        println!("{name:<8} {:>4} {:>10.1} {:>10.1}", s.n, s.median, s.p90);
    }
    let ratio = ours.median / base.median;
    println!(
        "ratio of medians (ours / floor): {ratio:.2} (target <= {TARGET_RATIO}: {})",
        if ratio <= TARGET_RATIO {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}

/// Prints the page's resource timings and marks, ms since navigation start.
async fn print_timings(page: &Visitor) {
    let timings = page
        .js(
            "const nav = performance.getEntriesByType('navigation')[0];
             const line = (e) => `${e.name.replace(location.origin, '')} ${e.startTime.toFixed(1)}..${e.responseEnd.toFixed(1)} ms, ${e.transferSize} B`;
             return [line(nav)]
               .concat(performance.getEntriesByType('resource').map(line))
               .concat(performance.getEntriesByType('mark').map((m) => `mark ${m.name} ${m.startTime.toFixed(1)} ms`));",
            vec![],
        )
        .await;
    for line in timings.as_array().into_iter().flatten() {
        println!("    {}", line.as_str().unwrap_or_default());
    }
}

/// Waits for the opener's `content-shown` mark and returns its time; if it
/// does not come, panics with both pages' state and traces.
async fn shown(opener: &Visitor, holder: &Visitor) -> f64 {
    match tokio::time::timeout(tests::PAGE_TIMEOUT, opener.wait_mark("content-shown")).await {
        Ok(ms) => ms,
        Err(_) => {
            // The floor pages keep `window.trace`; the app logs to `#log`.
            let dump = "return window.trace || [...document.querySelectorAll('#log li')]
                .map((li) => li.textContent)";
            panic!(
                "no content-shown after {:?}\n{}\ntrace: {:#}\n{}\ntrace: {:#}",
                tests::PAGE_TIMEOUT,
                opener.describe().await,
                opener.js(dump, vec![]).await,
                holder.describe().await,
                holder.js(dump, vec![]).await,
            );
        }
    }
}

/// Checks the opened page shows the whole text: its length every time,
/// every character once (`full`).
async fn check(opener: &Visitor, text: &str, chars: u64, full: bool) {
    if full {
        opener.wait_text("#viewer", text).await;
    } else {
        let got = opener
            .js(
                "return document.querySelector('#viewer').textContent.length",
                vec![],
            )
            .await;
        assert_eq!(got.as_u64(), Some(chars), "content shown is incomplete");
    }
}

struct Summary {
    n: usize,
    median: f64,
    p90: f64,
}

impl Summary {
    fn of(mut ms: Vec<f64>) -> Self {
        assert!(!ms.is_empty(), "BENCH_RUNS must be at least 1");
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        // Nearest rank.
        let p90 = ms[(n * 9).div_ceil(10) - 1];
        Self { n, median, p90 }
    }
}
