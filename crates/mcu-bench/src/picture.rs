//! A picture panned across a camera's view, one pixel a frame: content whose every
//! frame is known, so that whoever decodes it can tell which frame a picture shows
//! and how far it is from it (PSNR/SSIM against the uncompressed view). The picture
//! is a photograph read from a file, or a texture made here (smooth detail at several
//! scales, like a photograph, from a seed).

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

/// An I420 picture wider than the view it is panned through.
#[derive(Debug, Clone)]
pub struct PannedPicture {
    /// Width of the whole picture (even).
    pub width: u32,
    /// Height of the whole picture (even).
    pub height: u32,
    luma: Vec<u8>,
    cb: Vec<u8>,
    cr: Vec<u8>,
    /// The part of the view that pans (x, y, width, height; even); the rest of the
    /// view stays at position 0. `None`: all of it.
    moving: Option<[u32; 4]>,
    /// Whether frames carry [`MARKS`] flat blocks whose levels tell the frame.
    marked: bool,
}

/// Flat blocks a marked frame carries (32x32, on the macroblock grid, along the top).
pub const MARKS: usize = 8;
const MARK_SIZE: u32 = 32;
/// A mark's level moves by this much from one frame to the next (up, down or not):
/// small steps that an encoder codes as a difference from the frame before, so a
/// frame decoded against the wrong reference shows levels no frame had.
const MARK_STEP: i32 = 8;

impl PannedPicture {
    /// A texture of `width` x `height` (made even) from `seed`: value noise at 48, 16
    /// and 6 pixels, with sharp-edged blocks over it (edges show a picture out of
    /// place, as a photograph's do), in studio-range luma and gently varying chroma.
    pub fn generated(width: u32, height: u32, seed: u64) -> Self {
        let (width, height) = (width & !1, height & !1);
        let noise = |x: u32, y: u32, salt: u64, scales: &[(u32, f64)]| -> f64 {
            scales.iter().map(|&(cell, amplitude)| amplitude * value_noise(x, y, cell, seed ^ salt)).sum()
        };
        let luma_scales = [(48, 60.0), (16, 24.0), (6, 8.0)];
        let chroma_scales = [(64, 40.0), (24, 12.0)];
        // Blocks on a 24-pixel lattice, each a step up or down (or none), with edges
        // one pixel wide.
        let block = |x: u32, y: u32| -> f64 {
            let v = lattice(x / 24, y / 24, seed ^ 0xb10c);
            if v > 0.4 {
                36.0
            } else if v < -0.4 {
                -36.0
            } else {
                0.0
            }
        };
        let mut luma = Vec::with_capacity((width * height) as usize);
        for y in 0..height {
            for x in 0..width {
                luma.push((126.0 + noise(x, y, 0, &luma_scales) + block(x, y)).clamp(16.0, 235.0) as u8);
            }
        }
        let (cw, ch) = (width / 2, height / 2);
        let mut cb = Vec::with_capacity((cw * ch) as usize);
        let mut cr = Vec::with_capacity((cw * ch) as usize);
        for y in 0..ch {
            for x in 0..cw {
                cb.push((128.0 + noise(x, y, 0x5eed, &chroma_scales)).clamp(16.0, 240.0) as u8);
                cr.push((128.0 + noise(x, y, 0xc0de, &chroma_scales)).clamp(16.0, 240.0) as u8);
            }
        }
        Self { width, height, luma, cb, cr, moving: None, marked: false }
    }

