//! Shared helpers for the broker's integration tests: a real broker started
//! in-process on an ephemeral port, a WebSocket client that speaks the wire
//! format as plain `serde_json::Value`s, and a tiny raw HTTP/1.1 GET.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use broker::metrics::Metrics;
use broker::registry::Registry;
use broker::Config;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};

/// How long to wait for a message that must arrive.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client must stay silent in `expect_nothing`.
pub const QUIET: Duration = Duration::from_millis(200);
/// What the test `index.html` contains.
pub const INDEX_HTML: &str = "<!doctype html><title>broker integration test page</title>\n";

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

// ---------------------------------------------------------------- broker

/// One broker serving on `127.0.0.1:<ephemeral>` inside the test's runtime.
pub struct Broker {
    pub addr: SocketAddr,
    pub www: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Resolves when the test broker should stop.
type StopSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Broker {
    /// A broker with the default config (and a fresh www folder).
    pub async fn start() -> Broker {
        Self::start_with(|_| {}).await
    }

    /// A broker with the default config adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Broker {
        Self::launch(tweak, broker::run).await
    }

    /// A broker with the default config and the given registry.
    pub async fn start_with_registry<R: Registry>(registry: R, metrics: Arc<Metrics>) -> Broker {
        Self::launch(
            |_| {},
            move |listener, config, stopped| {
                broker::run_with(listener, config, registry, metrics, stopped)
            },
        )
        .await
    }

    /// Binds port 0 and spawns `run` on it with the adjusted default config,
    /// stopping when the returned `Broker` shuts down or is dropped.
    async fn launch<F>(
        tweak: impl FnOnce(&mut Config),
        run: impl FnOnce(TcpListener, Config, StopSignal) -> F,
    ) -> Broker
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (config, www) = config(tweak);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            listener,
            config,
            Box::pin(async move {
                let _ = stopped.await;
            }),
        ));
        Broker {
            addr,
            www,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Opens `/ws` with one extra request header (e.g. `origin`); the
    /// socket, or the refusal's HTTP status and body.
    pub async fn upgrade_with(
        &self,
        header: &'static str,
        value: &str,
    ) -> Result<Ws, (u16, String)> {
        let mut req = self.url("/ws").into_client_request().unwrap();
        req.headers_mut().insert(header, value.parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ws),
            Err(WsError::Http(res)) => Err((
                res.status().as_u16(),
                String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned(),
            )),
            Err(e) => panic!("upgrade with {header}: {value}: {e}"),
        }
    }

    /// Opens `/ws` with these request headers set (replacing `host`, for
    /// one); the socket, or the refusal's HTTP status and body.
    pub async fn upgrade_with_headers(
        &self,
        headers: &[(&'static str, &str)],
    ) -> Result<Ws, (u16, String)> {
        let mut req = self.url("/ws").into_client_request().unwrap();
        for (name, value) in headers {
            req.headers_mut().insert(*name, value.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ws),
            Err(WsError::Http(res)) => Err((
                res.status().as_u16(),
                String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned(),
            )),
            Err(e) => panic!("upgrade with {headers:?}: {e}"),
        }
    }

    /// `ws://<addr><suffix>`, e.g. `url("/ws?want=...")`.
    pub fn url(&self, suffix: &str) -> String {
        format!("ws://{}{suffix}", self.addr)
    }

    /// Opens a WebSocket at `suffix` (e.g. `/ws`) and reads the welcome.
    pub async fn connect(&self, suffix: &str) -> Client {
        Client::connect(&self.url(suffix)).await
    }

    /// Opens a plain `/ws` client.
    pub async fn client(&self) -> Client {
        self.connect("/ws").await
    }

    /// Resolves the shutdown future and waits (bounded) for `run` to return.
    pub async fn shutdown(&mut self) {
        let _ = self.stop.take().expect("shutdown once").send(());
        let task = self.task.take().expect("shutdown once");
        timeout(Duration::from_secs(10), task)
            .await
            .expect("broker::run did not return within 10 s of shutdown")
            .expect("broker task panicked");
    }

    /// A raw HTTP/1.1 GET of `path` on this broker.
    pub async fn get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path).await
    }

    /// The value of an unlabelled metric from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let res = self.get("/metrics").await;
        assert_eq!(res.status, 200, "/metrics: {res:?}");
        res.body
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no metric {name} in /metrics:\n{}", res.body))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("metric {name} is not a number ({e}):\n{}", res.body))
    }

    /// Waits (bounded) until `/metrics` reports `value` for `name`. Sessions
    /// finish their cleanup a moment after the client sees the connection
    /// end, so this polls rather than reading once.
    pub async fn wait_metric(&self, name: &str, value: u64) {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let now = self.metric(name).await;
            if now == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "metric {name} stayed at {now}, expected {value}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Dropping the sender resolves the shutdown future too.
        self.stop.take();
        let _ = std::fs::remove_dir_all(&self.www);
    }
}

