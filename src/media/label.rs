//! Name labels: a publisher's display name as a small picture (white text on a dark
//! tag) that the compositor draws in the bottom-left corner of the publisher's cell.
//!
//! A label is rasterised once, when the name or the cell's size changes, straight into
//! I420 (the composite's format, so the compositor neither converts nor allocates for
//! it), and then shown as a still picture on its own compositor pad. Text is never
//! drawn per frame. The tag is opaque: white on a dark box reads on any picture, which
//! a translucent box or an outline alone does not on a busy one.

use std::sync::Arc;

use ab_glyph::{Font, FontArc, GlyphId, PxScale, ScaleFont, point};

use super::MediaError;
use crate::layout::Rect;

/// The font drawn when `media.label_font` is unset: DejaVu Sans Bold (Latin, Greek,
/// Cyrillic and more; see assets/fonts/LICENSE-DejaVu.txt).
const EMBEDDED_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// Luma of the tag behind the text (near black, distinct from a picture's pure black).
pub const TAG_LUMA: u8 = 40;
/// Luma of the text.
pub const TEXT_LUMA: u8 = 235;
/// Chroma of the whole label: neutral grey.
const NEUTRAL_CHROMA: u8 = 128;
/// What ends a name cut short to fit its cell.
const ELLIPSIS: char = '\u{2026}';

/// A label rasterised in I420, `width` x `height` (both even).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The Y plane, then U, then V (each chroma plane a quarter of the Y plane).
    pub i420: Vec<u8>,
}

impl LabelImage {
    /// The label's luma at `(x, y)`.
    pub fn luma(&self, x: u32, y: u32) -> u8 {
        self.i420[(y * self.width + x) as usize]
    }
}

/// The sizes a label takes in a cell: text height and spacing, all from the cell's
/// height so that a small cell of a big grid gets a small label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelMetrics {
    /// Font size in pixels.
    pub text_px: u32,
    /// Space between the tag's edge and the text, left and right.
    pub pad_x: u32,
    /// Space between the cell's edges and the tag.
    pub margin: u32,
}

impl LabelMetrics {
    /// The metrics for a cell: text a twelfth of the cell's height, within 10..=32 px.
    pub fn for_cell(cell: Rect) -> Self {
        let text_px = (cell.height / 12).clamp(10, 32);
        Self { text_px, pad_x: text_px / 3, margin: (text_px / 4).max(2) }
    }
}

/// Where a label `height` pixels high goes in `cell`: its bottom-left corner, inside
/// the margin, on even coordinates (chroma-aligned).
pub fn label_position(cell: Rect, height: u32) -> (u32, u32) {
    let margin = LabelMetrics::for_cell(cell).margin;
    let x = (cell.x + margin) & !1;
    let y = (cell.y + cell.height).saturating_sub(margin + height) & !1;
    (x, y.max(cell.y & !1))
}

/// Rasterises names with one font.
#[derive(Clone)]
pub struct LabelFont {
    font: FontArc,
}

impl std::fmt::Debug for LabelFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelFont").finish_non_exhaustive()
    }
}

impl LabelFont {
    /// The embedded font.
    pub fn embedded() -> Arc<Self> {
        // The embedded file is a valid font: a failure here is a build defect.
        let font = FontArc::try_from_slice(EMBEDDED_FONT).expect("the embedded label font parses");
        Arc::new(Self { font })
    }

    /// A TrueType/OpenType font file (`media.label_font`), for names in scripts the
    /// embedded font lacks.
    pub fn from_file(path: &std::path::Path) -> Result<Arc<Self>, MediaError> {
        let data = std::fs::read(path)
            .map_err(|e| MediaError::Pipeline(format!("cannot read label font {}: {e}", path.display())))?;
        let font = FontArc::try_from_vec(data)
            .map_err(|e| MediaError::Pipeline(format!("label font {} is not a font: {e}", path.display())))?;
        Ok(Arc::new(Self { font }))
    }

