//! Tests of the web-sys layer in a real headless Chromium
//! (`just test-wasm`). They run inside a network namespace with a
//! non-loopback interface, which WebRTC needs for host candidates.

use std::rc::Rc;

use futures_channel::mpsc;
use futures_util::StreamExt;
use js_sys::{ArrayBuffer, Uint8Array};
use protocol::transfer::{Assembly, Frame, FrameKind};
use protocol::Manifest;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

use crate::api::Peer;
use crate::rtc::{Link, LinkEvent};

wasm_bindgen_test_configure!(run_in_browser);

/// Events of one link, tagged with which side saw them.
type Events = mpsc::UnboundedReceiver<(bool, LinkEvent)>;

fn pair() -> (Link, Link, Events) {
    let (tx, rx) = mpsc::unbounded();
    let tx_a = tx.clone();
    let a = Link::new(
        &[],
        true,
        false,
        None,
        Rc::new(move |e| drop(tx_a.unbounded_send((true, e)))),
    )
    .unwrap();
    // The answering side reuses a connection made earlier, as the page's
    // first link does.
    let fresh = web_sys::RtcPeerConnection::new().unwrap();
    let b = Link::new(
        &[],
        false,
        false,
        Some(fresh),
        Rc::new(move |e| drop(tx.unbounded_send((false, e)))),
    )
    .unwrap();
    (a, b, rx)
}

/// Connects an offerer and an answerer directly (no broker) and waits until
/// both data channels are open.
async fn connect(a: &mut Link, b: &mut Link, events: &mut Events) {
    let offer = Link::offer(a.pc.clone()).await.unwrap();
    let answer = Link::answer(b.pc.clone(), offer, || {}).await.unwrap();
    b.remote_ready();
    Link::accept_answer(a.pc.clone(), answer).await.unwrap();
    a.remote_ready();
    let (mut a_open, mut b_open) = (false, false);
    while !(a_open && b_open) {
        let (from_a, event) = events.next().await.expect("link events");
        match event {
            LinkEvent::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => {
                let other = if from_a { &mut *b } else { &mut *a };
                other.add_candidate(&candidate, sdp_mid.as_deref(), sdp_m_line_index);
            }
            LinkEvent::Channel(dc) => b.attach(dc),
            LinkEvent::Open if from_a => a_open = true,
            LinkEvent::Open => b_open = true,
            LinkEvent::Closed => panic!("link closed while connecting"),
            _ => {}
        }
    }
}

#[wasm_bindgen_test]
async fn data_channel_carries_frames_between_two_links() {
    let (mut a, mut b, mut events) = pair();
    connect(&mut a, &mut b, &mut events).await;
    assert!(a.is_open() && b.is_open());
    let object: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let dc = a.channel.clone().unwrap();
    for frame in Frame::encode_all(FrameKind::Chunk, 3, &object) {
        dc.send_with_u8_array(&frame).unwrap();
    }
    let mut assembly: Option<Assembly> = None;
    let received = loop {
        let (from_a, event) = events.next().await.expect("link events");
        let LinkEvent::Message(data) = event else {
            continue;
        };
        assert!(!from_a, "only b receives");
        let buf = data
            .dyn_into::<ArrayBuffer>()
            .expect("binary messages arrive as ArrayBuffer");
        let bytes = Uint8Array::new(&buf).to_vec();
        let frame = Frame::decode(&bytes).unwrap();
        let asm = assembly.get_or_insert_with(|| Assembly::new(frame.total, 1 << 20).unwrap());
        if let Some(done) = asm.push(&frame).unwrap() {
            break done;
        }
    };
    assert_eq!(received, object);
}

#[wasm_bindgen_test]
async fn closing_one_side_reports_closed_on_the_other() {
    let (mut a, mut b, mut events) = pair();
    connect(&mut a, &mut b, &mut events).await;
    drop(a);
    loop {
        let (from_a, event) = events.next().await.expect("link events");
        if let (false, LinkEvent::Closed) = (from_a, event) {
            break;
        }
    }
}

