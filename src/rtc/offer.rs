//! What an SDP offer asks for: which media, in which direction, in which codec.
//! Pure: parses text, touches no network or peer connection.
//!
//! Video is answered in the **first** format of the offer's video m-line that the
//! server speaks (the client's preference order), for both directions of that m-line.

use std::io::Cursor;

use webrtc::sdp::SessionDescription;
use webrtc::sdp::description::media::MediaDescription;

use crate::media::codec::{VideoCodec, VideoFormat};

/// Direction of an m-line, from the offerer's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sends and receives: publishes and gets the mix back on the same m-line.
    SendRecv,
    /// Only publishes.
    SendOnly,
    /// Only watches/listens.
    RecvOnly,
}

impl Direction {
    /// The offerer sends media on this m-line.
    pub fn publishes(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }
    /// The offerer wants media back on this m-line.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// Its SDP attribute.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
        }
    }
}

/// The usable video m-line of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoLine {
    /// Its direction.
    pub direction: Direction,
    /// The format it is answered in (both ways).
    pub format: VideoFormat,
    /// The bandwidth the offer allows for it (`b=TIAS`, else `b=AS`), bits/s.
    pub max_bitrate_bps: Option<u64>,
}

/// The usable part of an offer: the first audio m-line offering Opus and the first
/// video m-line offering VP8 or H.264 (others are declined in the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    /// Direction of the Opus m-line, if any.
    pub audio: Option<Direction>,
    /// The video m-line, if any.
    pub video: Option<VideoLine>,
}

impl OfferSummary {
    /// Direction of the video m-line.
    pub fn video_direction(&self) -> Option<Direction> {
        self.video.as_ref().map(|v| v.direction)
    }

    /// The codec the participant publishes, if it publishes video.
    pub fn published_video(&self) -> Option<VideoCodec> {
        self.video.as_ref().filter(|v| v.direction.publishes()).map(|v| v.format.codec)
    }

    /// The format the participant receives the composite in, if it receives video.
    pub fn received_video(&self) -> Option<&VideoFormat> {
        self.video.as_ref().filter(|v| v.direction.receives()).map(|v| &v.format)
    }

    /// The offer as a WHIP publisher's: every m-line only publishes (a `sendrecv`
    /// one is answered `recvonly`, so the publisher receives nothing).
    pub fn publish_only(mut self) -> Result<Self, OfferError> {
        self.restrict(Direction::SendOnly, Direction::RecvOnly)?;
        Ok(self)
    }

    /// The offer as a WHEP viewer's: every m-line only receives.
    pub fn receive_only(mut self) -> Result<Self, OfferError> {
        self.restrict(Direction::RecvOnly, Direction::SendOnly)?;
        Ok(self)
    }

    /// Turns `sendrecv` lines into `to`; a line in the `refused` direction is an error.
    fn restrict(&mut self, to: Direction, refused: Direction) -> Result<(), OfferError> {
        let video = self.video.as_mut().map(|v| &mut v.direction);
        for direction in [self.audio.as_mut(), video].into_iter().flatten() {
            if *direction == refused {
                return Err(OfferError::WrongDirection(refused));
            }
            *direction = to;
        }
        Ok(())
    }
}

/// Why an offer cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfferError {
    /// Not parseable as SDP.
    #[error("malformed SDP offer: {0}")]
    Malformed(String),
    /// Parseable, but no audio/video m-line is active.
    #[error("the offer has no active audio or video m-line")]
    NoMedia,
    /// An m-line goes the wrong way for the endpoint (WHIP publishes, WHEP watches).
    #[error("this endpoint takes no {} m-line", .0.attribute())]
    WrongDirection(Direction),
    /// Media present, but none in a codec the server mixes.
    #[error(
        "no supported codec in the offer (audio needs Opus/48000; video needs VP8/90000 or H264/90000 with \
         packetization-mode=1 and a Baseline profile-level-id such as 42e01f)"
    )]
    NoSupportedCodec,
    /// No `a=fingerprint`: DTLS cannot be authenticated.
    #[error("offer has no DTLS fingerprint (a=fingerprint)")]
    NoFingerprint,
    /// An `a=fingerprint` that is not `<hash> <hex:hex:...>`.
    #[error("offer's DTLS fingerprint is malformed (a=fingerprint:<hash> <hex pairs>)")]
    BadFingerprint,
    /// No `a=ice-ufrag`.
    #[error("offer has no ICE username fragment (a=ice-ufrag)")]
    NoIceUfrag,
    /// No `a=ice-pwd`.
    #[error("offer has no ICE password (a=ice-pwd)")]
    NoIcePwd,
    /// ICE credentials of the wrong length (RFC 8839).
    #[error("offer's ICE credentials are invalid: {0}")]
    BadIceCredentials(&'static str),
    /// No `a=setup`: the DTLS roles cannot be agreed.
    #[error("offer has no DTLS role (a=setup)")]
    NoSetup,
    /// An `a=setup` other than actpass, active or passive.
    #[error("offer's a=setup:{0} is not actpass, active or passive")]
    BadSetup(String),
    /// Several m-lines not in one `a=group:BUNDLE`: the server answers on one transport.
    #[error("offer's m-lines are not in one a=group:BUNDLE (the server answers every m-line on one transport)")]
    NotBundled,
}

