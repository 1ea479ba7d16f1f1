//! webrtc-rs glue: the shared API (composition root), SDP offer inspection, and peer
//! connection setup.

pub mod candidate_address;
pub mod codecs;
pub mod engine;
pub mod forward;
pub mod offer;
mod offer_transport;
pub mod peer;
pub mod rtp_clock;
pub mod udp_mux;
