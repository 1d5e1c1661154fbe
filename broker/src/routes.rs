//! warp filters: which request goes to which handler.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use warp::Filter;

use ipnet::IpNet;

use crate::client_addr::client_addr;
use crate::handlers;
use crate::registry::Registry;
use crate::upgrade;
use crate::State;

/// Every route the broker serves.
pub fn routes<R: Registry>(
    state: Arc<State<R>>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let www = state.config.www.clone();
    let ws = warp::path("ws")
        .and(warp::path::end())
        .and(upgrade::ws_upgrade())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .and(client_address(state.config.trusted_proxies.clone()))
        .and(with_state(state.clone()))
        .map(handlers::websocket);
    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state(state.clone()))
        .map(handlers::metrics);
    let healthz = warp::path("healthz")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| "ok\n");
    // A share link `/<address>` serves the app page, which reads the address
    // from its own URL.
    let page = warp::path::param::<String>()
        .and(warp::path::end())
        .and(warp::get())
        .and_then(handlers::is_address)
        .untuple_one()
        .and(warp::fs::file(www.join("index.html")));
    // HEAD too: proxies and uptime checks probe with it.
    let files = warp::get().or(warp::head()).unify().and(warp::fs::dir(www));
    ws.or(metrics)
        .or(healthz)
        .or(page)
        .or(files)
        .recover(handlers::recover)
        .with(warp::log::custom(|info| {
            tracing::debug!(method = %info.method(), path = info.path(), status = info.status().as_u16(), "request");
        }))
}

/// The client's address: the TCP peer, or whom a trusted proxy forwards for
/// (see [`client_addr`]).
fn client_address(
    trusted: Vec<IpNet>,
) -> impl Filter<Extract = (IpAddr,), Error = warp::Rejection> + Clone {
    warp::addr::remote()
        .and(warp::header::optional::<String>("forwarded"))
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .map(
            move |remote: Option<SocketAddr>, forwarded: Option<String>, xff: Option<String>| {
                let peer = remote.map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |a| a.ip());
                client_addr(peer, forwarded.as_deref(), xff.as_deref(), &trusted)
            },
        )
}

fn with_state<R: Registry>(
    state: Arc<State<R>>,
) -> impl Filter<Extract = (Arc<State<R>>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}
