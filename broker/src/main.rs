//! Command-line entry point: parses flags, sets up logging, runs the broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use broker::Config;
use clap::Parser;
use protocol::IceServer;

/// Signaling broker for browser-to-browser content sharing.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "BROKER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Folder served to browsers: index.html, scripts and the wasm package.
    #[arg(long, env = "BROKER_WWW", default_value = "www")]
    www: PathBuf,

    /// STUN/TURN URL handed to peers (repeat, or comma-separate in the
    /// environment variable). None by default: peers then use host
    /// candidates only, which works on one network.
    #[arg(long = "ice-server", env = "BROKER_ICE_SERVERS", value_delimiter = ',')]
    ice_servers: Vec<String>,

    /// Most WebSocket connections open at once; more get HTTP 503.
    #[arg(long, env = "BROKER_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,

    /// Most addresses one peer may hold at once.
    #[arg(long, env = "BROKER_MAX_HOLDINGS", default_value_t = 1024)]
    max_holdings: usize,

    /// Most addresses one peer may want at once.
    #[arg(long, env = "BROKER_MAX_WANTS", default_value_t = 256)]
    max_wants: usize,

    /// Messages queued for one peer; a peer too slow to drain them is
    /// disconnected.
    #[arg(long, env = "BROKER_OUTBOX_CAPACITY", default_value_t = 256)]
    outbox_capacity: usize,

    /// Seconds between pings to each peer (keep below a proxy's read
    /// timeout, e.g. nginx's 60 s).
    #[arg(long, env = "BROKER_PING_INTERVAL", default_value_t = 20)]
    ping_interval: u64,

    /// Seconds of silence (no message, no pong) after which a peer counts
    /// as gone and is disconnected.
    #[arg(long, env = "BROKER_IDLE_TIMEOUT", default_value_t = 45)]
    idle_timeout: u64,

    /// Messages per second one connection may send on average; more are
    /// refused with a `rate_limited` error.
    #[arg(long, env = "BROKER_MESSAGE_RATE", default_value_t = 100)]
    message_rate: u32,

    /// Messages one connection may send at once (re-announcing after a
    /// reconnect); a peer that keeps sending past as many refusals is
    /// disconnected.
    #[arg(long, env = "BROKER_MESSAGE_BURST", default_value_t = 2_000)]
    message_burst: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in journald or log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if !args.www.join("index.html").is_file() {
        tracing::warn!(www = %args.www.display(), "no index.html in the www folder; run `just build` first or pass --www");
    }
    let config = Config {
        www: args.www,
        ice_servers: if args.ice_servers.is_empty() {
            Vec::new()
        } else {
            vec![IceServer {
                urls: args.ice_servers,
                username: None,
                credential: None,
            }]
        },
        max_connections: args.max_connections,
        max_holdings: args.max_holdings,
        max_wants: args.max_wants,
        outbox_capacity: args.outbox_capacity,
        ping_interval: Duration::from_secs(args.ping_interval.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        message_rate: args.message_rate,
        message_burst: args.message_burst,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Scripts and tests read this line to learn the chosen port.
    println!("listening on http://{addr}");
    tracing::info!(%addr, "broker started");
    broker::run(listener, config, shutdown_signal()).await;
    tracing::info!("broker stopped");
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
