//! Command-line entry point: parses flags, sets up logging, runs the broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use broker::turn::Turn;
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

    /// TURN URL whose credentials the broker mints per peer, coturn
    /// `use-auth-secret` style (repeat, or comma-separate in the environment
    /// variable). Needs --turn-secret or --turn-secret-file.
    #[arg(long = "turn-url", env = "BROKER_TURN_URLS", value_delimiter = ',')]
    turn_urls: Vec<String>,

    /// Secret shared with the TURN server (coturn `static-auth-secret`).
    /// Prefer the environment variable or --turn-secret-file: command lines
    /// are visible to other users.
    #[arg(long, env = "BROKER_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,

    /// File holding the TURN secret (surrounding whitespace ignored).
    #[arg(long, env = "BROKER_TURN_SECRET_FILE", conflicts_with = "turn_secret")]
    turn_secret_file: Option<PathBuf>,

    /// Seconds a minted TURN credential stays valid (at least 60, and four
    /// ping intervals). Peers get fresh ones over their WebSocket at half
    /// of this; links already relayed outlive them.
    #[arg(long, env = "BROKER_TURN_TTL", default_value_t = 600)]
    turn_ttl: u64,

    /// Page origin allowed to open a broker WebSocket besides the broker's
    /// own pages, e.g. https://app.example (repeat, or comma-separate in the
    /// environment variable); `*` allows any. Browsers on other origins get
    /// HTTP 403. Clients that send no Origin (not browsers) are not affected.
    #[arg(
        long = "allow-origin",
        env = "BROKER_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,

    /// The origin browsers load the app from, scheme included, e.g.
    /// https://share.example behind a TLS proxy. Pages open WebSockets only
    /// from it (or --allow-origin); the Host header is not trusted. Without
    /// it, only pages of the IP address or localhost the broker is reached
    /// at may: a domain name could be an attacker's, rebound to the broker.
    #[arg(long, env = "BROKER_PUBLIC_ORIGIN", value_parser = parse_origin)]
    public_origin: Option<broker::origin::Origin>,

    /// Seconds a client may take from a request's first byte to the end of
    /// its headers; slower requests get HTTP 408 and are closed.
    #[arg(long, env = "BROKER_HTTP_HEADER_TIMEOUT", default_value_t = 10)]
    http_header_timeout: u64,

    /// Seconds an HTTP connection may wait for its next request (or a
    /// response for the client to read it) before it is closed.
    #[arg(long, env = "BROKER_HTTP_IDLE_TIMEOUT", default_value_t = 60)]
    http_idle_timeout: u64,

    /// Most plain HTTP connections open at once from one client address (an
    /// IPv6 /64 counts as one); more are refused with HTTP 429. Upgraded
    /// WebSockets count under --max-connections-per-address instead.
    #[arg(
        long,
        env = "BROKER_MAX_HTTP_CONNECTIONS_PER_ADDRESS",
        default_value_t = 64
    )]
    max_http_connections_per_address: usize,

    /// Most WebSocket connections open at once; more get HTTP 503.
    #[arg(long, env = "BROKER_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,

    /// Most WebSocket connections open at once from one client address (an
    /// IPv6 /64 counts as one); more get HTTP 429.
    #[arg(
        long,
        env = "BROKER_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    max_connections_per_address: usize,

    /// Proxy address or network (e.g. 127.0.0.1 or 10.0.0.0/8) whose
    /// Forwarded / X-Forwarded-For headers give the client address for logs
    /// and limits (repeat, or comma-separate in the environment variable).
    /// Those headers from anyone else are ignored.
    #[arg(long = "trusted-proxy", env = "BROKER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxies: Vec<ipnet::IpNet>,

    /// Most addresses one peer may hold at once.
    #[arg(long, env = "BROKER_MAX_HOLDINGS", default_value_t = 1024)]
    max_holdings: usize,

    /// Most addresses one peer may want at once.
    #[arg(long, env = "BROKER_MAX_WANTS", default_value_t = 256)]
    max_wants: usize,

    /// A peer's own messages (replies, introductions) queued for it; a peer
    /// too slow to drain them is disconnected. Signals relayed to it from
    /// other peers have a pool as big; past it they are refused to their
    /// senders.
    #[arg(long, env = "BROKER_OUTBOX_CAPACITY", default_value_t = 256)]
    outbox_capacity: usize,

    /// The same in bytes.
    #[arg(long, env = "BROKER_OUTBOX_BYTES", default_value_t = 1 << 20)]
    outbox_bytes: usize,

    /// Signals from one sender queued for one recipient; more are refused
    /// to the sender (`peer_busy`) until the recipient reads them.
    #[arg(long, env = "BROKER_SENDER_SHARE", default_value_t = 32)]
    sender_share: usize,

    /// The same in bytes.
    #[arg(long, env = "BROKER_SENDER_SHARE_BYTES", default_value_t = 64 << 10)]
    sender_share_bytes: usize,

    /// Holdings and wants of all the pages of one client address (an IPv6
    /// /64 counts as one) together; each costs the broker about 325 bytes.
    #[arg(long, env = "BROKER_MAX_REGISTRATIONS_PER_ADDRESS", default_value_t = broker::registry::MAX_REGISTRATIONS_PER_ADDRESS)]
    max_registrations_per_address: usize,

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
    let turn = turn_config(&args)?;
    let config = Config {
        turn,
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
        allowed_origins: args.allowed_origins,
        public_origin: args.public_origin,
        http_header_timeout: Duration::from_secs(args.http_header_timeout.max(1)),
        http_idle_timeout: Duration::from_secs(args.http_idle_timeout.max(1)),
        max_http_connections_per_address: args.max_http_connections_per_address,
        max_connections: args.max_connections,
        max_connections_per_address: args.max_connections_per_address,
        trusted_proxies: args.trusted_proxies.clone(),
        max_holdings: args.max_holdings,
        max_wants: args.max_wants,
        outbox_capacity: args.outbox_capacity,
        outbox_bytes: args.outbox_bytes,
        sender_share: args.sender_share,
        sender_share_bytes: args.sender_share_bytes,
        max_registrations_per_address: args.max_registrations_per_address,
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

/// An address (a /32 or /128 network) or a network in CIDR notation.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR network like 10.0.0.0/8"))
}

/// An origin like https://share.example.
fn parse_origin(s: &str) -> Result<broker::origin::Origin, String> {
    s.parse()
        .map_err(|e: broker::origin::BadOrigin| e.to_string())
}

/// TURN settings from the flags: URLs and a secret go together.
fn turn_config(args: &Args) -> anyhow::Result<Option<Turn>> {
    let secret = match (&args.turn_secret, &args.turn_secret_file) {
        (Some(s), _) => Some(s.trim().to_owned()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the TURN secret from {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    match (args.turn_urls.is_empty(), secret) {
        (true, None) => Ok(None),
        (false, Some(secret)) if !secret.is_empty() => Ok(Some(Turn {
            urls: args.turn_urls.clone(),
            secret,
            // Renewed at the first ping past half the lifetime.
            ttl: Duration::from_secs(args.turn_ttl.max(60).max(4 * args.ping_interval)),
        })),
        (false, _) => anyhow::bail!(
            "--turn-url needs a non-empty --turn-secret or --turn-secret-file (coturn's static-auth-secret)"
        ),
        (true, Some(_)) => {
            anyhow::bail!("--turn-secret needs at least one --turn-url to hand to peers")
        }
    }
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
