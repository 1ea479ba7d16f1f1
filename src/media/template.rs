//! GStreamer pipeline templates: the text descriptions in `pipelines/`, embedded in
//! the binary, with `{name}` placeholders filled in from the configuration.

use std::collections::HashMap;

/// The decode branch for one VP8 publisher.
pub const VIDEO_DECODE_VP8: &str = include_str!("../../pipelines/video-decode-vp8.pipeline");
/// The decode branch for one H.264 publisher.
pub const VIDEO_DECODE_H264: &str = include_str!("../../pipelines/video-decode-h264.pipeline");
/// The default H.264 decoder of a publisher's video.
pub const H264_DECODER: &str = "avdec_h264 max-errors=30";
/// The room's compositor, ending in the tee the encodes hang from.
pub const VIDEO_COMPOSITE: &str = include_str!("../../pipelines/video-composite.pipeline");
/// One encode of the composite for a (codec, tier): scaler, rate, `{encoder}`.
pub const VIDEO_OUTPUT: &str = include_str!("../../pipelines/video-output.pipeline");
/// The default VP8 encoder.
pub const VIDEO_ENCODE_VP8: &str = include_str!("../../pipelines/video-encode-vp8.pipeline");
/// The default H.264 encoder.
pub const VIDEO_ENCODE_H264: &str = include_str!("../../pipelines/video-encode-h264.pipeline");
/// A recording of the room's mix (composite + full audio mix) to WebM.
pub const RECORD_WEBM: &str = include_str!("../../pipelines/record-webm.pipeline");
/// A recording of an audio-only room to WebM.
pub const RECORD_WEBM_AUDIO: &str = include_str!("../../pipelines/record-webm-audio.pipeline");
/// A recording of the room's mix (H.264 composite + full audio mix) to MP4.
pub const RECORD_MP4: &str = include_str!("../../pipelines/record-mp4.pipeline");
/// A recording of an audio-only room to MP4.
pub const RECORD_MP4_AUDIO: &str = include_str!("../../pipelines/record-mp4-audio.pipeline");
/// A live stream of the room's mix (H.264 composite + the mix as AAC) to RTMP.
pub const STREAM_FLV: &str = include_str!("../../pipelines/stream-flv.pipeline");
/// A live stream of an audio-only room to RTMP.
pub const STREAM_FLV_AUDIO: &str = include_str!("../../pipelines/stream-flv-audio.pipeline");
/// A synthetic participant's camera (tests, load generator).
pub const CLIENT_SEND_VIDEO: &str = include_str!("../../pipelines/client-send-video.pipeline");
/// A synthetic participant's decoder for the composite it receives.
pub const CLIENT_RECEIVE_VIDEO: &str = include_str!("../../pipelines/client-receive-video.pipeline");

/// A template could not be filled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// A `{name}` in the template has no value.
    #[error("pipeline template has no value for placeholder {{{0}}}")]
    MissingValue(String),
}

/// Fills `{name}` placeholders and drops `#` comment lines, giving a description that
/// `gst::parse::bin_from_description` accepts.
pub fn render(template: &str, values: &HashMap<&str, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    for line in template.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after.find('}').ok_or_else(|| TemplateError::MissingValue(after.to_owned()))?;
            let name = &after[..end];
            let value = values.get(name).ok_or_else(|| TemplateError::MissingValue(name.to_owned()))?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push(' ');
    }
    Ok(out.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_and_strips_comments() {
        let values = HashMap::from([("a", "1".to_owned()), ("b", "x ! y".to_owned())]);
        let out = render("# comment\nfoo p={a}\n  ! {b}\n", &values).unwrap();
        assert_eq!(out, "foo p=1 ! x ! y");
    }

    #[test]
    fn a_missing_value_is_an_error() {
        let err = render("foo {nope}", &HashMap::new()).unwrap_err();
        assert_eq!(err, TemplateError::MissingValue("nope".into()));
    }

    #[test]
    fn embedded_templates_only_use_known_placeholders() {
        let values: HashMap<&str, String> = [
            "jitter_ms",
            "fps",
            "latency_ns",
            "width",
            "height",
            "encoder",
            "bitrate_bps",
            "bitrate_kbps",
            "threads",
            "decoder",
            "decode",
            "encoding",
            "keyframe_max_dist",
            "camera",
        ]
        .into_iter()
        .map(|k| (k, "1".to_owned()))
        .collect();
        for t in [
            VIDEO_DECODE_VP8,
            VIDEO_DECODE_H264,
            VIDEO_COMPOSITE,
            VIDEO_OUTPUT,
            VIDEO_ENCODE_VP8,
            VIDEO_ENCODE_H264,
            RECORD_WEBM,
            RECORD_WEBM_AUDIO,
            RECORD_MP4,
            RECORD_MP4_AUDIO,
            STREAM_FLV,
            STREAM_FLV_AUDIO,
            CLIENT_SEND_VIDEO,
            CLIENT_RECEIVE_VIDEO,
        ] {
            render(t, &values).unwrap();
        }
    }
}
