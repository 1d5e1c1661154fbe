//! Plain HTTP routes: health, share-link pages, 404s, `/ws` without an
//! upgrade, the connection cap.

mod common;

use std::time::Duration;

use common::{address, http_get, http_request, Broker, INDEX_HTML};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Error as WsError;

#[tokio::test]
async fn healthz_is_ok() {
    let broker = Broker::start().await;
    let res = broker.get("/healthz").await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body, "ok\n");
}

#[tokio::test]
async fn a_share_link_serves_the_app_page() {
    let broker = Broker::start().await;
    for path in [format!("/{}", address("a")), format!("/{}", address("b"))] {
        let res = broker.get(&path).await;
        assert_eq!(res.status, 200, "{path}: {res:?}");
        assert_eq!(res.body, INDEX_HTML, "{path}");
        let ty = res.header("content-type").unwrap_or_default();
        assert!(ty.starts_with("text/html"), "{path}: content-type {ty:?}");
    }
    // Static files from www are served too.
    std::fs::write(broker.www.join("app.js"), "console.log(1);\n").unwrap();
    let res = broker.get("/app.js").await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body, "console.log(1);\n");
    // HEAD answers like GET, without a body.
    let res = http_request(broker.addr, "HEAD", "/app.js").await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body, "");
}

#[tokio::test]
async fn a_path_that_is_not_an_address_is_404_with_a_hint() {
    let broker = Broker::start().await;
    let addr = address("c");
    for path in [
        "/not-an-address".to_owned(),
        format!("/{}", addr.to_uppercase()),
        format!("/{}", &addr[..63]),
        format!("/{addr}/extra"),
        "/missing.js".to_owned(),
    ] {
        let res = broker.get(&path).await;
        assert_eq!(res.status, 404, "{path}: {res:?}");
        assert!(
            res.body.contains("64 lowercase hex"),
            "{path}: {:?}",
            res.body
        );
    }
}

#[tokio::test]
async fn ws_without_an_upgrade_is_a_client_error() {
    let broker = Broker::start().await;
    let res = broker.get("/ws").await;
    assert!((400..500).contains(&res.status), "{res:?}");
    assert!(
        res.body.contains("/ws"),
        "the answer says how to connect: {:?}",
        res.body
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let broker = Broker::start().await;
    let _c = broker.client().await;
    let res = broker.get("/metrics").await;
    assert_eq!(res.status, 200);
    assert!(
        res.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{res:?}"
    );
    assert!(
        res.body
            .contains("# TYPE broker_peers gauge\nbroker_peers 1\n"),
        "{}",
        res.body
    );
    assert!(res.body.contains("broker_addresses 0\n"), "{}", res.body);
}

#[tokio::test]
async fn the_connection_cap_refuses_with_503_until_a_slot_frees() {
    let broker = Broker::start_with(|c| c.max_connections = 2).await;
    let a = broker.client().await;
    let _b = broker.client().await;

    match tokio_tungstenite::connect_async(broker.url("/ws")).await {
        Err(WsError::Http(res)) => {
            assert_eq!(res.status(), 503);
            let body =
                String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("connection limit"), "{body:?}");
        }
        Err(e) => panic!("expected a 503 refusal, got {e}"),
        Ok(_) => panic!("a third connection was accepted over a cap of 2"),
    }
    // Plain HTTP is not subject to the cap.
    assert_eq!(http_get(broker.addr, "/healthz").await.status, 200);

    // Once a peer leaves, its slot is free again. The slot is released when
    // the session has fully finished, a moment after the close handshake.
    a.close().await;
    let deadline = Instant::now() + common::RECV_TIMEOUT;
    loop {
        match tokio_tungstenite::connect_async(broker.url("/ws")).await {
            Ok(_) => break,
            Err(WsError::Http(res)) if res.status() == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("the slot was never freed: {e}"),
        }
    }
}