fn config(tweak: impl FnOnce(&mut Config)) -> (Config, PathBuf) {
    let www = std::env::temp_dir().join(format!("broker-test-www-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&www).expect("create www");
    std::fs::write(www.join("index.html"), INDEX_HTML).expect("write index.html");
    let mut config = Config {
        www: www.clone(),
        ..Config::default()
    };
    tweak(&mut config);
    (config, www)
}

// ---------------------------------------------------------------- client

/// A WebSocket client that has read its welcome.
pub struct Client {
    /// The id from the welcome.
    pub id: String,
    /// The whole welcome message.
    pub welcome: Value,
    ws: Ws,
}

impl Client {
    /// Connects to `url` and reads the welcome, which must come first.
    pub async fn connect(url: &str) -> Client {
        // Like browsers, send small frames at once (TCP_NODELAY); otherwise a
        // message with no reply (e.g. unwant) holds back the next one until
        // the broker's delayed ACK, ~40 ms.
        let (ws, _) = timeout(RECV_TIMEOUT, connect_async_with_config(url, None, true))
            .await
            .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let mut client = Client {
            id: String::new(),
            welcome: Value::Null,
            ws,
        };
        let welcome = client.recv().await;
        let id = welcome["welcome"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("the first message must be a welcome, got {welcome}"))
            .to_owned();
        client.id = id;
        client.welcome = welcome;
        client
    }

    /// Sends every value as a JSON text frame, flushed once at the end, so
    /// they arrive in as few TCP segments as the kernel makes.
    pub async fn send_batch(&mut self, values: impl IntoIterator<Item = Value>) {
        for value in values {
            let frame = Message::Text(value.to_string().into());
            self.ws.feed(frame).await.expect("send failed");
        }
        self.ws.flush().await.expect("flush failed");
    }

    /// Sends `value` as one JSON text frame.
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(value.to_string()).await;
    }

    /// Sends one text frame exactly as given.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.send(Message::text(text.into())).await;
    }

    /// Sends any frame.
    pub async fn send(&mut self, msg: Message) {
        timeout(RECV_TIMEOUT, self.ws.send(msg))
            .await
            .expect("sending timed out")
            .expect("sending failed");
    }

    /// The next text frame, exactly as received. Panics on timeout, on a
    /// non-text frame and on the end of the connection.
    pub async fn recv_text(&mut self) -> String {
        match self.next_frame(RECV_TIMEOUT).await {
            Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
            Some(other) => panic!("client {}: expected a text frame, got {other:?}", self.id),
            None => panic!(
                "client {}: nothing arrived within {RECV_TIMEOUT:?} (expected a message)",
                self.id
            ),
        }
    }

    /// The next message, parsed.
    pub async fn recv(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("client {}: server sent invalid JSON ({e}): {text}", self.id)
        })
    }

    /// The next message if one arrives within `wait`; `None` after
    /// `wait` of silence or at the end of the connection.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        match self.next_frame(wait).await? {
            Ok(Message::Text(text)) => {
                Some(serde_json::from_str(text.as_str()).unwrap_or_else(|e| {
                    panic!("client {}: server sent invalid JSON ({e}): {text}", self.id)
                }))
            }
            Ok(Message::Close(_)) | Err(_) => None,
            Ok(other) => panic!("client {}: expected a text frame, got {other:?}", self.id),
        }
    }

    /// A client on a socket whose welcome was already read (e.g. one
    /// taken apart with [`Client::into_inner`]).
    pub fn wrap(ws: Ws) -> Client {
        Client {
            id: String::new(),
            welcome: Value::Null,
            ws,
        }
    }

    /// The next `n` messages.
    pub async fn recv_n(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.recv().await);
        }
        out
    }

    /// Asserts that no frame (of any kind) arrives for `wait`.
    pub async fn expect_nothing(&mut self, wait: Duration) {
        if let Some(frame) = self.next_frame(wait).await {
            panic!(
                "client {}: expected silence for {wait:?}, got {frame:?}",
                self.id
            );
        }
    }

    /// Reads until the connection ends: `Some(code)` if the broker sent a
    /// close frame, `None` if the connection just ended (EOF or reset).
    /// Panics on a data frame or if the connection is still open after
    /// [`RECV_TIMEOUT`].
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        self.expect_close_ignoring(|_| false).await
    }

    /// Like [`Client::expect_close`], skipping text messages for which
    /// `ignore` is true.
    pub async fn expect_close_ignoring(
        &mut self,
        ignore: impl Fn(&Value) -> bool,
    ) -> Option<(u16, String)> {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!(
                    "client {}: the connection is still open after {RECV_TIMEOUT:?}",
                    self.id
                ),
                Ok(None | Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Some(
                        frame.map_or((1005, String::new()), |CloseFrame { code, reason }| {
                            (u16::from(code), reason.as_str().to_owned())
                        }),
                    )
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(Message::Text(text))))
                    if serde_json::from_str(&text).is_ok_and(|msg| ignore(&msg)) =>
                {
                    continue
                }
                Ok(Some(Ok(other))) => panic!(
                    "client {}: expected the connection to close, got {other:?}",
                    self.id
                ),
            }
        }
    }

    /// Closes the connection with a close handshake and waits until the
    /// broker has answered it (or the connection ended).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let drained = timeout(RECV_TIMEOUT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        assert!(
            drained.is_ok(),
            "client {}: close handshake timed out",
            self.id
        );
    }

    /// Drops the TCP connection without a close handshake.
    pub fn drop_connection(self) {
        drop(self.ws);
    }

    /// The underlying stream, for tests that need to split it.
    pub fn into_inner(self) -> Ws {
        self.ws
    }

    /// `holders` with this exact count for `content` must come next.
    pub async fn expect_holders(&mut self, content: &str, count: u32) {
        let msg = self.recv().await;
        assert_eq!(
            msg,
            json!({"holders": {"content": content, "count": count}}),
            "client {}: expected a holder count",
            self.id
        );
    }

    /// An introduction for `content` must come next; returns the holder.
    pub async fn expect_introduce(&mut self, content: &str) -> String {
        let msg = self.recv().await;
        introduced_holder(&msg, content).unwrap_or_else(|| {
            panic!(
                "client {}: expected an introduction to {content}, got {msg}",
                self.id
            )
        })
    }

    /// An error with `code` must come next; returns its body
    /// (`{"code":..,"message":..[,"peer":..]}`).
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let msg = self.recv().await;
        let body = msg
            .get("error")
            .unwrap_or_else(|| panic!("client {}: expected a {code} error, got {msg}", self.id));
        assert_eq!(msg.as_object().map(|o| o.len()), Some(1), "{msg}");
        assert_eq!(
            body["code"], code,
            "client {}: wrong error code in {msg}",
            self.id
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "an error must explain itself: {msg}");
        body.clone()
    }

    /// Proves the connection still works: a want of a fresh address gets its
    /// holder count (0), then the want is withdrawn again.
    pub async fn assert_usable(&mut self) {
        let content = fresh_address();
        self.send_json(&want(&content)).await;
        self.expect_holders(&content, 0).await;
        self.send_json(&unwant(&content)).await;
    }

    /// The next frame, skipping pings and pongs; `None` on timeout or end.
    async fn next_frame(&mut self, wait: Duration) -> Option<Result<Message, WsError>> {
        let deadline = Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) | Ok(None) => return None,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(frame)) => return Some(frame),
            }
        }
    }
}