    /// The label of `name` for `cell`, or `None` when nothing fits (a blank name, or a
    /// cell too small for even one letter).
    pub fn render(&self, name: &str, cell: Rect) -> Option<LabelImage> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let metrics = LabelMetrics::for_cell(cell);
        let scaled = self.font.as_scaled(PxScale::from(metrics.text_px as f32));
        let text_height = (scaled.ascent() - scaled.descent()).ceil() as u32;
        let height = even_up(text_height + metrics.text_px / 4);
        let max_width = cell.width.saturating_sub(2 * metrics.margin) & !1;
        let max_text = max_width.checked_sub(2 * metrics.pad_x)?;
        let glyphs = fit_text(&scaled, name, max_text as f32)?;
        let text_width = glyphs.last().map_or(0.0, |g| g.1 + scaled.h_advance(g.0));
        let width = even_up(text_width.ceil() as u32 + 2 * metrics.pad_x).min(max_width);
        if width == 0 || height > cell.height.saturating_sub(2 * metrics.margin) {
            return None;
        }
        let mut coverage = vec![0f32; (width * height) as usize];
        let baseline = (height - text_height) as f32 / 2.0 + scaled.ascent();
        for (id, x) in glyphs {
            let glyph = id.with_scale_and_position(scaled.scale(), point(metrics.pad_x as f32 + x, baseline));
            let Some(outline) = self.font.outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, c| {
                let px = bounds.min.x as i64 + i64::from(gx);
                let py = bounds.min.y as i64 + i64::from(gy);
                if (0..i64::from(width)).contains(&px) && (0..i64::from(height)).contains(&py) {
                    let at = (py as u32 * width + px as u32) as usize;
                    coverage[at] = (coverage[at] + c).min(1.0);
                }
            });
        }
        Some(to_i420(&coverage, width, height))
    }
}

/// Glyphs of `text` with their pen positions, shortened with an ellipsis when wider
/// than `max_width`; `None` when not even one letter and the ellipsis fit.
fn fit_text<F: Font, S: ScaleFont<F>>(font: &S, text: &str, max_width: f32) -> Option<Vec<(GlyphId, f32)>> {
    let layout = |chars: &mut dyn Iterator<Item = char>| {
        let mut pen = 0.0f32;
        let mut previous: Option<GlyphId> = None;
        let mut out = Vec::new();
        for c in chars {
            let id = font.glyph_id(c);
            if let Some(p) = previous {
                pen += font.kern(p, id);
            }
            out.push((id, pen));
            pen += font.h_advance(id);
            previous = Some(id);
        }
        (out, pen)
    };
    let (all, width) = layout(&mut text.chars());
    if width <= max_width {
        return Some(all);
    }
    let count = text.chars().count();
    (1..count).rev().find_map(|keep| {
        let (glyphs, width) = layout(&mut text.chars().take(keep).chain(std::iter::once(ELLIPSIS)));
        (width <= max_width).then_some(glyphs)
    })
}

/// Text coverage (0..=1 per pixel) to an I420 label: text over the tag, neutral chroma.
fn to_i420(coverage: &[f32], width: u32, height: u32) -> LabelImage {
    let luma_size = (width * height) as usize;
    let mut i420 = vec![NEUTRAL_CHROMA; luma_size + luma_size / 2];
    let span = f32::from(TEXT_LUMA - TAG_LUMA);
    for (out, c) in i420[..luma_size].iter_mut().zip(coverage) {
        *out = TAG_LUMA + (c * span).round() as u8;
    }
    LabelImage { width, height, i420 }
}

