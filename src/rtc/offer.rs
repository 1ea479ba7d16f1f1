//! What an SDP offer asks for: which media, in which direction, with a codec we mix.
//! Pure: parses text, touches no network or peer connection.

use std::io::Cursor;

use webrtc::sdp::SessionDescription;

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
}

/// The usable part of an offer: the first audio m-line offering Opus and the first
/// video m-line offering VP8 (others are declined in the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferSummary {
    /// Direction of the Opus m-line, if any.
    pub audio: Option<Direction>,
    /// Direction of the VP8 m-line, if any.
    pub video: Option<Direction>,
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
    /// Media present, but none in a codec the server mixes.
    #[error("no supported codec in the offer (audio needs Opus/48000, video needs VP8/90000)")]
    NoSupportedCodec,
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
    for media in &parsed.media_descriptions {
        let kind = media.media_name.media.as_str();
        if (kind != "audio" && kind != "video") || media.media_name.port.value == 0 {
            continue;
        }
        let direction =
            match direction_from_attrs(media.attributes.iter().map(|a| a.key.as_str())).or(session_direction) {
                Some(Some(d)) => d,
                Some(None) => continue, // inactive
                None => Direction::SendRecv,
            };
        any_media = true;
        let (wanted, slot) = match kind {
            "audio" => ("opus/48000", &mut summary.audio),
            _ => ("vp8/90000", &mut summary.video),
        };
        let supported = media.attributes.iter().any(|a| {
            a.key == "rtpmap"
                && a.value
                    .as_deref()
                    .and_then(|v| v.split_whitespace().nth(1))
                    .is_some_and(|codec| codec.to_ascii_lowercase().starts_with(wanted))
        });
        if supported && slot.is_none() {
            *slot = Some(direction);
        }
    }
    match summary {
        OfferSummary { audio: None, video: None } if any_media => Err(OfferError::NoSupportedCodec),
        OfferSummary { audio: None, video: None } => Err(OfferError::NoMedia),
        s => Ok(s),
    }
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

    fn offer(media: &str) -> String {
        format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n{}", media)
    }

    const AUDIO: &str =
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n";
    const VIDEO: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn sendrecv_is_the_default_direction() {
        let s = inspect_offer(&offer(&format!("{AUDIO}{VIDEO}"))).unwrap();
        assert_eq!(s, OfferSummary { audio: Some(Direction::SendRecv), video: Some(Direction::SendRecv) });
    }

    #[test]
    fn directions_are_read_per_m_line() {
        let s = inspect_offer(&offer(&format!("{AUDIO}a=sendonly\r\n{VIDEO}a=recvonly\r\n"))).unwrap();
        assert_eq!(s.audio, Some(Direction::SendOnly));
        assert_eq!(s.video, Some(Direction::RecvOnly));
        assert!(s.audio.unwrap().publishes() && !s.audio.unwrap().receives());
    }

    #[test]
    fn inactive_and_rejected_lines_are_ignored() {
        let s = inspect_offer(&offer(&format!("{AUDIO}a=inactive\r\n{VIDEO}"))).unwrap();
        assert_eq!(s.audio, None);
        assert_eq!(s.video, Some(Direction::SendRecv));
    }

    #[test]
    fn unsupported_codecs_only_is_an_error() {
        let h264 = "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:102 H264/90000\r\n";
        let pcmu = "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n";
        assert_eq!(inspect_offer(&offer(&format!("{pcmu}{h264}"))), Err(OfferError::NoSupportedCodec));
    }

    #[test]
    fn garbage_and_empty_offers_are_errors() {
        assert!(matches!(inspect_offer("hello"), Err(OfferError::Malformed(_))));
        assert!(matches!(inspect_offer("v=0\r\nbogus"), Err(OfferError::Malformed(_))));
        assert_eq!(inspect_offer(&offer("")), Err(OfferError::NoMedia));
    }
}
