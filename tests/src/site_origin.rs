//! A site's origin for the site-delivery tests: nginx serving a published
//! folder with the operators' configuration, `deploy/nginx/site.conf`
//! (its `# replace:` values substituted), beside a second server block
//! for the test page, on another port: the page, the site's files and the
//! broker are three origins. The access log records every response's
//! body bytes, to count what the origin sent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

use crate::nginx::{free_addr, fresh_dir, substitute, NginxProcess};
use crate::{Broker, ChromeDriver, Visitor};

/// The operators' server block for a site.
pub fn site_conf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/site.conf")
}

/// A running nginx serving a site and a page, stopped on drop.
pub struct SiteOrigin {
    process: NginxProcess,
    site: SocketAddr,
    page: SocketAddr,
}

impl SiteOrigin {
    /// Serves `site` (a published folder) and `page` (the test page and the
    /// wasm package). `site_directives` go into the site's `location /`
    /// (e.g. `limit_rate 4m;`, or `max_ranges 0;` for an origin that
    /// ignores ranges).
    pub fn start(site: &Path, page: &Path, site_directives: &str) -> anyhow::Result<Self> {
        let dir = fresh_dir("site-nginx")?;
        let (site_addr, page_addr) = (free_addr()?, free_addr()?);
        let deploy = std::fs::read_to_string(site_conf())
            .with_context(|| format!("cannot read {}", site_conf().display()))?;
        let server = substitute(
            &deploy,
            &[
                ("listen 80;", format!("listen {site_addr};")),
                ("root /var/www/site;", format!("root {};", site.display())),
                (
                    "    location / {\n",
                    format!("    location / {{\n        {site_directives}\n"),
                ),
            ],
            &site_conf(),
        )?;
        std::fs::write(dir.join("site.conf"), server)?;
        let d = dir.display();
        let conf = format!(
            "pid {d}/nginx.pid;
error_log {d}/error.log info;
worker_processes 1;
events {{ worker_connections 512; }}
http {{
    types {{ text/html html; application/javascript js; application/wasm wasm; text/css css;
             application/json json; application/octet-stream bin; image/png png; }}
    log_format bytes '$server_port $request_method $uri $status $body_bytes_sent $msec $http_range';
    access_log {d}/access.log bytes;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/site.conf;
    server {{
        listen {page_addr};
        root {};
    }}
}}
",
            page.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let process = NginxProcess::spawn(dir, &conf_path, &[site_addr, page_addr])?;
        let origin = SiteOrigin {
            process,
            site: site_addr,
            page: page_addr,
        };
        Ok(origin)
    }

    /// A URL of the site.
    pub fn site_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.site)
    }

    /// A URL of the page server.
    pub fn page_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.page)
    }

    /// The page server's origin, for the broker's `--allow-origin`.
    pub fn page_origin(&self) -> String {
        format!("http://{}", self.page)
    }

    /// Body bytes the site sent for `uri` so far, and in how many
    /// responses.
    pub fn sent(&self, uri: &str) -> (u64, usize) {
        let port = self.site.port().to_string();
        let log = self.access_log();
        let mut total = (0, 0);
        for line in log.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() >= 5 && f[0] == port && f[2] == uri {
                total.0 += f[4].parse::<u64>().unwrap_or(0);
                total.1 += 1;
            }
        }
        total
    }

    /// CPU time nginx (its master and workers) has used so far, in ms.
    pub fn cpu_ms(&self) -> f64 {
        let master = self.process.pid();
        let mut ticks = 0u64;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // Fields after the command name, which is in parentheses.
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let pid: u32 = head
                .split(' ')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let f: Vec<&str> = rest.split(' ').collect();
            let ppid: u32 = f.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            if pid == master || ppid == master {
                let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                // utime and stime, fields 14 and 15 of the whole line.
                ticks += n(11) + n(12);
            }
        }
        ticks as f64 * 10.0
    }

    /// The access log so far.
    pub fn access_log(&self) -> String {
        self.process.access_log()
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        self.process.error_log()
    }
}

/// Bytes that do not compress or repeat.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// A fresh folder under the system's temp dir (named by the clock: tests
/// run in namespaces of their own, where process ids repeat).
pub fn fresh_folder(name: &str) -> PathBuf {
    fresh_dir(&format!("site-{name}")).expect("a temporary folder")
}

/// The test page (`tests/site`) beside the wasm package in `pkg`, readable
/// by nginx's workers.
pub fn page_dir(pkg: &Path) -> PathBuf {
    let dir = fresh_folder("page");
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("site");
    for f in ["page.html", "page.js"] {
        std::fs::copy(here.join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    for entry in std::fs::read_dir(pkg).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join("pkg").join(entry.file_name())).unwrap();
        }
    }
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    dir
}

/// A published site holding `files`, indexed with `peerpage manifest`.
pub fn publish(files: &[(&str, &[u8])]) -> PathBuf {
    let dir = fresh_folder("site");
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    index_folder(&dir);
    // nginx's workers run unprivileged.
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    dir
}

/// Runs `peerpage manifest dir`, which must succeed.
pub fn index_folder(dir: &Path) {
    let peerpage = crate::broker::workspace_bin("peerpage", "PEERPAGE_BIN").unwrap();
    let out = Command::new(peerpage)
        .arg("manifest")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Signs a release of `dir` with a fresh key (`peerpage keygen` into
/// `keys`, then `peerpage release`); returns the site's public key.
pub fn release_folder(dir: &Path, keys: &Path) -> String {
    let peerpage = crate::broker::workspace_bin("peerpage", "PEERPAGE_BIN").unwrap();
    let key = keys.join("site.key");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(&peerpage).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let public = if key.exists() {
        String::new()
    } else {
        let said = run(&["keygen".as_ref(), key.as_os_str()]);
        said.lines().last().unwrap_or_default().to_owned()
    };
    run(&[
        "release".as_ref(),
        dir.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(dir).status();
    public
}

/// The address the site's index gives `path`.
pub fn address_of(site: &Path, path: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(site.join("peerpage.json")).unwrap()).unwrap();
    index["files"][path]["address"].as_str().unwrap().to_owned()
}

/// nginx serving `site` with `directives` (see [`SiteOrigin::start`]) and
/// the page with the wasm package in `pkg`, a broker that accepts the
/// page's origin, and `n` visitors (one Chromium each) on the page.
pub struct Setup {
    pub origin: SiteOrigin,
    _broker: Broker,
    _driver: ChromeDriver,
    pub visitors: Vec<Visitor>,
}

pub async fn setup(site: &Path, pkg: &Path, directives: &str, n: usize) -> Setup {
    let page = page_dir(pkg);
    let origin = SiteOrigin::start(site, &page, directives).unwrap();
    let allow = origin.page_origin();
    let broker = Broker::start_with(
        &crate::www_dir().unwrap(),
        "127.0.0.1:0",
        false,
        &["--allow-origin", &allow],
    )
    .unwrap();
    let driver = ChromeDriver::start().unwrap();
    let ws = broker.url("/ws").replace("http://", "ws://");
    let mut visitors = Vec::new();
    for i in 0..n {
        let v = Visitor::new(&driver, &format!("visitor-{i}"))
            .await
            .unwrap();
        v.goto(&origin.page_url(&format!("/page.html?broker={ws}")))
            .await;
        visitors.push(v);
    }
    Setup {
        origin,
        _broker: broker,
        _driver: driver,
        visitors,
    }
}
