//! The transport an offer must describe before anything is built for it: a DTLS
//! fingerprint and role, ICE credentials, and one bundle for its m-lines (the server
//! answers every m-line on one transport). Each missing or malformed piece is an
//! [`OfferError`] naming it, so a client learns what is wrong from the `400` without
//! the server creating a room or a peer connection. Pure.

use webrtc::sdp::SessionDescription;
use webrtc::sdp::description::media::MediaDescription;

use super::offer::OfferError;

/// The value of attribute `key`: at session level, else on the first of `used` that
/// has it (bundled m-lines may carry it once).
fn attribute<'a>(parsed: &'a SessionDescription, used: &[&'a MediaDescription], key: &str) -> Option<&'a str> {
    let value = |attrs: &'a [webrtc::sdp::description::common::Attribute]| {
        attrs.iter().find(|a| a.key == key).map(|a| a.value.as_deref().unwrap_or_default().trim())
    };
    value(&parsed.attributes).or_else(|| used.iter().find_map(|m| value(&m.attributes)))
}

/// Checks the transport attributes of an offer whose media lines `used` are answered.
pub(super) fn check(parsed: &SessionDescription, used: &[&MediaDescription]) -> Result<(), OfferError> {
    let fingerprint = attribute(parsed, used, "fingerprint").ok_or(OfferError::NoFingerprint)?;
    let (hash, digest) = fingerprint.split_once(' ').ok_or(OfferError::BadFingerprint)?;
    let hex_pairs = digest.trim().split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
    if hash.is_empty() || !hex_pairs {
        return Err(OfferError::BadFingerprint);
    }
    let ufrag = attribute(parsed, used, "ice-ufrag").ok_or(OfferError::NoIceUfrag)?;
    if !(4..=256).contains(&ufrag.len()) {
        return Err(OfferError::BadIceCredentials("ice-ufrag must be 4 to 256 characters"));
    }
    let pwd = attribute(parsed, used, "ice-pwd").ok_or(OfferError::NoIcePwd)?;
    if !(22..=256).contains(&pwd.len()) {
        return Err(OfferError::BadIceCredentials("ice-pwd must be 22 to 256 characters"));
    }
    match attribute(parsed, used, "setup") {
        None => return Err(OfferError::NoSetup),
        Some("actpass" | "active" | "passive") => {}
        Some(other) => return Err(OfferError::BadSetup(other.to_owned())),
    }
    if used.len() > 1 {
        let mids: Vec<&str> = used.iter().filter_map(|m| attribute_of(m, "mid")).collect();
        let bundled = parsed
            .attributes
            .iter()
            .filter(|a| a.key == "group")
            .filter_map(|a| a.value.as_deref()?.strip_prefix("BUNDLE"))
            .any(|group| {
                let group: Vec<&str> = group.split_whitespace().collect();
                mids.len() == used.len() && mids.iter().all(|mid| group.contains(mid))
            });
        if !bundled {
            return Err(OfferError::NotBundled);
        }
    }
    Ok(())
}

fn attribute_of<'a>(media: &'a MediaDescription, key: &str) -> Option<&'a str> {
    media.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_deref()).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::super::offer::{OfferError, inspect_offer};

    /// Offers as real stacks make them (`tests/fixtures/offers/README.md`).
    const FIXTURES: [(&str, &str); 5] = [
        ("chromium", include_str!("../../tests/fixtures/offers/chromium.sdp")),
        ("firefox", include_str!("../../tests/fixtures/offers/firefox.sdp")),
        ("safari", include_str!("../../tests/fixtures/offers/safari.sdp")),
        ("webrtc-rs", include_str!("../../tests/fixtures/offers/webrtc-rs.sdp")),
        ("webrtcbin", include_str!("../../tests/fixtures/offers/webrtcbin.sdp")),
    ];

    /// `offer` without every line starting with `a={attribute}`.
    fn without(offer: &str, attribute: &str) -> String {
        let cut = format!("a={attribute}");
        offer.split_inclusive('\n').filter(|line| !line.starts_with(&cut)).collect()
    }

    /// `offer` with every `a={attribute}` line's value replaced.
    fn with(offer: &str, attribute: &str, value: &str) -> String {
        let prefix = format!("a={attribute}:");
        offer
            .split_inclusive('\n')
            .map(|line| if line.starts_with(&prefix) { format!("{prefix}{value}\r\n") } else { line.to_owned() })
            .collect()
    }

    #[test]
    fn every_stacks_offer_passes() {
        for (stack, offer) in FIXTURES {
            let summary = inspect_offer(offer).unwrap_or_else(|e| panic!("{stack}: {e}"));
            assert!(summary.audio.is_some() && summary.video.is_some(), "{stack}: {summary:?}");
        }
    }

    #[test]
    fn an_offer_without_its_dtls_fingerprint_is_refused_naming_it() {
        for (stack, offer) in FIXTURES {
            let refused = inspect_offer(&without(offer, "fingerprint"));
            assert_eq!(refused, Err(OfferError::NoFingerprint), "{stack}");
            assert!(refused.unwrap_err().to_string().contains("DTLS fingerprint"));
            assert_eq!(
                inspect_offer(&with(offer, "fingerprint", "sha-256")),
                Err(OfferError::BadFingerprint),
                "{stack}"
            );
        }
    }

    #[test]
    fn an_offer_without_its_ice_credentials_is_refused_naming_them() {
        for (stack, offer) in FIXTURES {
            assert_eq!(inspect_offer(&without(offer, "ice-ufrag")), Err(OfferError::NoIceUfrag), "{stack}");
            assert_eq!(inspect_offer(&without(offer, "ice-pwd")), Err(OfferError::NoIcePwd), "{stack}");
            assert!(matches!(inspect_offer(&with(offer, "ice-pwd", "short")), Err(OfferError::BadIceCredentials(_))));
            assert!(matches!(inspect_offer(&with(offer, "ice-ufrag", "ab")), Err(OfferError::BadIceCredentials(_))));
        }
    }

    #[test]
    fn an_offer_without_a_dtls_role_is_refused_naming_it() {
        for (stack, offer) in FIXTURES {
            assert_eq!(inspect_offer(&without(offer, "setup")), Err(OfferError::NoSetup), "{stack}");
            assert_eq!(
                inspect_offer(&with(offer, "setup", "holdconn")),
                Err(OfferError::BadSetup("holdconn".into())),
                "{stack}"
            );
        }
    }

    #[test]
    fn an_offer_whose_m_lines_are_not_bundled_is_refused() {
        for (stack, offer) in FIXTURES {
            assert_eq!(inspect_offer(&without(offer, "group:BUNDLE")), Err(OfferError::NotBundled), "{stack}");
        }
    }

    #[test]
    fn an_offer_without_a_codec_the_server_takes_is_refused_first() {
        for (stack, offer) in FIXTURES {
            let no_codecs = without(&without(without(offer, "rtpmap").as_str(), "fmtp"), "fingerprint");
            assert_eq!(inspect_offer(&no_codecs), Err(OfferError::NoSupportedCodec), "{stack}");
        }
    }
}