    /// The picture in `path` (any format GStreamer decodes), scaled to `width`
    /// columns with its aspect ratio kept.
    pub fn from_file(path: &Path, width: u32) -> Result<Self, String> {
        let location = path.to_str().ok_or("path is not UTF-8")?;
        Self::from_source(
            &format!("filesrc location=\"{location}\" ! decodebin"),
            &format!("width={width},pixel-aspect-ratio=1/1"),
        )
        .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The first picture `head` (a gst-launch description ending in raw video) makes,
    /// scaled to `caps` (e.g. `width=800,height=360`).
    pub fn from_source(head: &str, caps: &str) -> Result<Self, String> {
        gst::init().map_err(|e| e.to_string())?;
        let description = format!(
            "{head} ! videoconvert ! videoscale add-borders=false ! video/x-raw,format=I420,{caps} \
             ! appsink name=out sync=false"
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| e.to_string())?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline".to_owned())?;
        let sink = pipeline.by_name("out").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).ok_or("no appsink")?;
        pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
        let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(20));
        let _ = pipeline.set_state(gst::State::Null);
        let sample = sample.ok_or("no picture decoded")?;
        let info = gst_video::VideoInfo::from_caps(sample.caps().ok_or("no caps")?).map_err(|e| e.to_string())?;
        let buffer = sample.buffer().ok_or("no buffer")?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).map_err(|e| e.to_string())?;
        let (width, height) = (info.width() & !1, info.height() & !1);
        let plane = |index: u32, w: u32, h: u32| -> Result<Vec<u8>, String> {
            let stride = frame.plane_stride()[index as usize] as usize;
            let data = frame.plane_data(index).map_err(|e| e.to_string())?;
            Ok((0..h as usize).flat_map(|y| data[y * stride..y * stride + w as usize].iter().copied()).collect())
        };
        Ok(Self {
            width,
            height,
            luma: plane(0, width, height)?,
            cb: plane(1, width / 2, height / 2)?,
            cr: plane(2, width / 2, height / 2)?,
            moving: None,
            marked: false,
        })
    }

    /// Frames carry [`MARKS`] blocks whose levels say which frame they are
    /// ([`Self::write_frame`], [`Self::frame_of`]).
    pub fn marked(mut self) -> Self {
        self.marked = true;
        self
    }

    /// Writes frame `frame` (the view at [`Self::offset`], with its marks when
    /// [`Self::marked`]) into `out`, I420 of `view`'s size.
    pub fn write_frame(&self, frame: u64, view: (u32, u32), out: &mut [u8]) {
        self.write_view(self.offset(frame, view.0), view, out);
        if self.marked {
            // Grey marks (neutral chroma): their colour never clips, whatever a receiver converts them to.
            let (luma, chroma) = out.split_at_mut((view.0 * view.1) as usize);
            let half = (view.0 / 2) as usize;
            self.overlay_marks(frame, view.0, luma);
            for i in 0..MARKS {
                let (x, y) = mark_origin(i);
                for row in y / 2..(y + MARK_SIZE) / 2 {
                    for plane in 0..2 {
                        let at = plane * half * (view.1 / 2) as usize + row as usize * half + (x / 2) as usize;
                        chroma[at..at + (MARK_SIZE / 2) as usize].fill(128);
                    }
                }
            }
        }
    }

    /// Draws frame `frame`'s marks into `luma` (a view's luma, `view_width` wide): the
    /// picture a receiver should see, from the view it matched and the frame its
    /// marks say.
    pub fn overlay_marks(&self, frame: u64, view_width: u32, luma: &mut [u8]) {
        for (i, level) in mark_levels(frame).into_iter().enumerate() {
            let (x, y) = mark_origin(i);
            for row in y..y + MARK_SIZE {
                let at = (row * view_width + x) as usize;
                luma[at..at + MARK_SIZE as usize].fill(level);
            }
        }
    }

    /// The luma a receiver should see for `frame` (view and marks).
    pub fn luma_frame(&self, frame: u64, view: (u32, u32)) -> Vec<u8> {
        let mut luma = self.luma_view(self.offset(frame, view.0), view);
        if self.marked {
            self.overlay_marks(frame, view.0, &mut luma);
        }
        luma
    }

    /// The frame among `0..frames` whose marks `luma` shows (each mark's mean within
    /// a quarter step of its level), or `None`: a picture no frame was.
    pub fn frame_of(&self, luma: &[u8], view_width: u32, frames: u64) -> Option<u64> {
        let seen: Vec<f64> = (0..MARKS)
            .map(|i| {
                let (x, y) = mark_origin(i);
                let (x, y) = (x + 4, y + 4);
                let inner = MARK_SIZE - 8;
                let sum: u64 = (y..y + inner)
                    .flat_map(|row| luma[(row * view_width + x) as usize..][..inner as usize].iter())
                    .map(|&v| u64::from(v))
                    .sum();
                sum as f64 / f64::from(inner * inner)
            })
            .collect();
        let tolerance = f64::from(MARK_STEP) / 2.0;
        (0..frames).rev().find(|&frame| {
            mark_levels(frame).iter().zip(&seen).all(|(&level, &mean)| (f64::from(level) - mean).abs() < tolerance)
        })
    }

    /// Only `region` of the view (x, y, width, height, in view pixels) pans; the rest
    /// holds still at position 0: a speaker moving in front of a still background.
    pub fn moving_only(mut self, region: [u32; 4]) -> Self {
        self.moving = Some(region.map(|v| v & !1));
        self
    }

    /// How many horizontal positions a `view_width` view has.
    pub fn positions(&self, view_width: u32) -> u32 {
        self.width.saturating_sub(view_width) + 1
    }

    /// The view's left edge in frame `frame`: one pixel a frame, to the right edge
    /// and back.
    pub fn offset(&self, frame: u64, view_width: u32) -> u32 {
        let span = u64::from(self.positions(view_width).saturating_sub(1));
        if span == 0 {
            return 0;
        }
        let phase = frame % (2 * span);
        (if phase <= span { phase } else { 2 * span - phase }) as u32
    }

    /// Top row of every view (centred).
    fn top(&self, view_height: u32) -> u32 {
        (self.height.saturating_sub(view_height) / 2) & !1
    }

    /// Where row `row` of a view at `x` reads from: `(column, source x)` runs
    /// covering the view's width.
    fn runs(&self, x: u32, row: u32, view_width: u32) -> [(u32, u32, u32); 3] {
        match self.moving {
            Some([rx, ry, rw, rh]) if row >= ry && row < ry + rh => {
                let right = (rx + rw).min(view_width);
                [(0, rx, 0), (rx, right, x), (right, view_width, 0)]
            }
            Some(_) => [(0, view_width, 0), (0, 0, 0), (0, 0, 0)],
            None => [(0, view_width, x), (0, 0, 0), (0, 0, 0)],
        }
    }

    /// Writes the `view_width` x `view_height` I420 view at `x` into `out` (its
    /// size: `view_width * view_height * 3 / 2`).
    pub fn write_view(&self, x: u32, (view_width, view_height): (u32, u32), out: &mut [u8]) {
        let top = self.top(view_height) as usize;
        let (w, h) = (view_width as usize, view_height as usize);
        let (luma, chroma) = out.split_at_mut(w * h);
        let (cb, cr) = chroma.split_at_mut(w * h / 4);
        let stride = self.width as usize;
        for row in 0..h {
            for (from, to, left) in self.runs(x, row as u32, view_width) {
                let (from, to, left) = (from as usize, to as usize, left as usize);
                let at = (top + row) * stride + left + from;
                luma[row * w + from..row * w + to].copy_from_slice(&self.luma[at..at + to - from]);
            }
        }
        for row in 0..h / 2 {
            for (from, to, left) in self.runs(x, 2 * row as u32, view_width) {
                let (from, to, left) = (from as usize / 2, to as usize / 2, left as usize / 2);
                let at = (top / 2 + row) * stride / 2 + left + from;
                cb[row * w / 2 + from..row * w / 2 + to].copy_from_slice(&self.cb[at..at + to - from]);
                cr[row * w / 2 + from..row * w / 2 + to].copy_from_slice(&self.cr[at..at + to - from]);
            }
        }
    }

    /// The luma of the view at `x`, row by row.
    pub fn luma_view(&self, x: u32, (view_width, view_height): (u32, u32)) -> Vec<u8> {
        let top = self.top(view_height) as usize;
        let stride = self.width as usize;
        let mut out = Vec::with_capacity((view_width * view_height) as usize);
        for row in 0..view_height {
            for (from, to, left) in self.runs(x, row, view_width) {
                let at = (top + row as usize) * stride + (left + from) as usize;
                out.extend_from_slice(&self.luma[at..at + (to - from) as usize]);
            }
        }
        out
    }

    /// The position whose view `luma` (`view_width` x `view_height`, row by row)
    /// shows best: the smallest sum of absolute differences over eight rows spread
    /// down the view. Cheap enough for every frame of a call.
    pub fn locate(&self, luma: &[u8], (view_width, view_height): (u32, u32)) -> u32 {
        let w = view_width as usize;
        let rows: Vec<u32> = (0..8).map(|i| (view_height * (2 * i + 1)) / 16).collect();
        let top = self.top(view_height) as usize;
        let stride = self.width as usize;
        (0..self.positions(view_width))
            .min_by_key(|&x| {
                let mut sad = 0u64;
                for &row in &rows {
                    let seen = &luma[row as usize * w..][..w];
                    for (from, to, left) in self.runs(x, row, view_width) {
                        let at = (top + row as usize) * stride + (left + from) as usize;
                        let source = &self.luma[at..at + (to - from) as usize];
                        let part = &seen[from as usize..to as usize];
                        sad += source.iter().zip(part).map(|(a, b)| u64::from(a.abs_diff(*b))).sum::<u64>();
                    }
                }
                sad
            })
            .unwrap_or(0)
    }
}

