//! Picture quality of a decoded frame against its source: luma PSNR and SSIM. Pure,
//! on 8-bit luma planes of equal size (rows `stride` bytes apart).
//!
//! PSNR is the usual `10 log10(255² / MSE)`, capped at [`PSNR_IDENTICAL`] for equal
//! planes. SSIM follows Wang et al. (2004) with the standard constants, over 8x8
//! windows stepped by 4 pixels (as libvpx's and ffmpeg's fast variants do), averaged.

/// The PSNR reported for identical planes (no error to measure).
pub const PSNR_IDENTICAL: f64 = 100.0;

const WINDOW: usize = 8;
const STEP: usize = 4;
const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// One 8-bit plane: `width` x `height` pixels, rows `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    /// The bytes, at least `stride * (height - 1) + width` of them.
    pub data: &'a [u8],
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bytes from one row to the next.
    pub stride: usize,
}

impl Plane<'_> {
    fn row(&self, y: usize) -> &[u8] {
        &self.data[y * self.stride..y * self.stride + self.width]
    }

    fn fits(&self) -> bool {
        self.width > 0
            && self.height > 0
            && self.stride >= self.width
            && self.data.len() >= self.stride * (self.height - 1) + self.width
    }
}

/// Why two planes cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QualityError {
    /// Different sizes.
    #[error("planes differ in size: {0}x{1} and {2}x{3}")]
    SizeMismatch(usize, usize, usize, usize),
    /// Empty, or fewer bytes than the size says.
    #[error("a plane is empty or shorter than its size")]
    BadPlane,
}

fn check(a: &Plane, b: &Plane) -> Result<(), QualityError> {
    if !a.fits() || !b.fits() {
        return Err(QualityError::BadPlane);
    }
    if (a.width, a.height) != (b.width, b.height) {
        return Err(QualityError::SizeMismatch(a.width, a.height, b.width, b.height));
    }
    Ok(())
}

/// Peak signal-to-noise ratio of `decoded` against `source`, dB.
pub fn psnr(source: &Plane, decoded: &Plane) -> Result<f64, QualityError> {
    check(source, decoded)?;
    let mut sum = 0u64;
    for y in 0..source.height {
        for (a, b) in source.row(y).iter().zip(decoded.row(y)) {
            let d = i64::from(*a) - i64::from(*b);
            sum += (d * d) as u64;
        }
    }
    if sum == 0 {
        return Ok(PSNR_IDENTICAL);
    }
    let mse = sum as f64 / (source.width * source.height) as f64;
    Ok((10.0 * (255.0 * 255.0 / mse).log10()).min(PSNR_IDENTICAL))
}

/// Structural similarity of `decoded` against `source`, 0..=1 (1: identical).
pub fn ssim(source: &Plane, decoded: &Plane) -> Result<f64, QualityError> {
    check(source, decoded)?;
    if source.width < WINDOW || source.height < WINDOW {
        // Too small for a window: one window over the whole plane.
        return Ok(window_ssim(source, decoded, 0, 0, source.width, source.height));
    }
    let (mut total, mut count) = (0.0, 0usize);
    let mut y = 0;
    while y + WINDOW <= source.height {
        let mut x = 0;
        while x + WINDOW <= source.width {
            total += window_ssim(source, decoded, x, y, WINDOW, WINDOW);
            count += 1;
            x += STEP;
        }
        y += STEP;
    }
    Ok(total / count as f64)
}

fn window_ssim(a: &Plane, b: &Plane, x0: usize, y0: usize, w: usize, h: usize) -> f64 {
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for y in y0..y0 + h {
        for (pa, pb) in a.row(y)[x0..x0 + w].iter().zip(&b.row(y)[x0..x0 + w]) {
            let (pa, pb) = (u64::from(*pa), u64::from(*pb));
            sa += pa;
            sb += pb;
            saa += pa * pa;
            sbb += pb * pb;
            sab += pa * pb;
        }
    }
    let n = (w * h) as f64;
    let (ma, mb) = (sa as f64 / n, sb as f64 / n);
    let va = saa as f64 / n - ma * ma;
    let vb = sbb as f64 / n - mb * mb;
    let cov = sab as f64 / n - ma * mb;
    ((2.0 * ma * mb + C1) * (2.0 * cov + C2)) / ((ma * ma + mb * mb + C1) * (va + vb + C2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(data: &[u8], width: usize, height: usize) -> Plane<'_> {
        Plane { data, width, height, stride: width }
    }

    fn gradient(width: usize, height: usize) -> Vec<u8> {
        (0..width * height).map(|i| ((i % width) * 255 / width + (i / width) % 7) as u8).collect()
    }

    #[test]
    fn identical_planes_are_perfect() {
        let a = gradient(64, 32);
        assert_eq!(psnr(&plane(&a, 64, 32), &plane(&a, 64, 32)).unwrap(), PSNR_IDENTICAL);
        assert!((ssim(&plane(&a, 64, 32), &plane(&a, 64, 32)).unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn psnr_of_a_uniform_error_matches_the_formula() {
        let a = vec![100u8; 16 * 16];
        let b = vec![110u8; 16 * 16];
        // MSE 100: 10 log10(65025 / 100) = 28.13 dB.
        let p = psnr(&plane(&a, 16, 16), &plane(&b, 16, 16)).unwrap();
        assert!((p - 28.131).abs() < 0.01, "{p}");
    }

    #[test]
    fn strides_are_honoured() {
        // Padding bytes past the width differ; the pictures do not.
        let a: Vec<u8> = (0..8 * 20).map(|i| if i % 20 < 16 { (i % 20) as u8 } else { 0 }).collect();
        let b: Vec<u8> = (0..8 * 20).map(|i| if i % 20 < 16 { (i % 20) as u8 } else { 255 }).collect();
        let pa = Plane { data: &a, width: 16, height: 8, stride: 20 };
        let pb = Plane { data: &b, width: 16, height: 8, stride: 20 };
        assert_eq!(psnr(&pa, &pb).unwrap(), PSNR_IDENTICAL);
    }

    /// A detailed picture: deterministic noise.
    fn texture(width: usize, height: usize) -> Vec<u8> {
        let mut x = 12345u32;
        (0..width * height)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn ssim_falls_with_structure_lost_more_than_with_brightness() {
        let a = texture(64, 64);
        let brighter: Vec<u8> = a.iter().map(|v| v.saturating_add(5)).collect();
        let flat = vec![128u8; 64 * 64];
        let s_bright = ssim(&plane(&a, 64, 64), &plane(&brighter, 64, 64)).unwrap();
        let s_flat = ssim(&plane(&a, 64, 64), &plane(&flat, 64, 64)).unwrap();
        assert!(s_bright > 0.95, "{s_bright}");
        assert!(s_flat < 0.2, "{s_flat}");
    }

    #[test]
    fn mismatched_or_short_planes_are_errors() {
        let a = vec![0u8; 64];
        assert_eq!(psnr(&plane(&a, 8, 8), &plane(&a[..32], 8, 4)), Err(QualityError::SizeMismatch(8, 8, 8, 4)));
        assert_eq!(ssim(&plane(&a, 8, 8), &plane(&a[..10], 8, 8)), Err(QualityError::BadPlane));
    }
}
