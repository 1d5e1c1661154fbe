//! A thin wrapper over one `RTCPeerConnection` and its data channel.
//!
//! It knows nothing of content: it turns browser events into [`LinkEvent`]s
//! for whoever owns the link, and owns its listeners so that dropping the
//! link detaches them.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use js_sys::{Array, Reflect};
use protocol::serve::LOW_WATER;
use protocol::IceServer;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit,
    RtcDataChannelType, RtcIceCandidateInit, RtcIceGatheringState, RtcIceServer, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

use crate::error::Result;

/// Data-channel label; one channel per connection carries everything.
const CHANNEL_LABEL: &str = "content";

/// What a link reports to its owner.
pub enum LinkEvent {
    /// A local ICE candidate to send to the other side.
    Candidate {
        /// `candidate` line.
        candidate: String,
        /// `sdpMid`.
        sdp_mid: Option<String>,
        /// `sdpMLineIndex`.
        sdp_m_line_index: Option<u16>,
    },
    /// The answering side received the offerer's data channel.
    Channel(RtcDataChannel),
    /// The data channel is open.
    Open,
    /// A data-channel message: an `ArrayBuffer` or a string.
    Message(JsValue),
    /// The send buffer drained below `protocol::serve::LOW_WATER`.
    BufferLow,
    /// The connection failed or closed.
    Closed,
}

/// Callback for a link's events.
pub type OnEvent = Rc<dyn Fn(LinkEvent)>;

/// One WebRTC connection to another peer.
pub struct Link {
    /// The connection.
    pub pc: RtcPeerConnection,
    /// Its data channel, once created or received.
    pub channel: Option<RtcDataChannel>,
    remote_set: bool,
    pending: Vec<RtcIceCandidateInit>,
    on_event: OnEvent,
    listeners: Vec<EventListener>,
}

impl Link {
    /// A new connection using `ice_servers`, on `fresh` if given (an
    /// unused connection made earlier) or on a new one. The offerer also
    /// creates the data channel here, so that the offer describes it.
    pub fn new(
        ice_servers: &[IceServer],
        offerer: bool,
        relay_only: bool,
        fresh: Option<RtcPeerConnection>,
        on_event: OnEvent,
    ) -> Result<Link> {
        let config = RtcConfiguration::new();
        let servers = Array::new();
        for s in ice_servers {
            let server = RtcIceServer::new();
            let urls: Array = s.urls.iter().map(|u| JsValue::from_str(u)).collect();
            server.set_urls(&urls);
            if let Some(u) = &s.username {
                server.set_username(u);
            }
            if let Some(c) = &s.credential {
                server.set_credential(c);
            }
            servers.push(&server);
        }
        config.set_ice_servers(&servers);
        if relay_only {
            config.set_ice_transport_policy(web_sys::RtcIceTransportPolicy::Relay);
        }
        let pc = match fresh {
            Some(pc) if pc.set_configuration_with_configuration(&config).is_ok() => pc,
            _ => RtcPeerConnection::new_with_configuration(&config)?,
        };
        let mut link = Link {
            pc,
            channel: None,
            remote_set: false,
            pending: Vec::new(),
            on_event,
            listeners: Vec::new(),
        };
        link.listen_connection();
        if offerer {
            let init = RtcDataChannelInit::new();
            init.set_ordered(true);
            let dc = link
                .pc
                .create_data_channel_with_data_channel_dict(CHANNEL_LABEL, &init);
            link.attach(dc);
        }
        Ok(link)
    }

    fn listen_connection(&mut self) {
        let on = self.on_event.clone();
        self.listeners
            .push(EventListener::new(&self.pc, "icecandidate", move |e| {
                let Some(e) = e.dyn_ref::<RtcPeerConnectionIceEvent>() else {
                    return;
                };
                // A null candidate marks the end of gathering; nothing to send.
                if let Some(c) = e.candidate() {
                    if !c.candidate().is_empty() {
                        on(LinkEvent::Candidate {
                            candidate: c.candidate(),
                            sdp_mid: c.sdp_mid(),
                            sdp_m_line_index: c.sdp_m_line_index(),
                        });
                    }
                }
            }));
        let on = self.on_event.clone();
        let pc = self.pc.clone();
        self.listeners.push(EventListener::new(
            &self.pc,
            "connectionstatechange",
            move |_| match pc.connection_state() {
                RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed => {
                    on(LinkEvent::Closed)
                }
                _ => {}
            },
        ));
        let on = self.on_event.clone();
        self.listeners
            .push(EventListener::new(&self.pc, "datachannel", move |e| {
                if let Some(e) = e.dyn_ref::<RtcDataChannelEvent>() {
                    on(LinkEvent::Channel(e.channel()));
                }
            }));
    }

    /// Adopts a data channel: binary as `ArrayBuffer`, events forwarded.
    pub fn attach(&mut self, dc: RtcDataChannel) {
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        dc.set_buffered_amount_low_threshold(LOW_WATER);
        let on = self.on_event.clone();
        self.listeners
            .push(EventListener::new(&dc, "open", move |_| {
                on(LinkEvent::Open)
            }));
        let on = self.on_event.clone();
        self.listeners
            .push(EventListener::new(&dc, "message", move |e| {
                if let Some(e) = e.dyn_ref::<MessageEvent>() {
                    on(LinkEvent::Message(e.data()));
                }
            }));
        let on = self.on_event.clone();
        self.listeners
            .push(EventListener::new(&dc, "bufferedamountlow", move |_| {
                on(LinkEvent::BufferLow)
            }));
        let on = self.on_event.clone();
        self.listeners
            .push(EventListener::new(&dc, "close", move |_| {
                on(LinkEvent::Closed)
            }));
        self.channel = Some(dc);
    }