/// Where mark `i` sits in a view.
fn mark_origin(i: usize) -> (u32, u32) {
    (32 + 64 * i as u32, 16)
}

/// The marks' levels in `frame`: each mark follows a slow sine of its own frequency
/// in 17 levels [`MARK_STEP`] apart, so from one frame to the next a level moves by
/// one step or none.
fn mark_levels(frame: u64) -> [u8; MARKS] {
    std::array::from_fn(|i| {
        let (frequency, phase) = (0.09 + 0.005 * i as f64, 0.7 * i as f64);
        let walk = (8.0 * (frame as f64 * frequency + phase).sin()).round() as i32;
        (128 + walk * MARK_STEP).clamp(0, 255) as u8
    })
}

/// Smooth noise in [-1, 1]: random values on a `cell`-pixel grid, interpolated.
fn value_noise(x: u32, y: u32, cell: u32, seed: u64) -> f64 {
    let (gx, gy) = (x / cell, y / cell);
    let (fx, fy) = (f64::from(x % cell) / f64::from(cell), f64::from(y % cell) / f64::from(cell));
    let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (smooth(fx), smooth(fy));
    let at = |ix: u32, iy: u32| lattice(ix, iy, seed);
    let top = at(gx, gy) * (1.0 - sx) + at(gx + 1, gy) * sx;
    let bottom = at(gx, gy + 1) * (1.0 - sx) + at(gx + 1, gy + 1) * sx;
    top * (1.0 - sy) + bottom * sy
}

