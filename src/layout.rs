//! Layout math for the shared composite (contract: the "grid" and "speaker" layouts).
//!
//! Pure functions: given the canvas size and the number of video publishers, where does
//! each publisher's cell go. The compositor scales each picture into its cell keeping
//! the aspect ratio (black bars), so only the cells are computed here.

/// A rectangle on the canvas, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Rect {
    /// The centre point, used by tests and probes that sample a cell's colour.
    pub fn center(&self) -> (u32, u32) {
        (self.x + self.width / 2, self.y + self.height / 2)
    }
}

/// Columns and rows of the grid for `n` publishers: `cols = ceil(sqrt(n))`,
/// `rows = ceil(n / cols)`. Zero publishers give an empty 0x0 grid.
pub fn grid_dimensions(n: usize) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let mut cols = (n as f64).sqrt().floor() as usize;
    // Exact integer ceil(sqrt(n)), immune to floating point rounding.
    while cols * cols < n {
        cols += 1;
    }
    let rows = n.div_ceil(cols);
    (cols, rows)
}

/// The cells of the grid, one per publisher in join order: publisher `i` gets
/// column `i % cols`, row `i / cols`, each cell `W/cols x H/rows`.
pub fn grid_cells(canvas_width: u32, canvas_height: u32, n: usize) -> Vec<Rect> {
    let (cols, rows) = grid_dimensions(n);
    (0..n).map(|i| cell_at(canvas_width, canvas_height, cols, rows, i)).collect()
}

/// The cell of publisher `index` in a `cols x rows` grid.
pub fn cell_at(canvas_width: u32, canvas_height: u32, cols: usize, rows: usize, index: usize) -> Rect {
    let (cols_u, rows_u) = (cols as u32, rows as u32);
    let (col, row) = ((index % cols) as u32, (index / cols) as u32);
    Rect {
        x: col * canvas_width / cols_u,
        y: row * canvas_height / rows_u,
        width: canvas_width / cols_u,
        height: canvas_height / rows_u,
    }
}

/// The speaker layout: publisher `featured` (an index in join order) fills the main
/// area, `W x 3H/4` at the top; the others, in join order, fill a bottom strip of
/// `k = max(n-1, 4)` equal cells, the `i`th of them at `x = i*W/k, y = 3H/4`, each
/// `W/k x H/4`. With one publisher only the main area is used. A `featured` out of
/// range features the first publisher. Cells are returned in join order.
pub fn speaker_cells(canvas_width: u32, canvas_height: u32, n: usize, featured: usize) -> Vec<Rect> {
    if n == 0 {
        return Vec::new();
    }
    let featured = if featured < n { featured } else { 0 };
    let main_height = canvas_height * 3 / 4;
    let strip_cells = (n - 1).max(4) as u32;
    let mut strip_index = 0u32;
    (0..n)
        .map(|i| {
            if i == featured {
                return Rect { x: 0, y: 0, width: canvas_width, height: main_height };
            }
            let cell = Rect {
                x: strip_index * canvas_width / strip_cells,
                y: main_height,
                width: canvas_width / strip_cells,
                height: canvas_height / 4,
            };
            strip_index += 1;
            cell
        })
        .collect()
}

