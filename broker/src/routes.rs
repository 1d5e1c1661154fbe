//! warp filters: which request goes to which handler.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use warp::Filter;

use ipnet::IpNet;

use crate::app_release::{AppRelease, RELEASE_PREFIX, REVALIDATE};
use crate::client_addr::{client_addr, client_scheme};
use crate::handlers;
use crate::http_service::TcpPeer;
use crate::origin::Reached;
use crate::registry::Registry;
use crate::security_headers::SecurityHeaders;
use crate::upgrade;
use crate::State;

/// Every route the broker serves. The app's responses (the page, share
/// links, static files) carry `headers.app()`; every response, errors
/// included, carries `headers.every()`. The page and the app's files are
/// `release`'s; other files in `--www` are served from disk under their
/// own names.
pub fn routes<R: Registry>(
    state: Arc<State<R>>,
    headers: &SecurityHeaders,
    release: Arc<AppRelease>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let www = state.config.www.clone();
    let trusted = state.config.trusted_proxies.clone();
    let ws = warp::path("ws")
        .and(warp::path::end())
        .and(upgrade::ws_upgrade())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("origin"))
        .and(reached(trusted.clone()))
        .and(client_address(trusted))
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
    // HEAD too: proxies and uptime checks probe with it.
    let get = || warp::get().or(warp::head()).unify();
    // The page at `/`, `/index.html` and share links `/<address>` (it reads
    // the address from its own URL).
    let share_link = warp::path::param::<String>()
        .and(warp::path::end())
        .and_then(handlers::is_address)
        .untuple_one();
    let has_page = {
        let release = release.clone();
        warp::any()
            .and_then(move || {
                let ok = release.has_page();
                async move { ok.then_some(()).ok_or_else(warp::reject::not_found) }
            })
            .untuple_one()
    };
    let page = warp::path::end()
        .or(warp::path("index.html").and(warp::path::end()))
        .unify()
        .or(share_link)
        .unify()
        .and(get())
        .and(has_page)
        .and(warp::header::optional::<String>("if-none-match"))
        .map({
            let release = release.clone();
            move |etags: Option<String>| release.page(etags.as_deref())
        });
    let released = warp::path(RELEASE_PREFIX)
        .and(warp::path::param::<String>())
        .and(warp::path::tail())
        .and(get())
        .map(move |id: String, tail: warp::path::Tail| release.released(&id, tail.as_str()));
    let files = get()
        .and(warp::fs::dir(www))
        .with(warp::reply::with::header("cache-control", REVALIDATE));
    let app = page
        .or(released)
        .or(files)
        .with(warp::reply::with::headers(headers.app()));
    ws.or(metrics)
        .or(healthz)
        .or(app)
        .recover(handlers::recover)
        .with(warp::reply::with::headers(headers.every()))
        .with(warp::log::custom(|info| {
            tracing::debug!(method = %info.method(), path = info.path(), status = info.status().as_u16(), "request");
        }))
}

/// The TCP peer's address (unspecified if the server did not say).
fn tcp_peer() -> impl Filter<Extract = (IpAddr,), Error = Infallible> + Clone {
    warp::ext::optional::<TcpPeer>()
        .map(|peer: Option<TcpPeer>| peer.map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |p| p.0.ip()))
}

/// The client's address: the TCP peer, or whom a trusted proxy forwards for
/// (see [`client_addr`]).
fn client_address(
    trusted: Vec<IpNet>,
) -> impl Filter<Extract = (IpAddr,), Error = warp::Rejection> + Clone {
    tcp_peer()
        .and(warp::header::optional::<String>("forwarded"))
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .map(
            move |peer: IpAddr, forwarded: Option<String>, xff: Option<String>| {
                client_addr(peer, forwarded.as_deref(), xff.as_deref(), &trusted)
            },
        )
}

/// How the request reached the broker, for the Origin check: the scheme
/// (what a trusted proxy says, else `http`) and the `Host` header.
fn reached(
    trusted: Vec<IpNet>,
) -> impl Filter<Extract = (Reached,), Error = warp::Rejection> + Clone {
    tcp_peer()
        .and(warp::header::optional::<String>("forwarded"))
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .and(warp::header::optional::<String>("host"))
        .map(
            move |peer: IpAddr,
                  forwarded: Option<String>,
                  proto: Option<String>,
                  host: Option<String>| Reached {
                scheme: client_scheme(peer, forwarded.as_deref(), proto.as_deref(), &trusted),
                host,
            },
        )
}

fn with_state<R: Registry>(
    state: Arc<State<R>>,
) -> impl Filter<Extract = (Arc<State<R>>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}
