//! The service of one plain HTTP connection, around the broker's routes:
//! tells the connection's [`TimedIo`](crate::http_timeouts::TimedIo) when
//! requests start and end, hands the routes the TCP peer's address, and,
//! on a connection from a trusted proxy, counts the connection against the
//! address group of the client the proxy forwards for.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use ipnet::IpNet;
use warp::http::{header, HeaderValue, Request, Response, StatusCode};

use crate::admission::{AddressGroup, PerAddress, Place};
use crate::client_addr::client_addr;
use crate::http_timeouts::Activity;
use crate::metrics::Metrics;

/// The TCP peer of the connection a request came over, in the request's
/// extensions.
#[derive(Clone, Copy, Debug)]
pub struct TcpPeer(pub SocketAddr);

/// The per-address cap on plain HTTP connections.
pub struct HttpCap {
    /// Connections open per address group.
    pub per_address: Arc<PerAddress>,
    /// Most connections one group may have open.
    pub max: usize,
    /// Proxies whose forwarding headers name the client.
    pub trusted: Vec<IpNet>,
    /// Where refusals are counted.
    pub metrics: Arc<Metrics>,
}

impl HttpCap {
    /// Whether `peer` is a trusted proxy, whose connections count against
    /// the clients it forwards for rather than against itself.
    pub fn is_trusted(&self, peer: &SocketAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&peer.ip()))
    }

    /// The answer to a client over its cap: what was wrong, what to do.
    pub fn refusal_text(&self, group: AddressGroup) -> String {
        format!(
            "too many connections: {group} already has {} HTTP connections open to this broker, \
             the most one address may; close some pages or try again shortly\n",
            self.max
        )
    }
}

/// One connection's service.
pub struct ConnService<S> {
    inner: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
    cap: Arc<HttpCap>,
    /// On a proxy's connection: its place under the cap of the client it
    /// last forwarded for. (A direct client's place is taken at accept.)
    /// A std `Mutex`, held for a map update only.
    forwarded_place: Mutex<Option<Place>>,
}

impl<S> ConnService<S> {
    /// The service for a connection from `peer`.
    pub fn new(inner: S, peer: SocketAddr, activity: Arc<Activity>, cap: Arc<HttpCap>) -> Self {
        ConnService {
            inner,
            peer,
            activity,
            cap,
            forwarded_place: Mutex::new(None),
        }
    }

    /// On a trusted proxy's connection, moves its place to the group of
    /// the client this request is forwarded for; `Err` if that group is
    /// over its cap.
    fn count_forwarded<B>(&self, req: &Request<B>) -> Result<(), AddressGroup> {
        if !self.cap.is_trusted(&self.peer) {
            return Ok(());
        }
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let client = client_addr(
            self.peer.ip(),
            header("forwarded"),
            header("x-forwarded-for"),
            &self.cap.trusted,
        );
        let group = AddressGroup::of(client);
        let mut place = self.forwarded_place.lock().expect("place lock");
        if place.as_ref().map(Place::group) == Some(group) {
            return Ok(());
        }
        // Give the old place back first: the connection moves, it does
        // not count twice.
        *place = None;
        *place = Some(
            self.cap
                .per_address
                .try_take(group, self.cap.max)
                .ok_or(group)?,
        );
        Ok(())
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ConnBody<B>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        if let Err(group) = self.count_forwarded(&req) {
            tracing::debug!(%group, "HTTP request refused: per-address connection limit");
            self.cap.metrics.refused_http.fetch_add(1, Relaxed);
            let text = Bytes::from(self.cap.refusal_text(group));
            let mut res = Response::new(ConnBody::Refused(Some(text)));
            *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            let headers = res.headers_mut();
            let plain = HeaderValue::from_static("text/plain; charset=utf-8");
            headers.insert(header::CONTENT_TYPE, plain);
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            headers.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            self.activity.response_done();
            return Box::pin(std::future::ready(Ok(res)));
        }
        req.extensions_mut().insert(TcpPeer(self.peer));
        let response = self.inner.call(req);
        let done = ResponseDone(self.activity.clone());
        Box::pin(async move {
            let res = response.await?;
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                done.0.upgraded();
            }
            Ok(res.map(|body| ConnBody::Served { body, _done: done }))
        })
    }
}

/// Tells the connection its response is over when dropped.
pub struct ResponseDone(Arc<Activity>);

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.0.response_done();
    }
}

/// A response body: the routes', which marks the response done when it
/// has been sent, or a refusal's text.
pub enum ConnBody<B> {
    /// From the routes.
    Served {
        /// The routes' body.
        body: B,
        _done: ResponseDone,
    },
    /// The per-address cap's refusal.
    Refused(Option<Bytes>),
}

impl<B: Body<Data = Bytes> + Unpin> Body for ConnBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.get_mut() {
            ConnBody::Served { body, .. } => Pin::new(body).poll_frame(cx),
            ConnBody::Refused(text) => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ConnBody::Served { body, .. } => body.is_end_stream(),
            ConnBody::Refused(text) => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ConnBody::Served { body, .. } => body.size_hint(),
            ConnBody::Refused(text) => {
                SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
        }
    }
}