impl OfferError {
    /// Why, in a word (the `reason` of `mcu_join_failures_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            OfferError::Malformed(_) => "malformed_offer",
            OfferError::NoMedia => "no_media",
            OfferError::WrongDirection(_) => "wrong_direction",
            OfferError::NoSupportedCodec => "no_supported_codec",
            OfferError::NoFingerprint | OfferError::BadFingerprint => "no_fingerprint",
            OfferError::NoIceUfrag | OfferError::NoIcePwd | OfferError::BadIceCredentials(_) => "no_ice_credentials",
            OfferError::NoSetup | OfferError::BadSetup(_) => "no_setup",
            OfferError::NotBundled => "not_bundled",
        }
    }
}

/// Inspects an offer.
pub fn inspect_offer(sdp: &str) -> Result<OfferSummary, OfferError> {
    if !sdp.trim_start().starts_with("v=") {
        return Err(OfferError::Malformed("an SDP body starts with \"v=\"".into()));
    }
    let parsed = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|e| OfferError::Malformed(e.to_string()))?;
    let session_direction = direction_from_attrs(parsed.attributes.iter().map(|a| a.key.as_str()));
    let mut summary = OfferSummary { audio: None, video: None };
    let mut any_media = false;
    let mut used = Vec::new();
    for media in &parsed.media_descriptions {
        let kind = media.media_name.media.as_str();
        // Port 0 rejects an m-line, unless it is `bundle-only` (RFC 8843): then it
        // rides on the bundle's transport (webrtcbin and other max-bundle offerers).
        let bundle_only = media.attributes.iter().any(|a| a.key == "bundle-only");
        if (kind != "audio" && kind != "video") || (media.media_name.port.value == 0 && !bundle_only) {
            continue;
        }
        let direction =
            match direction_from_attrs(media.attributes.iter().map(|a| a.key.as_str())).or(session_direction) {
                Some(Some(d)) => d,
                Some(None) => continue, // inactive
                None => Direction::SendRecv,
            };
        any_media = true;
        used.push(media);
        if kind == "audio" {
            if summary.audio.is_none() && offers_opus(media) {
                summary.audio = Some(direction);
            }
        } else if summary.video.is_none()
            && let Some(format) = first_video_format(media)
        {
            summary.video = Some(VideoLine { direction, format, max_bitrate_bps: max_bitrate(media) });
        }
    }
    match summary {
        OfferSummary { audio: None, video: None } if any_media => Err(OfferError::NoSupportedCodec),
        OfferSummary { audio: None, video: None } => Err(OfferError::NoMedia),
        s => {
            super::offer_transport::check(&parsed, &used)?;
            Ok(s)
        }
    }
}

/// `(payload type, encoding name, clock rate)` of every `a=rtpmap` of an m-line.
fn rtpmaps(media: &MediaDescription) -> impl Iterator<Item = (u8, String, u32)> + '_ {
    media.attributes.iter().filter(|a| a.key == "rtpmap").filter_map(|a| {
        let value = a.value.as_deref()?;
        let (pt, rest) = value.split_once(' ')?;
        let mut parts = rest.trim().split('/');
        let name = parts.next()?.to_owned();
        let clock = parts.next()?.parse().ok()?;
        Some((pt.trim().parse().ok()?, name, clock))
    })
}

