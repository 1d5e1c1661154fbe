//! Slow and idle HTTP clients: the header and idle timeouts, and the
//! per-address cap on plain HTTP connections (an IPv6 /64 counts as one
//! address), over real TCP sockets.

mod common;
mod raw;

use std::time::Duration;

use common::Broker;
use raw::{connect_from, read_until_closed, request};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// Slack for timers that fire on a loaded machine.
const LATE: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_half_sent_request_gets_408_after_the_header_timeout_however_it_trickles() {
    let header = Duration::from_millis(400);
    let broker = Broker::start_with(|c| c.http_header_timeout = header).await;
    let stream = connect_from("127.0.0.1", broker.addr).await;
    let (mut rd, mut wr) = stream.into_split();
    let start = Instant::now();
    // Headers that never end, one line every 100 ms.
    let trickle = tokio::spawn(async move {
        wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: broker.test\r\n")
            .await
            .unwrap();
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr
                .write_all(format!("x-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(
        raw::WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut rd, &mut got),
    )
    .await;
    let took = start.elapsed();
    trickle.abort();
    assert!(closed.is_ok(), "the half-sent request was never cut off");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(got.contains("send the whole request at once"), "{got:?}");
    assert!(
        took >= header && took < header + LATE,
        "closed after {took:?}"
    );
    assert_eq!(broker.metric("broker_http_header_timeouts_total").await, 1);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout_not_the_header_one() {
    let (header, idle) = (Duration::from_millis(200), Duration::from_millis(900));
    let broker = Broker::start_with(|c| {
        c.http_header_timeout = header;
        c.http_idle_timeout = idle;
    })
    .await;
    let mut conn = connect_from("127.0.0.1", broker.addr).await;
    // Kept alive: two requests on one connection.
    for _ in 0..2 {
        let res = request(&mut conn, "GET", "/healthz", &[]).await;
        assert_eq!((res.status, res.text().as_str()), (200, "ok\n"), "{res:?}");
    }
    let (sent, took) = read_until_closed(&mut conn).await;
    assert!(sent.is_empty(), "an idle close says nothing: {sent:?}");
    // The server's clock started a moment before ours.
    let early = Duration::from_millis(100);
    assert!(
        took + early >= idle && took < idle + LATE,
        "closed after {took:?}"
    );

    // A connection that never sends anything: the same.
    let mut silent = connect_from("127.0.0.1", broker.addr).await;
    let (sent, took) = read_until_closed(&mut silent).await;
    assert!(sent.is_empty(), "{sent:?}");
    assert!(
        took + early >= idle && took < idle + LATE,
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn slowloris_hits_its_address_cap_and_healthz_answers_everyone_else() {
    let broker = Broker::start_with(|c| {
        c.max_http_connections_per_address = 4;
        c.http_header_timeout = Duration::from_secs(30);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.1", broker.addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    // Accepted in order: by now the four hold their places.
    for _ in 0..10 {
        let mut over = connect_from("127.0.0.1", broker.addr).await;
        let (sent, _) = read_until_closed(&mut over).await;
        let sent = String::from_utf8_lossy(&sent);
        assert!(sent.starts_with("HTTP/1.1 429"), "{sent:?}");
        assert!(
            sent.contains("127.0.0.1 already has 4 HTTP connections")
                && sent.contains("try again shortly"),
            "{sent:?}"
        );
    }
    // Other addresses are served as usual.
    for from in ["127.0.0.2", "127.0.0.3"] {
        let mut other = connect_from(from, broker.addr).await;
        let res = request(&mut other, "GET", "/healthz", &[]).await;
        assert_eq!(res.status, 200, "from {from}: {res:?}");
    }
    // A place comes back when its connection ends.
    drop(held.pop());
    let deadline = Instant::now() + raw::WAIT;
    loop {
        let mut again = connect_from("127.0.0.1", broker.addr).await;
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (sent, _) = read_until_closed(&mut again).await;
        if sent.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the place never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(broker.metric("broker_refused_http_total").await >= 10);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_http_cap_counts_each_clients_slash_64() {
    let broker = Broker::start_with(|c| {
        c.max_http_connections_per_address = 2;
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let mut a = connect_from("127.0.0.1", broker.addr).await;
    let mut b = connect_from("127.0.0.1", broker.addr).await;
    assert_eq!(healthz_for(&mut a, "2001:db8::1").await.status, 200);
    assert_eq!(healthz_for(&mut b, "2001:db8::2").await.status, 200);
    // A third address of the same /64 is over the cap.
    let mut c = connect_from("127.0.0.1", broker.addr).await;
    let res = healthz_for(&mut c, "2001:db8::ffff:3").await;
    assert_eq!(res.status, 429, "{res:?}");
    assert!(
        res.text()
            .contains("2001:db8::/64 already has 2 HTTP connections"),
        "{res:?}"
    );
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    let (_, _) = read_until_closed(&mut c).await;
    // The next /64 is another client.
    let mut d = connect_from("127.0.0.1", broker.addr).await;
    assert_eq!(healthz_for(&mut d, "2001:db8:0:1::1").await.status, 200);
    // A kept-alive proxy connection counts for whom it forwarded last.
    assert_eq!(healthz_for(&mut a, "2001:db8:0:2::1").await.status, 200);
    let mut e = connect_from("127.0.0.1", broker.addr).await;
    assert_eq!(healthz_for(&mut e, "2001:db8::3").await.status, 200);
}

/// `GET /healthz` on a proxy's connection, forwarded for `client`.
async fn healthz_for(conn: &mut tokio::net::TcpStream, client: &str) -> raw::Response {
    request(conn, "GET", "/healthz", &[("x-forwarded-for", client)]).await
}

#[tokio::test]
async fn websockets_are_not_subject_to_the_http_timeouts() {
    let broker = Broker::start_with(|c| {
        c.http_header_timeout = Duration::from_millis(100);
        c.http_idle_timeout = Duration::from_millis(200);
        c.max_http_connections_per_address = 1;
    })
    .await;
    let mut a = broker.client().await;
    // The upgraded connection no longer counts as HTTP: a second fits
    // (once the first's HTTP connection has handed its socket over).
    let deadline = Instant::now() + raw::WAIT;
    while let Err(e) = tokio_tungstenite::connect_async(broker.url("/ws")).await {
        assert!(Instant::now() < deadline, "no second WebSocket: {e}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut b = broker.client().await;
    // Real time: the timeouts are on real sockets.
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.assert_usable().await;
    b.assert_usable().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_or_half_sent_connections() {
    let mut broker =
        Broker::start_with(|c| c.http_header_timeout = Duration::from_millis(500)).await;
    let mut idle = connect_from("127.0.0.1", broker.addr).await;
    assert_eq!(request(&mut idle, "GET", "/healthz", &[]).await.status, 200);
    let mut half = connect_from("127.0.0.1", broker.addr).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let start = Instant::now();
    broker.shutdown().await;
    assert!(
        start.elapsed() < LATE,
        "shutdown took {:?}",
        start.elapsed()
    );
    read_until_closed(&mut idle).await;
    read_until_closed(&mut half).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_cut_off_after_the_idle_timeout() {
    let idle = Duration::from_millis(500);
    // Far more than the socket buffers on both sides hold.
    let size = 32 << 20;
    let broker = Broker::start_with(|c| {
        c.http_idle_timeout = idle;
        std::fs::write(c.www.join("big.bin"), vec![7u8; size]).unwrap();
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(broker.addr).await.unwrap();
    conn.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Read nothing for well past the idle timeout.
    tokio::time::sleep(idle * 3).await;
    let (got, _) = read_until_closed(&mut conn).await;
    assert!(
        got.len() < size,
        "the whole file arrived ({} bytes): the stalled response was not cut off",
        got.len()
    );
}
