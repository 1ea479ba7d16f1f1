//! Harnesses for every parser of outside input: an SDP offer, the API's JSON bodies
//! and path/query text, RTP sequence numbers fed to the audio jitter buffer, RTP
//! payloads read for a keyframe's size, and `Authorization` headers.
//!
//! Each takes arbitrary bytes, runs them through exactly what the server runs, and
//! panics when a parser panics or breaks a property the rest of the server relies on.
//! The `fuzz/` crate's targets call them under libFuzzer; `tests/fuzz_regressions.rs`
//! replays the inputs kept in `fuzz/regressions/` through them on stable Rust, so a
//! fixed finding stays fixed.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use warp::http::StatusCode;

use crate::api::{self, ApiError};
use crate::auth::{Access, AuthError, Authenticator, Permission, unix_now};
use crate::config::MediaConfig;
use crate::media::frame_size::{declared_size, h264_sps_size, vp8_keyframe_size};
use crate::media::jitter::{JitterBuffer, Playout};
use crate::media::tier::TierPolicy;
use crate::room::RoomName;
use crate::rtc::offer::{Direction, OfferError, inspect_offer};

/// An SDP offer, as the join, WHIP and WHEP routes read it (UTF-8 text), then what
/// admission does with its summary: the WHIP/WHEP restrictions, the receiver's H.264
/// level against every tier, the starting tier for the offer's bandwidth.
pub fn sdp_offer(data: &[u8]) {
    let Ok(sdp) = std::str::from_utf8(data) else { return };
    let summary = match inspect_offer(sdp) {
        Ok(summary) => summary,
        Err(e) => {
            // Its message is sent back to the client.
            let _ = e.to_string();
            return;
        }
    };
    assert!(summary.audio.is_some() || summary.video.is_some(), "an accepted offer has media: {summary:?}");
    for (restricted, to, refused) in [
        (summary.clone().publish_only(), Direction::SendOnly, Direction::RecvOnly),
        (summary.clone().receive_only(), Direction::RecvOnly, Direction::SendOnly),
    ] {
        let directions = [summary.audio, summary.video_direction()];
        match restricted {
            Ok(s) => assert!([s.audio, s.video_direction()].into_iter().flatten().all(|d| d == to)),
            Err(e) => assert!(e == OfferError::WrongDirection(refused) && directions.contains(&Some(refused))),
        }
    }
    if let Some(video) = &summary.video {
        assert_ne!(video.max_bitrate_bps, Some(0), "no bandwidth line is no cap, not a cap of 0");
        let tiers = MediaConfig::default().tiers();
        for tier in &tiers {
            let _ = video.format.fits(tier.width, tier.height, tier.fps);
        }
        let bitrates: Vec<u32> = tiers.iter().map(|t| t.bitrate_bps).collect();
        assert!(TierPolicy::start_tier(&bitrates, video.max_bitrate_bps) < bitrates.len());
    }
}

/// Every JSON body of the API, each parsed and checked as its route does, and, as
/// text, what the routes take from the path and query: a room name, a display name,
/// a quality, a recording's file name. A body the route refuses is a 400, never
/// anything the server would answer as its own failure.
pub fn api_json(data: &[u8]) {
    let tiers = MediaConfig::default().tiers();
    let bad_request = |e: ApiError| assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message);
    if let Err(e) = api::layout::parse(data) {
        bad_request(e);
    }
    if let Err(e) = api::participants::parse_update(data, &tiers) {
        bad_request(e);
    }
    match api::participants::parse_mute(data) {
        Ok((audio, video)) => assert!(audio.is_some() || video.is_some()),
        Err(e) => bad_request(e),
    }
    if let Err(e) = api::recordings::container(data) {
        bad_request(e);
    }
    match api::streams::parse_start(data) {
        Ok(url) => assert!(url.starts_with("rtmp://") || url.starts_with("rtmps://"), "{url}"),
        Err(e) => bad_request(e),
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(room) = RoomName::parse(text) {
        assert!(room.as_str().len() <= 64 && !room.as_str().contains(['/', '.', '%']));
    }
    let query = HashMap::from([("name".to_owned(), text.to_owned()), ("quality".to_owned(), text.to_owned())]);
    if let Ok(Some(name)) = api::display_name(&query) {
        assert!(!name.is_empty() && !name.chars().any(char::is_control));
    }
    if let Err(e) = api::participants::quality_param(&query, &tiers) {
        bad_request(e);
    }
    if crate::recordings::is_recording_name(text) {
        assert!(!text.contains('/') && !text.contains("..") && !text.starts_with('.'), "{text}");
    }
}