fn even_up(v: u32) -> u32 {
    v + (v & 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(width: u32, height: u32) -> Rect {
        Rect { x: 640, y: 360, width, height }
    }

    /// Columns of the label holding text (any pixel brighter than the tag).
    fn inked_columns(label: &LabelImage) -> Vec<u32> {
        (0..label.width).filter(|&x| (0..label.height).any(|y| label.luma(x, y) > TAG_LUMA + 60)).collect()
    }

    #[test]
    fn a_name_becomes_white_text_on_a_dark_tag_that_fits_its_cell() {
        let font = LabelFont::embedded();
        for (w, h) in [(640, 360), (320, 180), (1280, 540), (256, 144), (160, 90)] {
            let label = font.render("Alice", cell(w, h)).unwrap();
            assert_eq!(label.i420.len() as u32, label.width * label.height * 3 / 2);
            assert!(label.width.is_multiple_of(2) && label.height.is_multiple_of(2));
            let m = LabelMetrics::for_cell(cell(w, h));
            assert!(label.width <= w - 2 * m.margin && label.height <= h - 2 * m.margin, "{w}x{h}: {label:?}");
            let (x, y) = label_position(cell(w, h), label.height);
            assert!(x >= 640 && x + label.width <= 640 + w, "{w}x{h}: x {x}");
            assert!(y >= 360 && y + label.height <= 360 + h, "{w}x{h}: y {y}");
            // Bottom-left: nearer the cell's left and bottom edges than its others.
            assert!(x - 640 < 640 + w - (x + label.width));
            assert!(360 + h - (y + label.height) < y - 360);
            let lumas: Vec<u8> = label.i420[..(label.width * label.height) as usize].to_vec();
            assert!(lumas.contains(&TAG_LUMA), "the tag shows around the text");
            assert!(lumas.iter().filter(|&&l| l >= 180).count() > 10, "{w}x{h}: bright text pixels");
            assert!(label.i420[(label.width * label.height) as usize..].iter().all(|&c| c == NEUTRAL_CHROMA));
        }
    }

    #[test]
    fn text_grows_with_the_cell_within_bounds() {
        let font = LabelFont::embedded();
        let small = font.render("Alice", cell(160, 90)).unwrap();
        let big = font.render("Alice", cell(1280, 540)).unwrap();
        assert!(big.height > small.height * 2, "{} vs {}", big.height, small.height);
        assert_eq!(LabelMetrics::for_cell(cell(1280, 720)).text_px, 32);
        assert_eq!(LabelMetrics::for_cell(cell(100, 60)).text_px, 10);
    }

    #[test]
    fn different_names_draw_differently_and_longer_names_draw_wider() {
        let font = LabelFont::embedded();
        let c = cell(640, 360);
        let bob = font.render("Bob", c).unwrap();
        let bobby = font.render("Bobby Tables", c).unwrap();
        assert!(bobby.width > bob.width * 2);
        let ann = font.render("Ann", c).unwrap();
        assert_ne!(ann.i420, bob.i420);
        // Text starts after the padding and stays off the edges.
        let inked = inked_columns(&bob);
        assert!(*inked.first().unwrap() >= LabelMetrics::for_cell(c).pad_x - 2);
        assert!(*inked.last().unwrap() < bob.width - 2);
    }

    #[test]
    fn a_name_too_long_for_its_cell_ends_in_an_ellipsis() {
        let font = LabelFont::embedded();
        let c = cell(160, 90);
        let long = "Bartholomew Montgomery-Fitzwilliam the Third";
        let label = font.render(long, c).unwrap();
        let m = LabelMetrics::for_cell(c);
        assert_eq!(label.width, (160 - 2 * m.margin) & !1, "uses the cell's width");
        let cut = font.render("Bartholomew", c).unwrap();
        assert_ne!(label.i420, cut.i420);
    }

    #[test]
    fn blank_names_and_tiny_cells_get_no_label() {
        let font = LabelFont::embedded();
        assert_eq!(font.render("   ", cell(640, 360)), None);
        assert_eq!(font.render("Alice", cell(12, 360)), None);
        assert_eq!(font.render("Alice", cell(640, 12)), None);
    }

    #[test]
    fn names_in_other_scripts_draw_glyphs() {
        let font = LabelFont::embedded();
        for name in ["Zoë Åström", "Дмитрий", "Σοφία"] {
            let label = font.render(name, cell(640, 360)).unwrap();
            assert!(inked_columns(&label).len() > 20, "{name}");
        }
    }

    #[test]
    fn a_font_file_that_is_not_a_font_is_an_error() {
        let dir = std::env::temp_dir().join(format!("label-font-{}", std::process::id()));
        std::fs::write(&dir, b"not a font").unwrap();
        assert!(LabelFont::from_file(&dir).is_err());
        assert!(LabelFont::from_file(std::path::Path::new("/nonexistent/font.ttf")).is_err());
        let _ = std::fs::remove_file(dir);
    }
}