    /// Creates the offer and sets it locally; returns its SDP.
    pub async fn offer(pc: RtcPeerConnection) -> Result<String> {
        let offer = JsFuture::from(pc.create_offer()).await?;
        let sdp = sdp_of(&offer)?;
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        desc.set_sdp(&sdp);
        JsFuture::from(pc.set_local_description(&desc)).await?;
        Ok(sdp)
    }

    /// Creates the offer, sets it locally and waits until ICE gathering is
    /// complete (or `max_wait_ms` passed): the SDP then carries this side's
    /// candidates, so it can wait for a wanter that does not exist yet.
    pub async fn gathered_offer(pc: RtcPeerConnection, max_wait_ms: u32) -> Result<String> {
        Self::offer(pc.clone()).await?;
        if pc.ice_gathering_state() != RtcIceGatheringState::Complete {
            let (tx, rx) = oneshot::channel::<()>();
            let tx = Rc::new(RefCell::new(Some(tx)));
            let finish = move |tx: &RefCell<Option<oneshot::Sender<()>>>| {
                if let Some(tx) = tx.borrow_mut().take() {
                    let _ = tx.send(());
                }
            };
            let _gathered = {
                let (tx, pc2) = (tx.clone(), pc.clone());
                EventListener::new(&pc, "icegatheringstatechange", move |_| {
                    if pc2.ice_gathering_state() == RtcIceGatheringState::Complete {
                        finish(&tx);
                    }
                })
            };
            let _timer = Timeout::new(max_wait_ms, move || finish(&tx));
            let _ = rx.await;
        }
        Ok(pc.local_description().map(|d| d.sdp()).unwrap_or_default())
    }

    /// Applies a remote offer, creates the answer and sets it locally;
    /// returns the answer's SDP.
    /// `remote_set` runs as soon as the offer is applied, so that early
    /// candidates need not wait for the answer.
    pub async fn answer(
        pc: RtcPeerConnection,
        offer_sdp: String,
        remote_set: impl FnOnce(),
    ) -> Result<String> {
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        desc.set_sdp(&offer_sdp);
        JsFuture::from(pc.set_remote_description(&desc)).await?;
        remote_set();
        let answer = JsFuture::from(pc.create_answer()).await?;
        let sdp = sdp_of(&answer)?;
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        desc.set_sdp(&sdp);
        JsFuture::from(pc.set_local_description(&desc)).await?;
        Ok(sdp)
    }

    /// Applies the remote answer.
    pub async fn accept_answer(pc: RtcPeerConnection, sdp: String) -> Result<()> {
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        desc.set_sdp(&sdp);
        JsFuture::from(pc.set_remote_description(&desc)).await?;
        Ok(())
    }

    /// Records that the remote description is set and applies candidates
    /// that arrived before it.
    pub fn remote_ready(&mut self) {
        self.remote_set = true;
        for c in std::mem::take(&mut self.pending) {
            let _ = self
                .pc
                .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&c));
        }
    }

    /// Adds a remote candidate now, or once the remote description is set.
    pub fn add_candidate(
        &mut self,
        candidate: &str,
        sdp_mid: Option<&str>,
        sdp_m_line_index: Option<u16>,
    ) {
        let init = RtcIceCandidateInit::new(candidate);
        init.set_sdp_mid(sdp_mid);
        init.set_sdp_m_line_index(sdp_m_line_index);
        if self.remote_set {
            // Errors surface as a failed connection, handled there.
            let _ = self
                .pc
                .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
        } else {
            self.pending.push(init);
        }
    }

    /// Bytes queued in the data channel and not yet sent.
    pub fn buffered(&self) -> u32 {
        self.channel.as_ref().map_or(0, |c| c.buffered_amount())
    }

    /// The largest message to send on this link: `cap`, or less if the
    /// other side advertises less (its SDP's max-message-size, which the
    /// browser exposes once connected; a frame's size, which every browser
    /// accepts, when it does not say).
    pub fn max_message(&self, cap: usize) -> usize {
        let advertised = js_sys::Reflect::get(&self.pc, &"sctp".into())
            .ok()
            .filter(|sctp| sctp.is_object())
            .and_then(|sctp| js_sys::Reflect::get(&sctp, &"maxMessageSize".into()).ok())
            .and_then(|size| size.as_f64())
            .filter(|size| *size >= 1.0);
        // 0 would mean "no limit" in the SDP, which the browser reports as
        // infinity.
        advertised.map_or(protocol::transfer::MAX_FRAME, |size| {
            size.min(cap as f64) as usize
        })
    }

    /// Whether the data channel is open.
    pub fn is_open(&self) -> bool {
        self.channel
            .as_ref()
            .is_some_and(|c| c.ready_state() == web_sys::RtcDataChannelState::Open)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Detach first so closing does not report back to a gone owner.
        self.listeners.clear();
        if let Some(dc) = &self.channel {
            dc.close();
        }
        self.pc.close();
    }
}

fn sdp_of(desc: &JsValue) -> Result<String> {
    Ok(Reflect::get(desc, &JsValue::from_str("sdp"))?
        .as_string()
        .unwrap_or_default())
}