fn fmtp_of(media: &MediaDescription, payload_type: u8) -> String {
    media
        .attributes
        .iter()
        .filter(|a| a.key == "fmtp")
        .filter_map(|a| a.value.as_deref()?.split_once(' '))
        .find(|(pt, _)| pt.trim().parse::<u8>().ok() == Some(payload_type))
        .map(|(_, params)| params.trim().to_owned())
        .unwrap_or_default()
}

fn offers_opus(media: &MediaDescription) -> bool {
    rtpmaps(media).any(|(_, name, clock)| name.eq_ignore_ascii_case("opus") && clock == 48_000)
}

/// The first format of the m-line's format list (the offerer's preference order)
/// that the server speaks.
fn first_video_format(media: &MediaDescription) -> Option<VideoFormat> {
    let maps: Vec<(u8, String, u32)> = rtpmaps(media).collect();
    media.media_name.formats.iter().filter_map(|f| f.parse::<u8>().ok()).find_map(|pt| {
        let (_, name, clock) = maps.iter().find(|(p, _, _)| *p == pt)?;
        let codec = VideoCodec::from_encoding_name(name).filter(|_| *clock == 90_000)?;
        VideoFormat::accept(codec, pt, &fmtp_of(media, pt))
    })
}

/// `b=TIAS` (bits/s) or else `b=AS` (kbit/s) of an m-line. An `AS` too large for
/// bits/s in 64 bits saturates (no cap) rather than wrapping to a small one.
fn max_bitrate(media: &MediaDescription) -> Option<u64> {
    let of = |kind: &str| media.bandwidth.iter().find(|b| b.bandwidth_type.eq_ignore_ascii_case(kind));
    of("TIAS")
        .map(|b| b.bandwidth)
        .or_else(|| of("AS").map(|b| b.bandwidth.saturating_mul(1000)))
        .filter(|&bps| bps > 0)
}