/// A value in [-1, 1] for a lattice point (a hash, splitmix64's finaliser).
fn lattice(x: u32, y: u32, seed: u64) -> f64 {
    let mut z = seed ^ (u64::from(x) << 32 | u64::from(y)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_pans_to_the_edge_and_back() {
        let picture = PannedPicture::generated(100, 20, 1);
        let offsets: Vec<u32> = (0..24).map(|f| picture.offset(f, 90)).collect();
        assert_eq!(&offsets[..12], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 9]);
        assert_eq!(offsets[20], 0);
    }

    #[test]
    fn a_view_is_located_at_its_offset() {
        let picture = PannedPicture::generated(400, 120, 9);
        for x in [0, 1, 57, 58, 239, 240] {
            let view = picture.luma_view(x, (160, 90));
            assert_eq!(picture.locate(&view, (160, 90)), x);
        }
    }

    #[test]
    fn the_texture_has_detail_and_stays_in_studio_range() {
        let picture = PannedPicture::generated(320, 180, 3);
        let (min, max) = picture.luma.iter().fold((255, 0), |(lo, hi), &v| (v.min(lo), v.max(hi)));
        assert!(min >= 16 && max <= 235 && max - min > 100, "{min}..{max}");
        let mut out = vec![0u8; 160 * 90 * 3 / 2];
        picture.write_view(3, (160, 90), &mut out);
        assert_eq!(&out[..160 * 90], &picture.luma_view(3, (160, 90))[..]);
    }

    #[test]
    fn a_marked_frame_is_known_by_its_marks() {
        let picture = PannedPicture::generated(700, 360, 4).marked();
        let mut out = vec![0u8; 640 * 360 * 3 / 2];
        for frame in [0, 1, 2, 77, 300] {
            picture.write_frame(frame, (640, 360), &mut out);
            assert_eq!(&out[..640 * 360], &picture.luma_frame(frame, (640, 360))[..]);
            assert_eq!(picture.frame_of(&out[..640 * 360], 640, 400), Some(frame));
        }
        // Frame 5's picture with frame 4's marks moved by frame 6's steps: no frame.
        let (l4, l5, l6) = (mark_levels(4), mark_levels(5), mark_levels(6));
        let mut luma = picture.luma_frame(6, (640, 360));
        for i in 0..MARKS {
            let (x, y) = mark_origin(i);
            let level = (i32::from(l4[i]) + i32::from(l6[i]) - i32::from(l5[i])).clamp(0, 255) as u8;
            for row in y..y + MARK_SIZE {
                luma[(row * 640 + x) as usize..][..MARK_SIZE as usize].fill(level);
            }
        }
        if (0..MARKS).any(|i| l5[i] != l4[i]) {
            assert_eq!(picture.frame_of(&luma, 640, 400), None);
        }
    }

    #[test]
    fn mark_levels_move_in_small_steps() {
        for frame in 0..600 {
            for (a, b) in mark_levels(frame).iter().zip(mark_levels(frame + 1)) {
                assert!(i32::from(*a).abs_diff(i32::from(b)) <= MARK_STEP as u32, "{frame}");
            }
        }
    }

    #[test]
    fn only_the_moving_region_pans() {
        let picture = PannedPicture::generated(400, 120, 5).moving_only([40, 30, 80, 30]);
        let (still, moved) = (picture.luma_view(0, (160, 90)), picture.luma_view(20, (160, 90)));
        assert_eq!(&still[..160 * 30], &moved[..160 * 30], "rows above the region hold still");
        assert_ne!(&still[160 * 30..160 * 60], &moved[160 * 30..160 * 60]);
        assert_eq!(picture.locate(&moved, (160, 90)), 20);
        let mut out = vec![0u8; 160 * 90 * 3 / 2];
        picture.write_view(20, (160, 90), &mut out);
        assert_eq!(&out[..160 * 90], &moved[..]);
    }
}
