//! Delivering a site's big file: a plain `fetch` against `peer.fetchUrl`,
//! with Debian's nginx as the origin at a loaded server's rate
//! (`limit_rate 4m`, per connection; `deploy/nginx/site.conf`), all in one
//! run:
//! * plain `fetch` of the file;
//! * `fetchUrl` by a lone visitor (nobody holds it): target at most 1.1x
//!   the plain fetch's time;
//! * `fetchUrl` with 1, 2 and 3 holders online: target (1 and 3) at most 5%
//!   of the file from the origin and at most 0.5x the plain fetch's time;
//! * 4 visitors at once, nobody holding the (other) file: target, the
//!   origin sends at most 1.5x the file in all.
//!
//! Origin bytes are nginx's own (its access log); beside each phase, the
//! CPU time nginx spent per MiB it sent (from /proc).
//!
//! `cargo run --release -p tests --bin bench_site` (root; re-executes
//! itself in a private network namespace). `BENCH_SITE_MIB` sets the
//! file's size (default 64).

use serde_json::{json, Value};
use tests::files::sha256_hex;
use tests::site_fetch::{finish, received, start};
use tests::site_origin::{address_of, noise, publish, setup, SiteOrigin};

fn main() -> anyhow::Result<()> {
    tests::netns::reexec_self();
    let mib: usize = match std::env::var("BENCH_SITE_MIB") {
        Ok(n) => n.parse()?,
        Err(_) => 64,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(bench(mib))
}

/// One phase's figures.
struct Phase {
    name: String,
    ms: f64,
    origin_bytes: u64,
    origin_cpu_ms: f64,
}

/// What the origin sent for `uri` and the CPU it used, since `before`.
fn measure(origin: &SiteOrigin, uri: &str, before: (u64, f64)) -> (u64, f64) {
    (origin.sent(uri).0 - before.0, origin.cpu_ms() - before.1)
}

fn mark(origin: &SiteOrigin, uri: &str) -> (u64, f64) {
    (origin.sent(uri).0, origin.cpu_ms())
}

fn check(got: &Value, hash: &str, what: &str) -> f64 {
    assert_eq!(got["hash"], hash, "{what}: {got}");
    got["ms"].as_f64().expect("a time")
}

async fn bench(mib: usize) -> anyhow::Result<()> {
    let size = mib << 20;
    let (big, other) = (noise(size, 21), noise(size, 22));
    let (hash, other_hash) = (sha256_hex(&big), sha256_hex(&other));
    let site = publish(&[("big.bin", &big), ("other.bin", &other)]);
    let pkg = tests::www_dir()?.join("pkg");
    let s = setup(&site, &pkg, "limit_rate 4m;", 5).await;
    let (url, other_url) = (
        s.origin.site_url("/big.bin"),
        s.origin.site_url("/other.bin"),
    );
    let v = &s.visitors;
    let mut phases = Vec::new();
    let mut run = |name: &str, ms: f64, (bytes, cpu): (u64, f64)| {
        println!(
            "{name}: {ms:.0} ms, origin sent {:.1} MiB",
            bytes as f64 / (1 << 20) as f64
        );
        phases.push(Phase {
            name: name.to_owned(),
            ms,
            origin_bytes: bytes,
            origin_cpu_ms: cpu,
        });
    };

    let before = mark(&s.origin, "/big.bin");
    start(&v[0], "plain", &url, json!({ "plain": true })).await;
    let ms = check(&finish(&v[0], "plain").await, &hash, "plain fetch");
    run("plain fetch", ms, measure(&s.origin, "/big.bin", before));

    for (i, name) in [
        (1, "fetchUrl, lone visitor"),
        (2, "fetchUrl, 1 holder"),
        (3, "fetchUrl, 2 holders"),
        (4, "fetchUrl, 3 holders"),
    ] {
        let before = mark(&s.origin, "/big.bin");
        start(&v[i], "big", &url, json!({})).await;
        let ms = check(&finish(&v[i], "big").await, &hash, name);
        run(name, ms, measure(&s.origin, "/big.bin", before));
    }

    // Four at once, nobody holding the other file.
    let before = mark(&s.origin, "/other.bin");
    for visitor in &v[1..5] {
        start(visitor, "other", &other_url, json!({})).await;
    }
    let mut slowest: f64 = 0.0;
    for visitor in &v[1..5] {
        slowest = slowest.max(check(
            &finish(visitor, "other").await,
            &other_hash,
            "4 at once",
        ));
    }
    // BENCH_SITE_LOG=1: what each of the crowd took from where, and what
    // the origin sent it, request by request.
    if std::env::var_os("BENCH_SITE_LOG").is_some() {
        let address = address_of(&site, "other.bin");
        for visitor in &v[1..5] {
            let (peers, origin) = received(visitor, &address).await;
            let events = visitor
                .js(
                    "return JSON.stringify(window.events.filter((e) => e.type === 'warning').map((e) => e.message))",
                    vec![],
                )
                .await;
            println!(
                "    {}: {:.1} MiB from peers, {:.1} MiB from the origin; warnings {events}",
                visitor.name(),
                peers as f64 / (1 << 20) as f64,
                origin as f64 / (1 << 20) as f64
            );
        }
        for line in s
            .origin
            .access_log()
            .lines()
            .filter(|l| l.contains("/other.bin"))
        {
            println!("    {line}");
        }
    }
    run(
        "4 at once, no holder (slowest)",
        slowest,
        measure(&s.origin, "/other.bin", before),
    );

    let plain = phases[0].ms;
    println!();
    println!(
        "{:<32} {:>9} {:>8} {:>12} {:>10} {:>14}",
        "", "ms", "x plain", "origin MiB", "x file", "nginx ms CPU/MiB"
    );
    for p in &phases {
        let sent = p.origin_bytes as f64 / (1 << 20) as f64;
        let per_mib = if sent > 0.0 {
            p.origin_cpu_ms / sent
        } else {
            0.0
        };
        println!(
            "{:<32} {:>9.0} {:>8.2} {:>12.1} {:>10.3} {:>14.2}",
            p.name,
            p.ms,
            p.ms / plain,
            sent,
            p.origin_bytes as f64 / size as f64,
            per_mib
        );
    }
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let share = |p: &Phase| p.origin_bytes as f64 / size as f64;
    let lone = &phases[1];
    println!(
        "lone visitor {:.2}x plain (target <= 1.1: {})",
        lone.ms / plain,
        verdict(lone.ms / plain <= 1.1)
    );
    for p in [&phases[2], &phases[4]] {
        println!(
            "{}: origin {:.1}% of the file (target <= 5%: {}), {:.2}x plain (target <= 0.5: {})",
            p.name,
            100.0 * share(p),
            verdict(share(p) <= 0.05),
            p.ms / plain,
            verdict(p.ms / plain <= 0.5)
        );
    }
    let crowd = &phases[5];
    println!(
        "4 at once: the origin sent {:.2}x the file (target <= 1.5: {})",
        share(crowd),
        verdict(share(crowd) <= 1.5)
    );
    let _ = std::fs::remove_dir_all(&site);
    Ok(())
}
