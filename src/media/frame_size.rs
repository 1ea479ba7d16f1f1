//! The picture size a publisher's keyframe declares, read from its RTP payload before
//! anything is decoded: the VP8 keyframe header (RFC 6386 §9.1) or the H.264 sequence
//! parameter set (ITU-T H.264 §7.3.2.1.1). A publisher whose keyframes declare more
//! than the server decodes is refused before a decoder allocates for them.
//!
//! Pure: takes bytes from the network, never panics on any input.

/// Width and height a keyframe declares, when `payload` (one RTP payload) starts
/// one: a VP8 keyframe, or an H.264 SPS (alone or in a STAP-A).
pub fn declared_size(h264: bool, payload: &[u8]) -> Option<(u32, u32)> {
    if h264 { h264_sps_size(payload) } else { vp8_keyframe_size(payload) }
}

/// The size in the first packet of a VP8 keyframe (RFC 7741 payload descriptor, then
/// the frame tag, start code and the 14-bit width and height).
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u32, u32)> {
    let first = *payload.first()?;
    // Start of partition 0 only.
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return None;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(1)?;
        at = 2;
        if ext & 0x80 != 0 {
            // Picture ID: 7 or 15 bits.
            at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    let frame = payload.get(at..at + 10)?;
    let keyframe = frame[0] & 0x01 == 0;
    if !keyframe || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    Some((width, height))
}

/// The size an H.264 SPS declares (in whole macroblocks, before cropping: an upper
/// bound of the picture), from a single SPS NAL unit or the first of a STAP-A.
pub fn h264_sps_size(payload: &[u8]) -> Option<(u32, u32)> {
    let nal = match payload.first()? & 0x1f {
        7 => payload,
        24 => {
            // STAP-A: 16-bit size, then the NAL unit; the SPS comes first.
            let size = usize::from(u16::from_be_bytes([*payload.get(1)?, *payload.get(2)?]));
            let nal = payload.get(3..3 + size)?;
            if nal.first()? & 0x1f != 7 {
                return None;
            }
            nal
        }
        _ => return None,
    };
    parse_sps(&unescape(nal.get(1..)?))
}

/// The RBSP of a NAL unit: emulation prevention bytes (00 00 03) removed.
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Reads bits and Exp-Golomb codes; `None` past the end.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some(acc << 1 | self.bit()?))
    }

    /// ue(v); at most 31 leading zeros (larger values are not a valid SPS field).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

fn parse_sps(rbsp: &[u8]) -> Option<(u32, u32)> {
    let mut b = Bits { data: rbsp, at: 0 };
    let profile = b.bits(8)?;
    b.bits(16)?; // constraint flags, level
    b.ue()?; // seq_parameter_set_id
    if matches!(profile, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        let chroma_format = b.ue()?;
        if chroma_format == 3 {
            b.bit()?; // separate_colour_plane_flag
        }
        b.ue()?; // bit_depth_luma_minus8
        b.ue()?; // bit_depth_chroma_minus8
        b.bit()?; // qpprime_y_zero_transform_bypass_flag
        if b.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let cycle = b.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(b.ue()?) + 1;
    let height_map_units = u64::from(b.ue()?) + 1;
    let frame_mbs_only = u64::from(b.bit()?);
    let width = width_mbs * 16;
    let height = (2 - frame_mbs_only) * height_map_units * 16;
    Some((width.min(u64::from(u32::MAX)) as u32, height.min(u64::from(u32::MAX)) as u32))
}

fn skip_scaling_list(b: &mut Bits<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + b.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 RTP payload starting a keyframe of `w` x `h` (with a 15-bit picture ID).
    fn vp8(w: u16, h: u16) -> Vec<u8> {
        let mut p = vec![0x90, 0x80, 0x81, 0x23, 0x50, 0x12, 0x00, 0x9d, 0x01, 0x2a];
        p.extend(w.to_le_bytes());
        p.extend(h.to_le_bytes());
        p.extend([0u8; 8]);
        p
    }

    #[test]
    fn a_vp8_keyframe_declares_its_size() {
        assert_eq!(vp8_keyframe_size(&vp8(1280, 720)), Some((1280, 720)));
        assert_eq!(vp8_keyframe_size(&vp8(0x3fff, 0x3fff)), Some((16383, 16383)));
        let mut delta = vp8(1280, 720);
        delta[4] |= 1; // inter frame
        assert_eq!(vp8_keyframe_size(&delta), None);
        let mut later = vp8(1280, 720);
        later[0] &= !0x10; // not the start of the partition
        assert_eq!(vp8_keyframe_size(&later), None);
    }

    #[test]
    fn an_h264_sps_declares_its_size() {
        // From x264: constrained baseline 1280x720, and high profile 1920x1080 (1088
        // before cropping), each with an emulation prevention byte.
        let sps_720 = [
            0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00, 0x03,
            0x00, 0x80, 0x00, 0x00, 0x1e, 0x47, 0x8c, 0x19, 0x24,
        ];
        assert_eq!(h264_sps_size(&sps_720), Some((1280, 720)));
        let mut stap = vec![0x18, 0x00, sps_720.len() as u8];
        stap.extend(sps_720);
        stap.extend([0x00, 0x04, 0x68, 0xce, 0x3c, 0x80]);
        assert_eq!(h264_sps_size(&stap), Some((1280, 720)), "the SPS at the head of a STAP-A");
        let sps_high = [
            0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x5a, 0x80, 0x80, 0x80, 0xa0, 0x00,
            0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x91, 0xe3, 0x06, 0x32, 0xc0,
        ];
        assert_eq!(h264_sps_size(&sps_high), Some((1920, 1088)));
        assert_eq!(h264_sps_size(&[0x65, 0x88, 0x84]), None, "an IDR slice declares nothing");
    }

    #[test]
    fn any_bytes_are_read_without_panicking() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            for h264 in [false, true] {
                let _ = declared_size(h264, &bytes);
                let mut sps = vec![0x67];
                sps.extend(&bytes);
                let _ = declared_size(h264, &sps);
            }
        }
    }
}