/// `Some(holder)` if `msg` is exactly an introduction to `content`.
pub fn introduced_holder(msg: &Value, content: &str) -> Option<String> {
    let body = msg.get("introduce")?.as_object()?;
    if msg.as_object()?.len() != 1 || body.len() != 2 || body.get("content")? != content {
        return None;
    }
    body.get("holder")?.as_str().map(str::to_owned)
}

// ---------------------------------------------------------------- messages

/// The address of the manifest `seed` (64 lowercase hex).
pub fn address(seed: &str) -> String {
    protocol::ContentId::of_manifest_bytes(seed.as_bytes()).to_string()
}

/// An address no other test uses.
pub fn fresh_address() -> String {
    address(&uuid::Uuid::new_v4().to_string())
}

pub fn hold(content: &str) -> Value {
    json!({"hold": {"content": content}})
}

pub fn release(content: &str) -> Value {
    json!({"release": {"content": content}})
}

pub fn want(content: &str) -> Value {
    json!({"want": {"content": content}})
}

pub fn want_n(content: &str, holders: u8) -> Value {
    json!({"want": {"content": content, "holders": holders}})
}

pub fn unwant(content: &str) -> Value {
    json!({"unwant": {"content": content}})
}

pub fn signal(to: &str, data: Value) -> Value {
    json!({"signal": {"to": to, "data": data}})
}

// ---------------------------------------------------------------- http

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Status line and headers.
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `GET <path>` over a fresh connection with `Connection: close`, so the
/// response ends with the connection. Avoids an HTTP client dependency.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_request(addr, "GET", path).await
}

/// One HTTP/1.1 request with any method, over a fresh connection.
pub async fn http_request(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let raw = timeout(RECV_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect for HTTP");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        raw
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} timed out"));
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: malformed response: {raw:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: bad status line in {head:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "GET {path}: chunked responses are not decoded by this helper"
    );
    HttpResponse {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}