/// `Some(Some(d))` for an explicit direction, `Some(None)` for inactive, `None` when
/// no direction attribute is present.
fn direction_from_attrs<'a>(keys: impl Iterator<Item = &'a str>) -> Option<Option<Direction>> {
    for key in keys {
        match key {
            "sendrecv" => return Some(Some(Direction::SendRecv)),
            "sendonly" => return Some(Some(Direction::SendOnly)),
            "recvonly" => return Some(Some(Direction::RecvOnly)),
            "inactive" => return Some(None),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session-level transport attributes every offer needs (see `offer_transport`).
    const TRANSPORT: &str = "a=fingerprint:sha-256 AB:CD:EF:01\r\na=ice-ufrag:abcd\r\n\
        a=ice-pwd:0123456789abcdefghijkl\r\na=setup:actpass\r\n";

    fn offer(media: &str) -> String {
        format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n{TRANSPORT}{}", media)
    }

    const AUDIO: &str =
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n";
    const VIDEO: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n";

    fn vp8(direction: Direction) -> Option<VideoLine> {
        Some(VideoLine {
            direction,
            format: VideoFormat { codec: VideoCodec::Vp8, payload_type: 96, fmtp: String::new() },
            max_bitrate_bps: None,
        })
    }

    #[test]
    fn sendrecv_is_the_default_direction() {
        let s = inspect_offer(&offer(&format!("{AUDIO}{VIDEO}"))).unwrap();
        assert_eq!(s, OfferSummary { audio: Some(Direction::SendRecv), video: vp8(Direction::SendRecv) });
    }

    #[test]
    fn directions_are_read_per_m_line() {
        let s = inspect_offer(&offer(&format!("{AUDIO}a=sendonly\r\n{VIDEO}a=recvonly\r\n"))).unwrap();
        assert_eq!(s.audio, Some(Direction::SendOnly));
        assert_eq!(s.video_direction(), Some(Direction::RecvOnly));
        assert!(s.audio.unwrap().publishes() && !s.audio.unwrap().receives());
        assert_eq!(s.published_video(), None);
        assert_eq!(s.received_video().map(|f| f.codec), Some(VideoCodec::Vp8));
    }

    #[test]
    fn inactive_and_rejected_lines_are_ignored() {
        let s = inspect_offer(&offer(&format!("{AUDIO}a=inactive\r\n{VIDEO}"))).unwrap();
        assert_eq!(s.audio, None);
        assert_eq!(s.video_direction(), Some(Direction::SendRecv));
    }

    /// Chrome's video m-line (abridged) with H.264 moved first by `setCodecPreferences`.
    const CHROME_H264_FIRST: &str = "m=video 9 UDP/TLS/RTP/SAVPF 102 103 104 96 97\r\nc=IN IP4 0.0.0.0\r\nb=AS:800\r\na=mid:1\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
        a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
        a=rtpmap:104 H264/90000\r\na=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n";

    #[test]
    fn the_first_format_the_server_speaks_wins() {
        let s = inspect_offer(&offer(CHROME_H264_FIRST)).unwrap();
        let video = s.video.unwrap();
        assert_eq!(video.format.codec, VideoCodec::H264);
        assert_eq!(video.format.payload_type, 104, "packetization-mode=0 is skipped");
        assert_eq!(video.max_bitrate_bps, Some(800_000));
        let vp8_first = CHROME_H264_FIRST.replace("SAVPF 102 103 104 96 97", "SAVPF 96 97 102 103 104");
        let s = inspect_offer(&offer(&vp8_first)).unwrap();
        assert_eq!(s.video.unwrap().format.codec, VideoCodec::Vp8);
    }

    #[test]
    fn a_bundle_only_line_is_active_despite_its_port_0() {
        let bundled = AUDIO.replace("m=audio 9", "m=audio 0") + "a=bundle-only\r\n";
        let s = inspect_offer(&offer(&format!("{VIDEO}{bundled}"))).unwrap();
        assert_eq!(s.audio, Some(Direction::SendRecv));
        let rejected = AUDIO.replace("m=audio 9", "m=audio 0");
        let s = inspect_offer(&offer(&format!("{VIDEO}{rejected}"))).unwrap();
        assert_eq!(s.audio, None, "port 0 without bundle-only is a rejected line");
    }

    #[test]
    fn whip_offers_only_publish_and_whep_offers_only_receive() {
        let both =
            inspect_offer(&offer("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n"))
                .unwrap();
        assert_eq!(both.clone().publish_only().unwrap().audio, Some(Direction::SendOnly));
        assert_eq!(both.receive_only().unwrap().audio, Some(Direction::RecvOnly));
        let watching =
            inspect_offer(&offer("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=recvonly\r\n"))
                .unwrap();
        assert_eq!(watching.publish_only(), Err(OfferError::WrongDirection(Direction::RecvOnly)));
        let publishing =
            inspect_offer(&offer("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n"))
                .unwrap();
        assert_eq!(publishing.receive_only().unwrap_err().to_string(), "this endpoint takes no sendonly m-line");
    }

    #[test]
    fn tias_wins_over_as() {
        let line = VIDEO.replace("a=mid:1\r\n", "b=AS:500\r\nb=TIAS:300000\r\na=mid:1\r\n");
        let s = inspect_offer(&offer(&line)).unwrap();
        assert_eq!(s.video.unwrap().max_bitrate_bps, Some(300_000));
        let huge = VIDEO.replace("a=mid:1\r\n", "b=AS:18446744073709552\r\na=mid:1\r\n");
        let s = inspect_offer(&offer(&huge)).unwrap();
        assert_eq!(s.video.unwrap().max_bitrate_bps, Some(u64::MAX), "saturated, not wrapped to 384 bits/s");
    }

    #[test]
    fn unsupported_codecs_only_is_an_error() {
        let h264_mode0 = "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:102 H264/90000\r\n\
                          a=fmtp:102 packetization-mode=0;profile-level-id=42e01f\r\n";
        let vp9 = "m=video 9 UDP/TLS/RTP/SAVPF 98\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:98 VP9/90000\r\n";
        let pcmu = "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n";
        for video in [h264_mode0, vp9] {
            assert_eq!(inspect_offer(&offer(&format!("{pcmu}{video}"))), Err(OfferError::NoSupportedCodec));
        }
    }

    #[test]
    fn garbage_and_empty_offers_are_errors() {
        assert!(matches!(inspect_offer("hello"), Err(OfferError::Malformed(_))));
        assert!(matches!(inspect_offer("v=0\r\nbogus"), Err(OfferError::Malformed(_))));
        assert_eq!(inspect_offer(&offer("")), Err(OfferError::NoMedia));
    }
}
