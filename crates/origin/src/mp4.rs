//! A video's duration, read from the MP4 `moov/mvhd` box.
//!
//! Only box headers are read while walking to `mvhd` (seeking over the
//! rest), and at most [`MAX_BOXES`] boxes per level, so a hostile or huge
//! file costs a few small reads. A whole-file MP4 parser would decode the
//! entire `moov`, which is megabytes for long videos.

use std::io::{self, Read, Seek, SeekFrom};

/// Most boxes looked at on one level before giving up.
const MAX_BOXES: usize = 64;

/// The duration in seconds, or `None` when the file is not an MP4 with a
/// readable movie header.
pub fn duration_seconds<R: Read + Seek>(reader: &mut R) -> Option<f64> {
    let end = reader.seek(SeekFrom::End(0)).ok()?;
    let moov = find_box(reader, 0, end, *b"moov").ok()??;
    let mvhd = find_box(reader, moov.0, moov.1, *b"mvhd").ok()??;
    reader.seek(SeekFrom::Start(mvhd.0)).ok()?;
    let mut version = [0u8; 4];
    reader.read_exact(&mut version).ok()?;
    let (timescale, duration) = if version[0] == 1 {
        let mut b = [0u8; 28];
        reader.read_exact(&mut b).ok()?;
        let timescale = u32::from_be_bytes(b[16..20].try_into().ok()?);
        (timescale, u64::from_be_bytes(b[20..28].try_into().ok()?))
    } else {
        let mut b = [0u8; 16];
        reader.read_exact(&mut b).ok()?;
        let timescale = u32::from_be_bytes(b[8..12].try_into().ok()?);
        let duration = u32::from_be_bytes(b[12..16].try_into().ok()?);
        // All ones means "unknown" (ISO/IEC 14496-12 §8.2.2.3).
        if duration == u32::MAX {
            return None;
        }
        (timescale, u64::from(duration))
    };
    if timescale == 0 || duration == u64::MAX {
        return None;
    }
    Some(duration as f64 / f64::from(timescale))
}

/// Finds a box of type `kind` among the boxes in `start..end`; returns the
/// byte range of its payload.
fn find_box<R: Read + Seek>(
    reader: &mut R,
    start: u64,
    end: u64,
    kind: [u8; 4],
) -> io::Result<Option<(u64, u64)>> {
    let mut at = start;
    for _ in 0..MAX_BOXES {
        if at.checked_add(8).is_none_or(|h| h > end) {
            return Ok(None);
        }
        reader.seek(SeekFrom::Start(at))?;
        let mut header = [0u8; 8];
        reader.read_exact(&mut header)?;
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let box_type = [header[4], header[5], header[6], header[7]];
        let (header_len, size) = match size32 {
            0 => (8, end - at),
            1 => {
                let mut large = [0u8; 8];
                reader.read_exact(&mut large)?;
                (16, u64::from_be_bytes(large))
            }
            n => (8, u64::from(n)),
        };
        if size < header_len || at.checked_add(size).is_none_or(|e| e > end) {
            return Ok(None);
        }
        if box_type == kind {
            return Ok(Some((at + header_len, at + size)));
        }
        at += size;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(payload);
        out
    }

    fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
        let mut p = vec![0u8; 4 + 8];
        p.extend_from_slice(&timescale.to_be_bytes());
        p.extend_from_slice(&duration.to_be_bytes());
        p.extend_from_slice(&[0u8; 80]);
        mp4_box(b"mvhd", &p)
    }

    #[test]
    fn reads_duration_after_other_boxes() {
        let mut file = mp4_box(b"ftyp", b"isom0000");
        file.extend(mp4_box(b"free", &[0; 10]));
        let mut moov = mp4_box(b"udta", &[1, 2, 3]);
        moov.extend(mvhd_v0(1000, 10_500));
        file.extend(mp4_box(b"moov", &moov));
        file.extend(mp4_box(b"mdat", &[0; 100]));
        assert_eq!(duration_seconds(&mut Cursor::new(file)), Some(10.5));
    }

    #[test]
    fn version_1_header() {
        let mut p = vec![1u8, 0, 0, 0];
        p.extend_from_slice(&[0u8; 16]);
        p.extend_from_slice(&90_000u32.to_be_bytes());
        p.extend_from_slice(&(90_000u64 * 7200).to_be_bytes());
        let file = mp4_box(b"moov", &mp4_box(b"mvhd", &p));
        assert_eq!(duration_seconds(&mut Cursor::new(file)), Some(7200.0));
    }

    #[test]
    fn not_an_mp4() {
        assert_eq!(
            duration_seconds(&mut Cursor::new(b"hello world".to_vec())),
            None
        );
        let zero_scale = mp4_box(b"moov", &mvhd_v0(0, 5));
        assert_eq!(duration_seconds(&mut Cursor::new(zero_scale)), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = duration_seconds(&mut Cursor::new(bytes));
        }
    }
}
