//! Command-line entry point: parses flags, sets up logging, runs the broker.

use std::net::SocketAddr;
use std::path::PathBuf;

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

    /// Most WebSocket connections open at once.
    #[arg(long, env = "BROKER_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
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
        ..Config::default()
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
