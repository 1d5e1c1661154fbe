//! Every kind of bad input gets a precise error, and the connection keeps
//! working afterwards (except for frames too big to read at all).

mod common;

use common::{fresh_address, hold, want, Broker, Client, QUIET};
use futures_util::{SinkExt, StreamExt};
use protocol::signaling::MAX_MESSAGE_BYTES;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Sends `text`, expects a `code` error, then proves the connection works.
async fn refused(client: &mut Client, text: &str, code: &str) -> serde_json::Value {
    client.send_text(text).await;
    let err = client.expect_error(code).await;
    assert!(
        err.get("peer").is_none(),
        "only unknown_peer names a peer: {err}"
    );
    client.assert_usable().await;
    err
}

#[tokio::test]
async fn invalid_json_is_bad_json() {
    let broker = Broker::start().await;
    let mut c = broker.client().await;
    for text in ["{not json", "", "   ", "{\"want\":", "[1,2", "nul", "\u{0}"] {
        let err = refused(&mut c, text, "bad_json").await;
        assert!(
            err["message"].as_str().unwrap().contains("not valid JSON"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn an_unknown_message_type_is_unknown_type() {
    let broker = Broker::start().await;
    let mut c = broker.client().await;
    let content = fresh_address();
    for text in [
        r#"{"teleport":{}}"#.to_owned(),
        format!(r#"{{"Hold":{{"content":"{content}"}}}}"#),
        format!(r#"{{"fetch":{{"content":"{content}"}}}}"#),
        r#""teleport""#.to_owned(),
    ] {
        let err = refused(&mut c, &text, "unknown_type").await;
        assert!(
            err["message"].as_str().unwrap().contains("expected one of"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_missing_or_mistyped_field_is_bad_message() {
    let broker = Broker::start().await;
    let mut c = broker.client().await;
    let content = fresh_address();
    let peer = uuid::Uuid::new_v4();
    for text in [
        r#"{"want":{}}"#.to_owned(),
        r#"{"hold":{}}"#.to_owned(),
        format!(r#"{{"signal":{{"to":"{peer}"}}}}"#),
        r#"{"signal":{"data":{}}}"#.to_owned(),
        r#"{"signal":{"to":"not-a-uuid","data":{}}}"#.to_owned(),
        format!(r#"{{"want":{{"content":"{content}","holders":"3"}}}}"#),
        format!(r#"{{"want":{{"content":"{content}","holders":300}}}}"#),
        format!(r#"{{"hold":{{"content":"{content}","extra":1}}}}"#),
        r#"{"want":null}"#.to_owned(),
        r#"{"release":[]}"#.to_owned(),
        r#""want""#.to_owned(),
    ] {
        refused(&mut c, &text, "bad_message").await;
    }
}

#[tokio::test]
async fn a_malformed_address_is_bad_address() {
    let broker = Broker::start().await;
    let mut c = broker.client().await;
    let good = fresh_address();
    for bad in [
        good.to_uppercase(),
        good[..63].to_owned(),
        format!("{good}0"),
        format!("{}g", &good[..63]),
        format!("0x{}", &good[..62]),
        String::new(),
        "x".repeat(1000),
    ] {
        for msg in [
            hold(&bad),
            want(&bad),
            json!({"release": {"content": bad}}),
            json!({"unwant": {"content": bad}}),
        ] {
            let err = refused(&mut c, &msg.to_string(), "bad_address").await;
            let text = err["message"].as_str().unwrap();
            assert!(text.contains("64 lowercase hex"), "{text}");
            // The error never echoes a huge input.
            assert!(text.len() < 400, "error message is {} bytes", text.len());
        }
    }
}

/// `{"want":{"content":"<address>"}}` padded with trailing whitespace (still
/// valid JSON) to exactly `len` bytes.
fn padded_want(content: &str, len: usize) -> String {
    let mut text = want(content).to_string();
    assert!(text.len() <= len);
    text.extend(std::iter::repeat_n(' ', len - text.len()));
    text
}

#[tokio::test]
async fn a_text_frame_over_64_kib_is_too_large_and_the_connection_stays_open() {
    let broker = Broker::start().await;
    let mut c = broker.client().await;
    let content = fresh_address();

    // Exactly at the limit is fine.
    c.send_text(padded_want(&content, MAX_MESSAGE_BYTES)).await;
    c.expect_holders(&content, 0).await;

    // One byte over is not, and nothing of it is acted on.
    let other = fresh_address();
    c.send_text(padded_want(&other, MAX_MESSAGE_BYTES + 1))
        .await;
    let err = c.expect_error("too_large").await;
    assert!(err["message"].as_str().unwrap().contains("65537"), "{err}");
    c.assert_usable().await;

    // Well over (but under the 1 MiB read limit): same.
    let big = format!(r#"{{"hold":{{"content":"{}"}}}}"#, "a".repeat(900 * 1024));
    refused(&mut c, &big, "too_large").await;
    let _h = {
        let mut h = broker.client().await;
        h.send_json(&hold(&other)).await;
        h.expect_holders(&other, 1).await;
        h
    };
    c.expect_nothing(QUIET).await;
}

#[tokio::test]
async fn a_frame_over_1_mib_closes_the_connection() {
    let broker = Broker::start().await;
    let bystander_content = fresh_address();
    let mut bystander = broker.client().await;
    bystander.send_json(&want(&bystander_content)).await;
    bystander.expect_holders(&bystander_content, 0).await;

    let c = broker.client().await;
    let (mut sink, mut stream) = c.into_inner().split();
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(1 << 20));
    // Send in the background: the broker stops reading mid-frame, so this
    // send may fail with a reset instead of completing.
    let sender = tokio::spawn(async move {
        let _ = sink.send(Message::text(huge)).await;
        sink
    });
    let ended = tokio::time::timeout(common::RECV_TIMEOUT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => break Some(frame),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("expected the connection to close, got {other:?}"),
                Some(Err(_)) | None => break None,
            }
        }
    })
    .await
    .expect("the connection is still open after a frame over 1 MiB");
    // 1009 "message too big" when the close frame makes it through before the
    // reset; a connection that merely ended is acceptable too.
    if let Some(frame) = ended {
        let CloseFrame { code, reason } = frame.expect("a close frame with a code");
        assert_eq!(u16::from(code), 1009, "close code (reason {reason:?})");
    }
    let _ = sender.await;

    // The broker forgot the peer and serves everyone else as before.
    broker.wait_metric("broker_peers", 1).await;
    bystander.assert_usable().await;
    let mut next = broker.client().await;
    next.assert_usable().await;
}

#[tokio::test]
async fn a_binary_frame_is_a_binary_error() {
    let broker = Broker::start().await;
    let mut c = broker.client().await;
    let content = fresh_address();
    for payload in [
        vec![],
        vec![0u8, 1, 2, 255],
        want(&content).to_string().into_bytes(),
    ] {
        c.send(Message::binary(payload)).await;
        let err = c.expect_error("binary").await;
        assert!(err["message"].as_str().unwrap().contains("text"), "{err}");
        c.assert_usable().await;
    }
}

#[tokio::test]
async fn a_ping_is_answered_and_changes_nothing() {
    let broker = Broker::start().await;
    let mut c = broker.client().await;
    c.send(Message::Ping(b"hi"[..].into())).await;
    // The pong is skipped by the helper; no protocol message follows.
    c.expect_nothing(QUIET).await;
    c.assert_usable().await;
}

#[tokio::test]
async fn an_unknown_peer_is_unknown_peer_and_the_connection_stays_usable() {
    let broker = Broker::start().await;
    let mut c = broker.client().await;
    for _ in 0..3 {
        let nobody = uuid::Uuid::new_v4().to_string();
        c.send_json(&json!({"signal": {"to": nobody, "data": {"kind": "answer", "sdp": ""}}}))
            .await;
        let err = c.expect_error("unknown_peer").await;
        assert_eq!(err["peer"], nobody.as_str(), "{err}");
        c.assert_usable().await;
    }
}

#[tokio::test]
async fn errors_are_counted_by_code() {
    let broker = Broker::start().await;
    let mut c = broker.client().await;
    refused(&mut c, "{", "bad_json").await;
    refused(&mut c, "{", "bad_json").await;
    refused(&mut c, r#"{"nope":{}}"#, "unknown_type").await;
    let metrics = broker.get("/metrics").await.body;
    assert!(
        metrics.contains("broker_errors_total{code=\"bad_json\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("broker_errors_total{code=\"unknown_type\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("broker_errors_total{code=\"binary\"} 0"),
        "{metrics}"
    );
}
