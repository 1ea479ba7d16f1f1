//! The name tags on the composite: one still picture per placed publisher (its
//! [`LabelImage`]) on its own compositor pad, above every picture.
//!
//! A tag is an `appsrc` that pushes its one frame and ends; its pad has
//! `repeat-after-eos`, so the compositor keeps drawing it without waiting for more
//! (a pad that stayed open and silent would make every output frame wait for the
//! compositor's latency). A tag whose name and cell size are unchanged only moves;
//! otherwise a new tag replaces it (rendered once, not per frame).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::MediaError;
use super::label::{LabelFont, LabelImage, label_position};
use super::video::stop_and_remove;
use crate::config::MediaConfig;
use crate::layout::Rect;

/// Z-order of the tags: above every publisher pad (those count up from 1).
const TAG_ZORDER: u32 = 1_000_000;

/// The label font of a configuration: `None` with `media.labels` off. Fonts are
/// loaded once per process and shared by every room.
pub fn font_for(config: &MediaConfig) -> Result<Option<Arc<LabelFont>>, MediaError> {
    static FONTS: OnceLock<Mutex<HashMap<Option<std::path::PathBuf>, Arc<LabelFont>>>> = OnceLock::new();
    if !config.labels {
        return Ok(None);
    }
    let mut fonts = FONTS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(font) = fonts.get(&config.label_font) {
        return Ok(Some(Arc::clone(font)));
    }
    let font = match &config.label_font {
        Some(path) => LabelFont::from_file(path)?,
        None => LabelFont::embedded(),
    };
    fonts.insert(config.label_font.clone(), Arc::clone(&font));
    Ok(Some(font))
}

/// One tag on the compositor.
struct Tag {
    src: gst::Element,
    pad: gst::Pad,
    /// What it shows: a new name or cell size needs a new picture.
    name: String,
    cell_size: (u32, u32),
    image_size: (u32, u32),
}

/// The tags of one compositor.
pub(super) struct NameTags {
    font: Arc<LabelFont>,
    tags: HashMap<String, Tag>,
}

impl NameTags {
    pub(super) fn new(font: Arc<LabelFont>) -> Self {
        Self { font, tags: HashMap::new() }
    }

    /// Shows `name` in `cell` for each placed publisher `key`, and drops the tags of
    /// the others. Blocks briefly (state changes): call from a blocking context.
    pub(super) fn place(&mut self, pipeline: &gst::Pipeline, compositor: &gst::Element, placed: &[(&str, Rect, &str)]) {
        let gone: Vec<String> =
            self.tags.keys().filter(|k| !placed.iter().any(|(key, _, _)| key == k)).cloned().collect();
        for key in gone {
            self.remove(pipeline, compositor, &key);
        }
        // Replaced tags come down only once an output frame carries the new ones
        // (added is not yet drawn); one wait for all of them.
        let mut replaced = Vec::new();
        let mut drawn = Vec::new();
        for &(key, cell, name) in placed {
            let unchanged =
                self.tags.get(key).is_some_and(|t| t.name == name && t.cell_size == (cell.width, cell.height));
            if unchanged {
                if let Some(tag) = self.tags.get(key) {
                    let (x, y) = label_position(cell, tag.image_size.1);
                    tag.pad.set_property("xpos", x as i32);
                    tag.pad.set_property("ypos", y as i32);
                }
                continue;
            }
            // The new tag goes up before the old one comes down: no frame without.
            let old = self.tags.remove(key);
            if let Some(image) = self.font.render(name, cell) {
                match add_tag(pipeline, compositor, key, cell, &image) {
                    Ok((src, pad)) => {
                        let tag = Tag {
                            src,
                            pad,
                            name: name.to_owned(),
                            cell_size: (cell.width, cell.height),
                            image_size: (image.width, image.height),
                        };
                        if old.is_some() {
                            drawn.push(tag.pad.clone());
                        }
                        self.tags.insert(key.to_owned(), tag);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot draw a name tag"),
                }
            }
            replaced.extend(old);
        }
        if !drawn.is_empty() {
            wait_until_drawn(compositor, &drawn);
        }
        for old in replaced {
            drop_tag(pipeline, compositor, old);
        }
    }

    /// Drops every tag (the compositor is going away).
    pub(super) fn clear(&mut self, pipeline: &gst::Pipeline, compositor: &gst::Element) {
        let keys: Vec<String> = self.tags.keys().cloned().collect();
        for key in keys {
            self.remove(pipeline, compositor, &key);
        }
    }

    fn remove(&mut self, pipeline: &gst::Pipeline, compositor: &gst::Element, key: &str) {
        if let Some(tag) = self.tags.remove(key) {
            drop_tag(pipeline, compositor, tag);
        }
    }
}

/// How long a redraw waits for the new tag to reach an output frame.
const DRAWN_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// Waits until the frames of the new tags on `pads` have reached the compositor (their
/// end of stream, sticky on the pad, follows the one frame) and two output frames
/// have left since (the first may have been aggregated before), at most
/// [`DRAWN_WAIT`]. Blocks: call from a blocking context.
fn wait_until_drawn(compositor: &gst::Element, pads: &[gst::Pad]) {
    use std::sync::atomic::{AtomicU32, Ordering};
    let Some(output) = compositor.static_pad("src") else { return };
    let deadline = std::time::Instant::now() + DRAWN_WAIT;
    let arrived = || pads.iter().all(|p| p.sticky_event::<gst::event::Eos>(0).is_some());
    while !arrived() {
        if std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let frames = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&frames);
    let probe = output.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        gst::PadProbeReturn::Ok
    });
    while frames.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if let Some(id) = probe {
        output.remove_probe(id);
    }
}