/// The audio jitter buffer driven by arbitrary sequence numbers: two bytes of sizes,
/// then 3-byte operations (kind, then a little-endian sequence number or count).
/// The depth never exceeds the bound, and packets play strictly in unwrapped order.
pub fn jitter_buffer(data: &[u8]) {
    let [target, max, ops @ ..] = data else { return };
    let (target, max) = (usize::from(target % 16), usize::from(max % 64));
    let bound = max.max(target.max(1) + 1);
    let mut jb = JitterBuffer::new(target, max);
    // The reference unwrapping: the 64-bit number within half the 16-bit space of the
    // highest accepted (ties below), computed differently from the buffer's.
    let mut highest: Option<u64> = None;
    let mut last_played: Option<u64> = None;
    let mut next_seq = 0u16;
    let push = |jb: &mut JitterBuffer<u64>, seq: u16, highest: &mut Option<u64>| {
        let ext = match *highest {
            None => (1 << 32) + u64::from(seq),
            Some(h) => h.wrapping_add_signed(i64::from(seq.wrapping_sub(h as u16) as i16)),
        };
        if jb.push(seq, ext) {
            *highest = Some(highest.map_or(ext, |h| h.max(ext)));
        }
        assert!(jb.depth() <= bound, "depth {} above {bound}", jb.depth());
    };
    let mut pop = |jb: &mut JitterBuffer<u64>| {
        let before = jb.depth();
        match jb.pop() {
            Playout::Packet(ext) => {
                assert!(last_played.is_none_or(|last| ext > last), "{ext} played after {last_played:?}");
                last_played = Some(ext);
            }
            Playout::Lost => assert!(before > 0, "a loss is only reported when later packets wait"),
            Playout::Silent => {}
        }
        assert!(jb.depth() <= before);
    };
    for op in ops.chunks_exact(3) {
        let seq = u16::from_le_bytes([op[1], op[2]]);
        match op[0] % 4 {
            0 => {
                push(&mut jb, seq, &mut highest);
                next_seq = seq.wrapping_add(1);
            }
            1 => pop(&mut jb),
            // A steady stream: one packet in, one step out, `op[1]` times.
            2 => {
                for _ in 0..op[1] {
                    push(&mut jb, next_seq, &mut highest);
                    next_seq = next_seq.wrapping_add(1);
                    pop(&mut jb);
                }
            }
            // A burst, or a long stall of the sender.
            _ if op[2] & 1 == 0 => {
                for _ in 0..op[1] {
                    push(&mut jb, next_seq, &mut highest);
                    next_seq = next_seq.wrapping_add(1);
                }
            }
            _ => (0..op[1]).for_each(|_| pop(&mut jb)),
        }
    }
}

/// An RTP payload read for the picture size its keyframe declares, as VP8 and as
/// H.264, also behind an SPS NAL header so the SPS parser sees every input.
pub fn keyframe(data: &[u8]) {
    if let Some((width, height)) = vp8_keyframe_size(data) {
        assert!(width < 1 << 14 && height < 1 << 14);
    }
    let mut sps = Vec::with_capacity(data.len() + 1);
    sps.push(0x67);
    sps.extend_from_slice(data);
    for payload in [data, &sps] {
        if let Some((width, height)) = h264_sps_size(payload) {
            // Whole macroblocks, saturated (never wrapped) when the SPS declares more.
            let whole = |v: u32| v >= 16 && (v.is_multiple_of(16) || v == u32::MAX);
            assert!(whole(width) && whole(height), "{width}x{height}");
        }
        assert_eq!(declared_size(true, payload), h264_sps_size(payload));
        assert_eq!(declared_size(false, payload), vp8_keyframe_size(payload));
    }
}

/// The secret the token target's server is configured with.
const SECRET: &str = "fuzzing-secret";

/// An `Authorization` header: the first byte picks the rest as the whole header, as
/// the token after `Bearer `, or as the claims of a token signed with the server's
/// secret (so claim parsing and validation are reached, not only the signature).
pub fn token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let header = match mode % 3 {
        0 => text.into_owned(),
        1 => format!("Bearer {text}"),
        _ => format!("Bearer {}", signed(rest)),
    };
    let now = unix_now();
    assert_eq!(Authenticator::new(None).check(Some(&header)), Ok(Access::Open));
    match Authenticator::new(Some(SECRET)).check(Some(&header)) {
        Ok(Access::Token(claims)) => {
            assert!(claims.exp >= now, "an expired token was accepted");
            let access = Access::Token(claims.clone());
            assert_eq!(access.identity(), claims.sub);
            let room = if claims.room == "*" { "any-room" } else { claims.room.as_str() };
            let granted = access.require(Some(room), &[Permission::Publish, Permission::Subscribe]);
            assert_eq!(granted.is_ok(), claims.allows(Permission::Publish) && claims.allows(Permission::Subscribe));
            if let Err(e) = access.require(Some(&format!("{room}-other")), &[]) {
                assert!(matches!(e, AuthError::Forbidden(_)) && claims.room != "*");
            }
        }
        Ok(Access::Open) => panic!("a server with a secret is never open"),
        Err(AuthError::Forbidden(e)) => panic!("checking a token forbids nothing: {e}"),
        Err(AuthError::Missing | AuthError::Invalid(_)) => {}
    }
}

/// An HS256 token with `claims` (any bytes) as its payload, signed with [`SECRET`].
fn signed(claims: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("HS256 signs");
    format!("{message}.{signature}")
}
