//! The signaling broker.
//!
//! Browsers connect over one WebSocket (`/ws`). The broker gives each a
//! [`PeerId`](protocol::PeerId), relays WebRTC handshake payloads between
//! peers (stamping the real sender), and keeps a content index: who holds
//! which address, who wants it, and how many hold it. Content itself never
//! passes through here; no message type can carry it.
//!
//! [`run`] serves everything on a bound listener until `shutdown` resolves;
//! `main.rs` only parses flags and calls it.

pub mod admission;
pub mod app_release;
pub mod client_addr;
pub mod config;
pub mod handlers;
pub mod http_server;
pub mod http_service;
pub mod http_timeouts;
pub mod metrics;
pub mod origin;
pub mod rate;
pub mod read_ahead;
pub mod registry;
pub mod routes;
pub mod security_headers;
pub mod session;
pub mod sites;
pub mod turn;
pub mod upgrade;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use config::Config;
use metrics::Metrics;
use registry::{LocalRegistry, Registry};

/// Everything a request handler needs, behind one cheap-to-clone handle.
pub struct State<R> {
    /// Peer topics and the content index.
    pub registry: R,
    /// Settings from the command line.
    pub config: Config,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Flips to `true` when the broker is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// One permit per open WebSocket: the connection cap.
    pub connections: Arc<Semaphore>,
    /// Open WebSockets per client address.
    pub per_address: Arc<admission::PerAddress>,
    /// Sites' latest releases and their followers.
    pub sites: sites::Sites,
}

/// Serves the broker on `listener` with the in-process registry until
/// `shutdown` resolves, then tells every peer to reconnect and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let metrics = Arc::new(Metrics::default());
    let registry =
        LocalRegistry::with_limits(metrics.clone(), config.max_holdings, config.max_wants)
            .with_address_budget(config.max_registrations_per_address);
    run_with(listener, config, registry, metrics, shutdown).await
}

/// Like [`run`], with any [`Registry`] implementation.
pub async fn run_with<R: Registry>(
    listener: TcpListener,
    config: Config,
    registry: R,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Accepted sockets inherit TCP_NODELAY on Linux. Signaling is many small
    // messages on the critical path of opening a link; Nagle's algorithm
    // would hold each one back behind the previous one's delayed ACK.
    if let Err(e) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY; relayed messages may be delayed");
    }
    if config.public_origin.is_none() {
        tracing::warn!(
            "no --public-origin: pages may open WebSockets only when the broker is reached by \
             an IP address or localhost; under a domain name (behind a proxy), set \
             --public-origin https://<your domain>"
        );
    }
    let release = app_release::AppRelease::load(&config.www).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serve the app; serving no page");
        app_release::AppRelease::from_files(Vec::new())
    });
    if !release.has_page() {
        tracing::warn!(www = %config.www.display(), "no index.html: the app's page will not be served");
    }
    tracing::info!(release = release.id(), "app release");
    let headers = security_headers::SecurityHeaders::for_page(release.page_html());
    let timeouts =
        http_timeouts::Timeouts::new(config.http_header_timeout, config.http_idle_timeout)
            .counted_in(metrics.clone());
    let cap = http_service::HttpCap {
        per_address: Arc::default(),
        max: config.max_http_connections_per_address,
        trusted: config.trusted_proxies.clone(),
        metrics: metrics.clone(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(State {
        registry,
        connections: Arc::new(Semaphore::new(config.max_connections)),
        per_address: Arc::default(),
        sites: sites::Sites::default(),
        config,
        metrics,
        shutdown: stop_rx,
    });
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: asking peers to reconnect");
        // Sessions watch this and close with "service restart" so that
        // peers reconnect to the next broker on their own.
        let _ = stop_tx.send(true);
    };
    let service = hyper_util::service::TowerToHyperService::new(warp::service(routes::routes(
        state.clone(),
        &headers,
        Arc::new(release),
    )));
    http_server::serve(listener, service, timeouts, cap, signal).await;
    // Upgraded WebSockets outlive the HTTP server; give their sessions a
    // moment to send the close frame and clean up.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while state
        .metrics
        .peers
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