/// Takes a tag off the compositor (same order as [`stop_and_remove`]: locked, pad
/// released, stopped, removed).
fn drop_tag(pipeline: &gst::Pipeline, compositor: &gst::Element, tag: Tag) {
    if let Err(e) = stop_and_remove(pipeline, &tag.src, || compositor.release_request_pad(&tag.pad)) {
        tracing::warn!(error = %e, "name tag");
    }
}

/// Adds a tag's source showing `image` at its place in `cell`.
fn add_tag(
    pipeline: &gst::Pipeline,
    compositor: &gst::Element,
    key: &str,
    cell: Rect,
    image: &LabelImage,
) -> Result<(gst::Element, gst::Pad), MediaError> {
    let fail = |what: &str| MediaError::Pipeline(format!("name tag of {key}: {what}"));
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, image.width, image.height)
        .fps(gst::Fraction::new(0, 1))
        .build()
        .map_err(|e| fail(&e.to_string()))?;
    let buffer = i420_buffer(&info, image).ok_or_else(|| fail("cannot fill a frame"))?;
    let caps = info.to_caps().map_err(|e| fail(&e.to_string()))?;
    // Not live: a live source that cannot buffer reports a maximum latency of 0, the
    // compositor's latency becomes unconfigurable ("max 0 < min 50 ms"), and it then
    // never times out on a stalled publisher: the whole composite froze.
    let src = gst_app::AppSrc::builder().caps(&caps).format(gst::Format::Time).is_live(false).build();
    pipeline.add(&src).map_err(|e| fail(&e.to_string()))?;
    let pad = compositor.request_pad_simple("sink_%u").ok_or_else(|| fail("compositor gave no pad"))?;
    let (x, y) = label_position(cell, image.height);
    pad.set_property("zorder", TAG_ZORDER);
    pad.set_property("repeat-after-eos", true);
    pad.set_property("xpos", x as i32);
    pad.set_property("ypos", y as i32);
    pad.set_property("width", image.width as i32);
    pad.set_property("height", image.height as i32);
    let started = src
        .static_pad("src")
        .ok_or_else(|| fail("appsrc has no pad"))
        .and_then(|p| p.link(&pad).map_err(|e| fail(&format!("cannot link: {e:?}"))))
        .and_then(|_| src.sync_state_with_parent().map_err(|e| fail(&e.to_string())));
    if let Err(e) = started {
        let _ = stop_and_remove(pipeline, &src, || compositor.release_request_pad(&pad));
        return Err(e);
    }
    // The one frame, then the end: the pad repeats it.
    let _ = src.push_buffer(buffer);
    let _ = src.end_of_stream();
    Ok((src.upcast(), pad))
}

