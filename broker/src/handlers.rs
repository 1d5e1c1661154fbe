//! Request handlers: plain functions called by [`crate::routes`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use protocol::ContentId;
use warp::http::StatusCode;
use warp::reply::Reply;
use warp::Rejection;

use crate::admission::{admit, Refusal};
use crate::origin::Reached;
use crate::registry::Registry;
use crate::upgrade::{NotUpgrade, WsUpgrade};
use crate::{session, State};

/// Largest WebSocket message read at all. Anything between the protocol's
/// 64 KiB and this gets an error reply and the connection stays open;
/// beyond it the connection is closed with 1009 "message too big".
const HARD_MESSAGE_LIMIT: usize = 1 << 20;

/// Upgrades `/ws[?want=<address>]` to a peer session, for allowed page
/// origins and within the connection cap.
pub fn websocket<R: Registry>(
    ws: WsUpgrade,
    query: HashMap<String, String>,
    origin: Option<String>,
    reached: Reached,
    client: IpAddr,
    state: Arc<State<R>>,
) -> warp::reply::Response {
    if let Some(origin) = origin {
        if let Err(refusal) = state.config.origin_allowed(&origin, &reached) {
            state.metrics.refused_origin.fetch_add(1, Relaxed);
            tracing::debug!(%origin, ?refusal, "upgrade refused: origin not allowed");
            return warp::reply::with_status(format!("{refusal}\n"), StatusCode::FORBIDDEN)
                .into_response();
        }
    }
    let admission = match admit(
        &state.connections,
        &state.per_address,
        client,
        state.config.max_connections_per_address,
    ) {
        Ok(a) => a,
        Err(Refusal::Full) => {
            state.metrics.refused_capacity.fetch_add(1, Relaxed);
            return warp::reply::with_status(
                "broker is at its connection limit; try again shortly\n",
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .into_response();
        }
        Err(Refusal::TooManyFrom(group, max)) => {
            state.metrics.refused_per_address.fetch_add(1, Relaxed);
            tracing::debug!(%group, "upgrade refused: per-address limit");
            return warp::reply::with_status(
                format!(
                    "{group} already has {max} broker connections open, the most one address \
                     (or IPv6 /64) may; close some pages and try again\n"
                ),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .into_response();
        }
    };
    let want = query
        .get("want")
        .map(|s| s.parse::<ContentId>().map_err(|e| e.to_string()));
    ws.accept(HARD_MESSAGE_LIMIT, move |socket| {
        session::serve(socket, state, want, admission)
    })
}

/// `/metrics` in Prometheus text format.
pub fn metrics<R: Registry>(state: Arc<State<R>>) -> impl Reply {
    warp::reply::with_header(
        state.metrics.render(),
        "content-type",
        "text/plain; version=0.0.4",
    )
}

/// Lets only well-formed addresses through to the page route.
pub async fn is_address(segment: String) -> Result<(), Rejection> {
    match segment.parse::<ContentId>() {
        Ok(_) => Ok(()),
        Err(_) => Err(warp::reject::not_found()),
    }
}

/// Maps rejections to plain-text answers that say what was wrong.
pub async fn recover(err: Rejection) -> Result<impl Reply, Infallible> {
    if let Some(NotUpgrade(reason)) = err.find::<NotUpgrade>() {
        return Ok(warp::reply::with_status(
            format!(
                "bad request: {reason}; WebSocket clients connect to /ws with a standard upgrade\n"
            ),
            StatusCode::BAD_REQUEST,
        ));
    }
    let (status, text) = if err.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not found: share links look like /<64 lowercase hex characters>\n",
        )
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
    } else if err.find::<warp::reject::InvalidQuery>().is_some() {
        (StatusCode::BAD_REQUEST, "bad query string\n")
    } else {
        tracing::debug!(?err, "unhandled rejection");
        (
            StatusCode::BAD_REQUEST,
            "bad request: WebSocket clients connect to /ws with a standard upgrade\n",
        )
    };
    Ok(warp::reply::with_status(text.to_owned(), status))
}