/// Where a `src_w x src_h` picture lands inside `cell` when scaled to fit keeping its
/// aspect ratio and centred (the rest of the cell stays black).
pub fn fit_in_cell(cell: Rect, src_w: u32, src_h: u32) -> Rect {
    if src_w == 0 || src_h == 0 {
        return cell;
    }
    // Compare aspect ratios with integer cross-multiplication.
    let (w, h) = if u64::from(src_w) * u64::from(cell.height) > u64::from(src_h) * u64::from(cell.width) {
        (cell.width, (u64::from(cell.width) * u64::from(src_h) / u64::from(src_w)) as u32)
    } else {
        ((u64::from(cell.height) * u64::from(src_w) / u64::from(src_h)) as u32, cell.height)
    };
    Rect { x: cell.x + (cell.width - w) / 2, y: cell.y + (cell.height - h) / 2, width: w, height: h }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_dimensions_follow_the_contract() {
        let expected = [
            (0, (0, 0)),
            (1, (1, 1)),
            (2, (2, 1)),
            (3, (2, 2)),
            (4, (2, 2)),
            (5, (3, 2)),
            (6, (3, 2)),
            (7, (3, 3)),
            (9, (3, 3)),
            (10, (4, 3)),
            (16, (4, 4)),
            (17, (5, 4)),
        ];
        for (n, dims) in expected {
            assert_eq!(grid_dimensions(n), dims, "n = {n}");
        }
    }

    #[test]
    fn three_publishers_use_a_two_by_two_grid() {
        let cells = grid_cells(1280, 720, 3);
        assert_eq!(
            cells,
            vec![
                Rect { x: 0, y: 0, width: 640, height: 360 },
                Rect { x: 640, y: 0, width: 640, height: 360 },
                Rect { x: 0, y: 360, width: 640, height: 360 },
            ]
        );
    }

    #[test]
    fn cells_use_integer_division_of_the_canvas() {
        let cells = grid_cells(1280, 720, 9);
        assert_eq!(cells[4], Rect { x: 426, y: 240, width: 426, height: 240 });
        assert_eq!(cells[8], Rect { x: 853, y: 480, width: 426, height: 240 });
    }

    #[test]
    fn single_publisher_fills_the_canvas() {
        assert_eq!(grid_cells(1280, 720, 1), vec![Rect { x: 0, y: 0, width: 1280, height: 720 }]);
    }

    #[test]
    fn speaker_layout_features_one_and_strips_the_rest() {
        let cells = speaker_cells(1280, 720, 3, 1);
        assert_eq!(
            cells,
            vec![
                Rect { x: 0, y: 540, width: 320, height: 180 },
                Rect { x: 0, y: 0, width: 1280, height: 540 },
                Rect { x: 320, y: 540, width: 320, height: 180 },
            ]
        );
        assert_eq!(speaker_cells(1280, 720, 1, 0), vec![Rect { x: 0, y: 0, width: 1280, height: 540 }]);
        assert_eq!(speaker_cells(1280, 720, 0, 0), vec![]);
        // Out of range: the first publisher is featured.
        assert_eq!(speaker_cells(1280, 720, 2, 7)[0], Rect { x: 0, y: 0, width: 1280, height: 540 });
    }

    #[test]
    fn speaker_layout_cells_tile_without_overlap_for_any_n_and_canvas() {
        for (w, h) in [(1280, 720), (640, 360), (320, 180), (1920, 1080), (642, 362)] {
            for n in 1..=20 {
                for featured in [0, n / 2, n - 1] {
                    let cells = speaker_cells(w, h, n, featured);
                    assert_eq!(cells.len(), n);
                    let main = cells[featured];
                    assert_eq!((main.x, main.y, main.width, main.height), (0, 0, w, h * 3 / 4), "n={n} {w}x{h}");
                    let k = (n - 1).max(4) as u32;
                    let strip: Vec<&Rect> =
                        cells.iter().enumerate().filter(|(i, _)| *i != featured).map(|(_, c)| c).collect();
                    for (i, c) in strip.iter().enumerate() {
                        assert_eq!(c.x, i as u32 * w / k, "join order along the strip");
                        assert_eq!((c.y, c.width, c.height), (h * 3 / 4, w / k, h / 4));
                        assert!(c.x + c.width <= w && c.y + c.height <= h, "inside the canvas");
                    }
                    for (i, a) in cells.iter().enumerate() {
                        for b in &cells[i + 1..] {
                            let apart = a.x + a.width <= b.x
                                || b.x + b.width <= a.x
                                || a.y + a.height <= b.y
                                || b.y + b.height <= a.y;
                            assert!(apart, "n={n} {w}x{h}: {a:?} overlaps {b:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fit_keeps_aspect_ratio_and_centres() {
        let cell = Rect { x: 640, y: 0, width: 640, height: 360 };
        // 4:3 into 16:9: pillarboxed.
        assert_eq!(fit_in_cell(cell, 320, 240), Rect { x: 640 + 80, y: 0, width: 480, height: 360 });
        // 16:9 into 16:9: fills.
        assert_eq!(fit_in_cell(cell, 1920, 1080), cell);
        // Portrait into landscape.
        let full = Rect { x: 0, y: 0, width: 1280, height: 720 };
        assert_eq!(fit_in_cell(full, 720, 1280), Rect { x: 437, y: 0, width: 405, height: 720 });
        // Very wide: letterboxed.
        assert_eq!(fit_in_cell(full, 1280, 360), Rect { x: 0, y: 180, width: 1280, height: 360 });
    }
}
