//! One simulated visitor: a WebDriver session, which is its own Chromium
//! process with its own fresh profile.
//!
//! The helpers panic on failure (they are assertions); every panic names the
//! visitor and describes its page: URL, `#status` state and text, holders.

use std::time::{Duration, Instant};

use anyhow::Context;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::{ChromeDriver, PAGE_TIMEOUT, POLL};

/// Chromium: `$CHROME_BIN`, else the real binary behind Debian's
/// `/usr/bin/chromium` wrapper (which only adds flags we do not want).
fn chrome_bin() -> String {
    if let Ok(bin) = std::env::var("CHROME_BIN") {
        return bin;
    }
    let real = "/usr/lib/chromium/chromium";
    if std::path::Path::new(real).is_file() {
        real.into()
    } else {
        "/usr/bin/chromium".into()
    }
}

/// Payload bytes a page moved over data channels (`window.peer.stats()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStats {
    /// Received from other browsers.
    pub bytes_from_peers: u64,
    /// Sent to other browsers.
    pub bytes_to_peers: u64,
    /// Data channels that opened, fetching or serving.
    pub channels_opened: u64,
}

/// Asserts that a `len`-byte text went from `holder` to `fetcher` over data
/// channels, while the broker's WebSocket traffic during the fetch
/// (`ws_bytes`, in and out) stayed below it: content never goes through
/// the broker.
pub fn assert_peer_to_peer(len: u64, holder: PeerStats, fetcher: PeerStats, ws_bytes: f64) {
    assert!(
        fetcher.bytes_from_peers >= len,
        "B received only {} bytes over data channels for a {len}-byte text",
        fetcher.bytes_from_peers
    );
    assert!(
        holder.bytes_to_peers >= len,
        "A sent only {} bytes over data channels for a {len}-byte text",
        holder.bytes_to_peers
    );
    assert!(
        ws_bytes < len as f64,
        "the broker relayed {ws_bytes} WebSocket bytes while B loaded a {len}-byte text: \
         content must not go through the broker"
    );
}

/// One browser.
pub struct Visitor {
    name: String,
    client: Client,
}

impl Visitor {
    /// Starts a new Chromium process (WebDriver session) named `name` in
    /// messages.
    pub async fn new(driver: &ChromeDriver, name: &str) -> anyhow::Result<Self> {
        Self::with_args(driver, name, &[]).await
    }

    /// [`Visitor::new`] with extra Chromium command-line switches.
    pub async fn with_args(
        driver: &ChromeDriver,
        name: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::launch(driver, name, extra, None).await
    }

    /// [`Visitor::new`] whose downloads are saved, without asking, in
    /// `dir`.
    pub async fn with_downloads(
        driver: &ChromeDriver,
        name: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let prefs = json!({
            "download.default_directory": dir,
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
        });
        Self::launch(driver, name, &[], Some(prefs)).await
    }