/// The label as a frame in GStreamer's I420 layout (its chroma rows are padded to 4
/// bytes: a tightly packed buffer of an odd chroma width is too small for the
/// caps, and the compositor silently skips it). Stamped 0, in the past of every
/// output frame: the compositor takes it for the very next frame. Stamped "now" it
/// would wait until the output, which runs the pipeline's latency behind, caught
/// up, and the old tag, already gone, would leave a gap.
fn i420_buffer(info: &gst_video::VideoInfo, image: &LabelImage) -> Option<gst::Buffer> {
    let mut buffer = gst::Buffer::with_size(info.size()).ok()?;
    {
        let buf = buffer.get_mut()?;
        buf.set_pts(gst::ClockTime::ZERO);
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, info).ok()?;
        let (w, h) = (image.width as usize, image.height as usize);
        let planes = [(0, w, h), (w * h, w / 2, h / 2), (w * h + w * h / 4, w / 2, h / 2)];
        for (plane, (start, width, rows)) in planes.into_iter().enumerate() {
            let stride = info.stride()[plane] as usize;
            let data = frame.plane_data_mut(plane as u32).ok()?;
            for row in 0..rows {
                let from = &image.i420[start + row * width..start + (row + 1) * width];
                data[row * stride..row * stride + width].copy_from_slice(from);
            }
        }
    }
    Some(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::label::TAG_LUMA;
    use std::time::{Duration, Instant};

    /// A live compositor like the room's: its clock source, its latency, and a
    /// "camera" behind a 50 ms jitter buffer like a publisher's; raw frames out.
    fn compositor() -> (gst::Pipeline, gst::Element, gst_app::AppSink) {
        crate::media::init().unwrap();
        let pipeline = gst::parse::launch(
            "videotestsrc is-live=true pattern=black ! video/x-raw,format=I420,width=64,height=36,framerate=30/1 \
             ! compositor name=composite background=black latency=100000000 \
             ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 \
             ! appsink name=raw sync=false max-buffers=1000 drop=true \
             videotestsrc name=camera is-live=true pattern=black \
             ! video/x-raw,format=I420,width=64,height=36,framerate=30/1 \
             ! rtpvrawpay ! rtpjitterbuffer latency=50 ! rtpvrawdepay ! composite.",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let compositor = pipeline.by_name("composite").unwrap();
        if let Some(pad) = compositor.static_pad("sink_0") {
            pad.set_property("alpha", 0.0f64);
        }
        let sink = pipeline.by_name("raw").unwrap().downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        (pipeline, compositor, sink)
    }

    /// Lumas at `points` in every frame the compositor made during `wait`.
    fn frames(sink: &gst_app::AppSink, points: &[(u32, u32)], wait: Duration) -> Vec<Vec<u8>> {
        let start = Instant::now();
        let mut out = Vec::new();
        while start.elapsed() < wait {
            let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else { continue };
            let map = sample.buffer().unwrap().map_readable().unwrap();
            out.push(points.iter().map(|&(x, y)| map[(y * 640 + x) as usize]).collect());
        }
        out
    }

    /// Inside the tag of `name` in `cell`, on its background left of the text.
    fn tag_point(cell: Rect, name: &str) -> (u32, u32) {
        let label = LabelFont::embedded().render(name, cell).unwrap();
        let (x, y) = label_position(cell, label.height);
        (x + 1, y + label.height / 2)
    }

    fn drain(sink: &gst_app::AppSink) {
        while sink.try_pull_sample(gst::ClockTime::ZERO).is_some() {}
    }

    #[test]
    fn tags_show_where_their_cells_are_and_are_replaced_without_a_missing_frame() {
        let (pipeline, compositor, sink) = compositor();
        let mut tags = NameTags::new(LabelFont::embedded());
        let left = Rect { x: 0, y: 0, width: 320, height: 360 };
        let right = Rect { x: 320, y: 0, width: 320, height: 360 };
        tags.place(&pipeline, &compositor, &[("a", left, "Alice"), ("b", right, "Bob")]);
        let (a, b) = (tag_point(left, "Alice"), tag_point(right, "Bob"));
        let seen = frames(&sink, &[a, b], Duration::from_millis(300));
        let last = seen.last().unwrap();
        assert!(last.iter().all(|&l| l.abs_diff(TAG_LUMA) <= 2), "both tags drawn: {last:?}");

        // The "camera" stalls: the composite goes on. (Live tag sources, which cannot
        // buffer, made the compositor's latency unconfigurable; it then waited for
        // ever on a stalled input.)
        let camera = pipeline.by_name("camera").unwrap().static_pad("src").unwrap();
        camera.add_probe(gst::PadProbeType::BUFFER, |_, _| gst::PadProbeReturn::Drop);
        drain(&sink);
        let seen = frames(&sink, &[a], Duration::from_millis(1000));
        assert!(seen.len() >= 20, "{} frames in 1 s with a stalled input", seen.len());

        // Renamed again and again (a new picture each time, same place): every frame
        // has the tag, old or new.
        drain(&sink);
        for i in 0..10 {
            let name = if i % 2 == 0 { "Alicia" } else { "Alice" };
            tags.place(&pipeline, &compositor, &[("a", left, name), ("b", right, "Bob")]);
            std::thread::sleep(Duration::from_millis(40));
        }
        let seen = frames(&sink, &[a], Duration::from_millis(200));
        assert!(seen.len() > 10, "{} frames", seen.len());
        let missing = seen.iter().filter(|l| l[0].abs_diff(TAG_LUMA) > 2).count();
        assert_eq!(missing, 0, "frames without the tag while it was redrawn: {seen:?}");

        // Bob leaves: his tag goes; Alice's cell moves right (same size): hers moves.
        tags.place(&pipeline, &compositor, &[("a", right, "Alice")]);
        let moved = tag_point(right, "Alice");
        let seen = frames(&sink, &[a, moved, b], Duration::from_millis(200));
        let last = seen.last().unwrap();
        assert!(last[0] < TAG_LUMA - 10, "nothing left where Alice's tag was: {last:?}");
        assert_eq!(last[1], TAG_LUMA, "Alice's tag moved with her cell: {last:?}");
        tags.clear(&pipeline, &compositor);
        let seen = frames(&sink, &[moved], Duration::from_millis(200));
        assert!(seen.last().unwrap()[0] < TAG_LUMA - 10, "cleared");
        pipeline.set_state(gst::State::Null).unwrap();
    }
}