#[wasm_bindgen_test]
async fn shared_content_has_the_native_address_and_fetches_from_memory() {
    let peer = Peer::new(Some("ws://127.0.0.1:9/ws".into()), None).unwrap();
    let text = "hello from a test";
    let address = peer.share(text.as_bytes(), "text/plain; charset=utf-8", None);
    let expected = Manifest::describe(text.as_bytes(), "text/plain; charset=utf-8", None).address();
    assert_eq!(address, expected.to_string());
    let bytes = JsFuture::from(peer.fetch(&address).unwrap()).await.unwrap();
    assert_eq!(Uint8Array::new(&bytes).to_vec(), text.as_bytes());
    let meta = peer.manifest(&address).unwrap();
    let size = js_sys::Reflect::get(&meta, &"size".into()).unwrap();
    assert_eq!(size.as_f64(), Some(text.len() as f64));
    peer.close();
}

#[wasm_bindgen_test]
fn bad_addresses_are_refused_with_a_clear_error() {
    let peer = Peer::new(Some("ws://127.0.0.1:9/ws".into()), None).unwrap();
    let err: JsValue = peer.fetch("ABC").expect_err("an error");
    let message = js_sys::Reflect::get(&err, &"message".into())
        .unwrap()
        .as_string()
        .unwrap();
    assert!(message.contains("64 lowercase hex"), "{message}");
    peer.close();
}

#[wasm_bindgen_test]
async fn the_disk_store_reads_back_what_it_wrote_and_forgets_what_it_removed() {
    let disk = crate::disk::Disk::open()
        .await
        .expect("this Chromium has a disk store");
    let (first, second): (Vec<u8>, Vec<u8>) = (
        (0..3000u32).map(|i| (i % 251) as u8).collect(),
        (0..2000u32).map(|i| (i % 13) as u8).collect(),
    );
    let parts = js_sys::Array::of2(
        &Uint8Array::from(first.as_slice()),
        &Uint8Array::from(second.as_slice()),
    );
    let file = disk
        .write_batch("test", 0, &parts)
        .await
        .unwrap_or_else(|e| panic!("write failed: {}", e.error));
    assert_eq!(file.size(), 5000.0);
    let whole = [first, second].concat();
    let read = |from, to| {
        let read = disk.read("test", 0, from, to).unwrap();
        async move {
            JsFuture::from(read)
                .await
                .map(|b| Uint8Array::new(&b).to_vec())
        }
    };
    // Across the two parts, and past the end (cut at the end).
    assert_eq!(read(2500, 3500).await.unwrap(), whole[2500..3500]);
    assert_eq!(read(4000, 9000).await.unwrap(), whole[4000..]);
    // The file the write returned is readable too.
    let bytes = JsFuture::from(file.array_buffer()).await.unwrap();
    assert_eq!(Uint8Array::new(&bytes).to_vec(), whole);
    disk.remove("test");
    let gone = read(0, 10)
        .await
        .expect_err("a removed batch cannot be read");
    let error = js_sys::Reflect::get(&gone, &"error".into()).unwrap();
    assert!(error.as_string().is_some(), "{gone:?}");
}

fn hex_bytes<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// RFC 8032, section 7.1, tests 1 to 3 (public key, message, signature),
/// the vectors `peerpage`'s signer is tested against too.
#[wasm_bindgen_test]
async fn webcrypto_verifies_the_rfc_8032_vectors() {
    let vectors = [
        (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];
    for (public, message, signature) in vectors {
        let (public, signature) = (hex_bytes::<32>(public), hex_bytes::<64>(signature));
        let message = hex::decode(message).unwrap();
        let ok = crate::signature::verify_ed25519(&public, &message, &signature).await;
        assert!(ok.unwrap(), "vector with message {message:?}");
        let mut flipped = signature;
        flipped[10] ^= 1;
        let bad = crate::signature::verify_ed25519(&public, &message, &flipped).await;
        assert!(!bad.unwrap(), "a changed signature must not verify");
    }
}

/// The record `peerpage`'s tests check they sign: verified here for its
/// key, refused for another key and once changed.
#[wasm_bindgen_test]
async fn a_release_signed_natively_verifies_in_the_browser() {
    use protocol::release::{SignedRelease, SiteKey};
    let fixture = include_str!("../../peerpage/tests/fixtures/signed_release.json");
    let record = SignedRelease::parse(fixture.as_bytes()).unwrap();
    let key = record.release.site;
    crate::signature::verify_release(&record, &key)
        .await
        .unwrap();
    let other = SiteKey([7; 32]);
    assert!(crate::signature::verify_release(&record, &other)
        .await
        .is_err());
    let mut later = record.clone();
    later.release.seq += 1;
    let refused = crate::signature::verify_release(&later, &key).await;
    let message = format!("{:?}", refused.expect_err("a changed record"));
    assert!(message.contains("does not verify"), "{message}");
}