    async fn launch(
        driver: &ChromeDriver,
        name: &str,
        extra: &[&str],
        prefs: Option<Value>,
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "--no-sandbox",
            "--headless=new",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            // Keep every visitor's timers and rendering running at full
            // speed, as for a foreground tab.
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            "--window-size=1200,900",
            // No --user-data-dir: then chromedriver makes a fresh temporary
            // profile per session (in the driver's TMPDIR, which its guard
            // removes) *and* starts on a blank page; with our own profile
            // Chromium starts on its new tab page, which stalls the first
            // WebDriver command for up to ~10 s without network.
        ];
        args.extend_from_slice(extra);
        let mut options = json!({ "binary": chrome_bin(), "args": args });
        if let Some(prefs) = prefs {
            options["prefs"] = prefs;
        }
        let caps = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "script": 120_000, "pageLoad": 120_000, "implicit": 0 },
            "goog:chromeOptions": options,
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let client = tokio::time::timeout(Duration::from_secs(120), builder.connect(&driver.url()))
            .await
            .with_context(|| format!("visitor {name}: no WebDriver session after 120 s"))?
            .with_context(|| format!("visitor {name}: cannot start Chromium via chromedriver"))?;
        Ok(Self {
            name: name.to_owned(),
            client,
        })
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying WebDriver client, for anything not covered here.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits for its `load` event.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!("{}: cannot open {url}: {e}", self.name);
        }
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => panic!("{}: cannot read the URL: {e}", self.name),
        }
    }

    /// The path of the current URL.
    pub async fn path(&self) -> String {
        self.js("return location.pathname", vec![])
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns
    /// what it returns.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        match self.client.execute(script, args).await {
            Ok(v) => v,
            Err(e) => panic!(
                "{}: script failed: {e}\nscript: {script}\npage: {}",
                self.name,
                self.describe().await
            ),
        }
    }

    /// Calls `window.peer.<method>(args…)` once the page has made its peer
    /// (the app makes it after the wasm loads, which may be after the load
    /// event `goto` waits for).
    pub async fn call_peer(&self, method: &str, args: Vec<Value>) {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             const args = Array.from(arguments).slice(0, -1);
             const until = Date.now() + 30000;
             (function go() {{
               if (window.peer) {{ window.peer.{method}(...args); done(true); }}
               else if (Date.now() > until) done('no window.peer after 30 s');
               else setTimeout(go, 20);
             }})();"
        );
        match self.client.execute_async(&script, args).await {
            Ok(Value::Bool(true)) => {}
            other => panic!(
                "{}: peer.{method} failed: {other:?}\npage: {}",
                self.name,
                self.describe().await
            ),
        }
    }

    /// Types `text` into the field at `selector` and checks the field then
    /// holds exactly `text`. All but the last character are inserted at once
    /// (with an `input` event; typing 40 KB key by key takes minutes); the
    /// last one is a real key press.
    pub async fn type_text(&self, selector: &str, text: &str) {
        self.wait_visible(selector).await;
        let mut head = text.to_owned();
        let last = head.pop().map(String::from).unwrap_or_default();
        self.js(
            "const el = document.querySelector(arguments[0]);
             el.focus();
             el.value = arguments[1];
             el.setSelectionRange(el.value.length, el.value.length);
             el.dispatchEvent(new Event('input', { bubbles: true }));",
            vec![json!(selector), json!(head)],
        )
        .await;
        if !last.is_empty() {
            let el = self.find(selector).await;
            if let Err(e) = el.send_keys(&last).await {
                panic!("{}: cannot type into {selector}: {e}", self.name);
            }
        }
        let same = self
            .js(
                "return document.querySelector(arguments[0]).value === arguments[1]",
                vec![json!(selector), json!(text)],
            )
            .await;
        assert_eq!(
            same,
            json!(true),
            "{}: {selector} does not hold the typed text",
            self.name
        );
    }

    async fn find(&self, selector: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(selector)).await {
            Ok(el) => el,
            Err(e) => panic!(
                "{}: no element {selector}: {e}\npage: {}",
                self.name,
                self.describe().await
            ),
        }
    }

    /// Clicks the element at `selector` (waiting for it to be visible).
    pub async fn click(&self, selector: &str) {
        self.wait_visible(selector).await;
        if let Err(e) = self.find(selector).await.click().await {
            panic!(
                "{}: cannot click {selector}: {e}\npage: {}",
                self.name,
                self.describe().await
            );
        }
    }

    /// Attribute `name` of the first element matching `selector`, `None` if
    /// either is missing.
    pub async fn attr(&self, selector: &str, name: &str) -> Option<String> {
        let v = self
            .js(
                "const el = document.querySelector(arguments[0]);
                 return el && el.getAttribute(arguments[1]);",
                vec![json!(selector), json!(name)],
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// `textContent` of the first element matching `selector`.
    pub async fn text(&self, selector: &str) -> Option<String> {
        let v = self
            .js(
                "const el = document.querySelector(arguments[0]);
                 return el && el.textContent;",
                vec![json!(selector)],
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// `#status[data-state]`.
    pub async fn state(&self) -> Option<String> {
        self.attr("#status", "data-state").await
    }

    /// `window.peer.stats()`.
    pub async fn peer_stats(&self) -> PeerStats {
        let v = self
            .js(
                "const s = window.peer.stats();
                 return [Number(s.bytesFromPeers), Number(s.bytesToPeers), Number(s.channelsOpened)];",
                vec![],
            )
            .await;
        let n = |i: usize| {
            v[i].as_f64()
                .unwrap_or_else(|| panic!("{}: bad peer.stats(): {v}", self.name))
                as u64
        };
        PeerStats {
            bytes_from_peers: n(0),
            bytes_to_peers: n(1),
            channels_opened: n(2),
        }
    }

    /// A one-line description of the page for failure messages. Never
    /// panics.
    pub async fn describe(&self) -> String {
        let script = "const s = document.querySelector('#status');
            const h = document.querySelector('#holders');
            const v = document.querySelector('#viewer');
            return {
              url: location.href,
              state: s && s.getAttribute('data-state'),
              status: s && s.textContent.trim().slice(0, 300),
              holders: h && h.getAttribute('data-count'),
              viewerChars: v && v.textContent.length,
            };";
        match self.client.execute(script, vec![]).await {
            Ok(v) => format!("{} {v}", self.name),
            Err(e) => format!("{} (page unreadable: {e})", self.name),
        }
    }

    /// Polls `script` (with `args`) every [`POLL`] until `done` accepts its
    /// result, for at most `timeout`. Script errors (e.g. mid-navigation)
    /// count as "not yet". Panics with `what`, the last value or error, and
    /// the page description.
    pub async fn poll<T>(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: Vec<Value>,
        mut done: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        let mut last: String;
        loop {
            let left = timeout.saturating_sub(start.elapsed()) + Duration::from_secs(5);
            match tokio::time::timeout(left, self.client.execute(script, args.clone())).await {
                Ok(Ok(v)) => match done(&v) {
                    Some(t) => return t,
                    None => last = format!("last value: {v}"),
                },
                Ok(Err(e)) => last = format!("last error: {e}"),
                Err(_) => last = "a script call hung".into(),
            }
            if start.elapsed() >= timeout {
                panic!(
                    "{}: timed out after {timeout:?} waiting for {what}; {last}\npage: {}",
                    self.name,
                    self.describe().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until an element matches `selector`.
    pub async fn wait_selector(&self, selector: &str) {
        self.poll(
            &format!("an element {selector}"),
            PAGE_TIMEOUT,
            "return !!document.querySelector(arguments[0])",
            vec![json!(selector)],
            |v| v.as_bool().filter(|b| *b),
        )
        .await;
    }

    /// Waits until an element matches `selector` and is rendered (not
    /// `hidden`, nor inside something hidden).
    pub async fn wait_visible(&self, selector: &str) {
        self.poll(
            &format!("a visible element {selector}"),
            PAGE_TIMEOUT,
            "const el = document.querySelector(arguments[0]);
             return !!el && el.getClientRects().length > 0;",
            vec![json!(selector)],
            |v| v.as_bool().filter(|b| *b),
        )
        .await;
    }

    /// Waits until attribute `attr` of `selector` is one of `expected`;
    /// returns the value seen.
    pub async fn wait_attr_in(&self, selector: &str, attr: &str, expected: &[&str]) -> String {
        self.wait_attr_in_within(selector, attr, expected, PAGE_TIMEOUT)
            .await
    }

    /// [`Visitor::wait_attr_in`] for at most `timeout`.
    pub async fn wait_attr_in_within(
        &self,
        selector: &str,
        attr: &str,
        expected: &[&str],
        timeout: Duration,
    ) -> String {
        self.poll(
            &format!("{selector}[{attr}] in {expected:?}"),
            timeout,
            "const el = document.querySelector(arguments[0]);
             return el && el.getAttribute(arguments[1]);",
            vec![json!(selector), json!(attr)],
            |v| {
                v.as_str()
                    .filter(|s| expected.contains(s))
                    .map(str::to_owned)
            },
        )
        .await
    }

    /// Waits until attribute `attr` of `selector` equals `expected`.
    pub async fn wait_attr(&self, selector: &str, attr: &str, expected: &str) {
        self.wait_attr_in(selector, attr, &[expected]).await;
    }

    /// Waits until `#status[data-state]` is one of `states`; returns it.
    pub async fn wait_state(&self, states: &[&str]) -> String {
        self.wait_attr_in("#status", "data-state", states).await
    }

    /// Waits until `#holders[data-count]` is `n`.
    pub async fn wait_holders(&self, n: u32) {
        self.wait_attr("#holders", "data-count", &n.to_string())
            .await;
    }

    /// Waits until the `textContent` of `selector` has the length of
    /// `expected`, then asserts it is exactly `expected`.
    pub async fn wait_text(&self, selector: &str, expected: &str) {
        let len = expected.encode_utf16().count();
        self.poll(
            &format!("{selector} to hold the {len}-character text"),
            PAGE_TIMEOUT,
            "const el = document.querySelector(arguments[0]);
             return el && el.textContent.length;",
            vec![json!(selector)],
            |v| (v.as_u64() == Some(len as u64)).then_some(()),
        )
        .await;
        let got = self.text(selector).await.unwrap_or_default();
        if got != expected {
            let at = got
                .chars()
                .zip(expected.chars())
                .take_while(|(a, b)| a == b)
                .count();
            panic!(
                "{}: {selector} has {} bytes, expected {}; first difference at char {at}: \
                 got {:?}, expected {:?}",
                self.name,
                got.len(),
                expected.len(),
                got.chars().skip(at).take(40).collect::<String>(),
                expected.chars().skip(at).take(40).collect::<String>(),
            );
        }
    }

    /// Waits (in the page, without polling over WebDriver) for the first
    /// `performance.mark(name)` and returns its `startTime`: ms since the
    /// navigation started.
    pub async fn wait_mark(&self, name: &str) -> f64 {
        let script = "const [name, done] = arguments;
            const get = () => performance.getEntriesByName(name, 'mark')[0];
            const e = get();
            if (e) return done(e.startTime);
            new PerformanceObserver((list, obs) => {
              const e = get();
              if (e) { obs.disconnect(); done(e.startTime); }
            }).observe({ type: 'mark' });";
        match self.client.execute_async(script, vec![json!(name)]).await {
            Ok(v) => v
                .as_f64()
                .unwrap_or_else(|| panic!("{}: mark {name} has no startTime: {v}", self.name)),
            Err(e) => panic!(
                "{}: no performance mark {name}: {e}\npage: {}",
                self.name,
                self.describe().await
            ),
        }
    }

    /// Ends the session, which quits this Chromium process (its pages and
    /// connections go away as when a visitor closes the browser).
    pub async fn close(self) {
        if let Err(e) = self.client.clone().close().await {
            panic!("{}: cannot end the WebDriver session: {e}", self.name);
        }
    }
}
