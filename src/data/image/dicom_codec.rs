//! What an encapsulated RLE, JPEG 2000, JPEG lossless or JPEG-LS frame
//! declares, checked before it is decoded.
//!
//! The decoders trust the frame: the RLE Lossless reader indexes a segment
//! that decodes to fewer than Rows x Columns bytes, and unwraps a read error;
//! the JPEG 2000 reader allocates the image its codestream declares and
//! writes every sample of every component at an offset computed from
//! Rows x Columns; the JPEG lossless decoder (jpeg-decoder) and CharLS
//! allocate the image their frame header declares, and jpeg-decoder decodes
//! every scan over the whole image, reading zeros once its data has run
//! out. So an RLE frame must have the segments its Bits Allocated
//! needs, in order and inside the fragment, each decoding (PackBits) to at
//! least Rows x Columns bytes; a JPEG 2000 frame must be a bare codestream
//! (PS3.5 A.4.4; no JP2 wrapper) that ends with its EOC marker (OpenJPEG
//! decodes a truncated codestream to a coarser image without an error) and
//! whose SIZ marker declares one component, not subsampled, of at most 16
//! bits, on a Rows x Columns grid in at most [`MAX_TILES`] tiles; a JPEG
//! lossless or JPEG-LS frame must be one stream of marker segments from SOI
//! to EOI (nothing cut off) with one frame header of its process (SOF3,
//! SOF55) declaring one component of at most Bits Allocated bits on a
//! Rows x Columns grid, and one scan ([`check_jpeg`]).

/// Most tiles a JPEG 2000 codestream may declare (the decoder keeps a
/// structure per tile; a 1 x 1 tile grid on the largest image would be
/// 2^26 of them).
pub(super) const MAX_TILES: u64 = 4096;

/// Length of the RLE header: the segment count and 15 offsets, `u32` each.
const RLE_HEADER: usize = 64;

/// Checks an RLE Lossless frame (one fragment) of a one-sample image with
/// `bytes_per_sample` (1 or 2) bytes per sample and `pixels` pixels.
///
/// # Errors
/// A one-line reason.
pub(super) fn check_rle(fragment: &[u8], pixels: usize, bytes_per_sample: usize) -> Result<(), String> {
    let word = |i: usize| {
        fragment
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (Some(count), true) = (word(0), fragment.len() >= RLE_HEADER) else {
        return Err(format!(
            "the RLE frame is {} bytes, shorter than its header",
            fragment.len()
        ));
    };
    if count != bytes_per_sample {
        return Err(format!(
            "the RLE frame has {count} segments, its Bits Allocated needs {bytes_per_sample}"
        ));
    }
    let mut starts: Vec<usize> = (1..=count).filter_map(word).collect();
    starts.push(fragment.len());
    if starts[0] != RLE_HEADER || starts.windows(2).any(|w| w[0] > w[1]) {
        return Err(format!(
            "RLE segment offsets {:?} are out of order or past the frame",
            &starts[..count]
        ));
    }
    for (i, range) in starts.windows(2).enumerate() {
        let decoded = packbits_len(&fragment[range[0]..range[1]], pixels)
            .ok_or_else(|| format!("RLE segment {i} ends inside a literal run"))?;
        if decoded < pixels {
            return Err(format!(
                "RLE segment {i} decodes to {decoded} bytes, Rows x Columns is {pixels}"
            ));
        }
    }
    Ok(())
}

/// Bytes a PackBits segment decodes to, counted up to the first run that
/// reaches `need` (what follows, such as the padding to an even length, is
/// not read, as the decoder does not read it); `None` when a literal run
/// before that is cut short.
fn packbits_len(segment: &[u8], need: usize) -> Option<usize> {
    let (mut at, mut out) = (0usize, 0usize);
    while let (Some(&n), true) = (segment.get(at), out < need) {
        match n {
            0..=127 => {
                let len = usize::from(n) + 1;
                if at + 1 + len > segment.len() {
                    return None;
                }
                at += 1 + len;
                out += len;
            }
            128 => at += 1,
            _ => {
                segment.get(at + 1)?;
                at += 2;
                out += 257 - usize::from(n);
            }
        }
    }
    Some(out)
}

/// Checks the JPEG 2000 codestream of a frame: its markers, and its SIZ
/// marker against Rows x Columns (`rows_columns`).
///
/// # Errors
/// A one-line reason.
pub(super) fn check_j2k(stream: &[u8], (rows, columns): (usize, usize)) -> Result<(), String> {
    let be = |at: usize, n: usize| -> Option<u64> {
        Some(
            stream
                .get(at..at + n)?
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        )
    };
    if stream.get(..4) != Some(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return Err(
            "the JPEG 2000 frame does not start with a codestream's SOC and SIZ markers \
                    (a JP2 file is not allowed here)"
                .into(),
        );
    }
    // A fragment is padded to an even length with one zero.
    let end = stream.strip_suffix(&[0]).unwrap_or(stream);
    if !end.ends_with(&[0xFF, 0xD9]) {
        return Err("the JPEG 2000 codestream does not end with its EOC marker: truncated".into());
    }
    let cut = || "the JPEG 2000 SIZ marker is cut short".to_string();
    // SIZ after its marker (offset 4): Lsiz, Rsiz (u16), then u32 Xsiz,
    // Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, then u16 Csiz.
    let field = |i: usize| be(8 + 4 * i, 4).ok_or_else(cut);
    let [x, y, xo, yo, xt, yt, xto, yto] = [0, 1, 2, 3, 4, 5, 6, 7].map(field);
    let (x, y, xo, yo, xt, yt, xto, yto) = (x?, y?, xo?, yo?, xt?, yt?, xto?, yto?);
    let components = be(40, 2).ok_or_else(cut)?;
    if x <= xo || y <= yo || (x - xo, y - yo) != (columns as u64, rows as u64) {
        return Err(format!(
            "the JPEG 2000 codestream is {} x {} pixels, Rows x Columns is {rows} x {columns}",
            y.saturating_sub(yo),
            x.saturating_sub(xo)
        ));
    }
    if components != 1 {
        return Err(format!(
            "the JPEG 2000 codestream has {components} components, a monochrome image one"
        ));
    }
    if xt == 0 || yt == 0 || xto > xo || yto > yo || xto + xt <= xo || yto + yt <= yo {
        return Err("the JPEG 2000 tile grid does not cover the image".into());
    }
    let tiles = (x - xto).div_ceil(xt) * (y - yto).div_ceil(yt);
    if tiles > MAX_TILES {
        return Err(format!(
            "the JPEG 2000 codestream declares {tiles} tiles (at most {MAX_TILES})"
        ));
    }
    let (ssiz, xr, yr) = (
        be(42, 1).ok_or_else(cut)?,
        be(43, 1).ok_or_else(cut)?,
        be(44, 1).ok_or_else(cut)?,
    );
    let bits = (ssiz & 0x7F) + 1;
    if bits > 16 || (xr, yr) != (1, 1) {
        return Err(format!(
            "the JPEG 2000 component has {bits} bits, subsampled {xr} x {yr} (at most 16, not subsampled)"
        ));
    }
    Ok(())
}

/// The JPEG process of an encapsulated frame: which frame header it must
/// have, and how its entropy-coded data marks its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JpegProcess {
    /// Lossless, Huffman coded (ITU T.81 process 14): SOF3; in the coded
    /// data a data `FF` is followed by a stuffed `00`.
    Lossless,
    /// JPEG-LS (ITU T.87): SOF55; in the coded data a data `FF` is
    /// followed by a byte below `80`.
    Ls,
}

impl JpegProcess {
    /// The frame header's marker (the byte after `FF`).
    fn sof(self) -> u8 {
        match self {
            Self::Lossless => 0xC3,
            Self::Ls => 0xF7,
        }
    }

    /// The name used in messages.
    fn name(self) -> &'static str {
        match self {
            Self::Lossless => "JPEG lossless",
            Self::Ls => "JPEG-LS",
        }
    }

    /// Whether `FF b` inside coded data ends it (a marker other than a
    /// restart marker `D0`..`D7`, which stays inside the scan).
    fn ends_scan(self, b: u8) -> bool {
        let marker = match self {
            Self::Lossless => b != 0x00,
            Self::Ls => b >= 0x80,
        };
        marker && !(0xD0..=0xD7).contains(&b)
    }
}

/// Whether marker `FF m` is a frame header of any JPEG process: SOF0 to
/// SOF15 (but DHT `C4`, JPG `C8`, DAC `CC`), and JPEG-LS's SOF55 and SOF57.
fn is_sof(m: u8) -> bool {
    matches!(m, 0xC0..=0xCF if !matches!(m, 0xC4 | 0xC8 | 0xCC)) || matches!(m, 0xF7 | 0xF9)
}

/// Checks a JPEG lossless or JPEG-LS frame against Rows x Columns
/// (`rows_columns`) and Bits Allocated, and returns its sample precision
/// (2 to 16 bits; the decoders give one byte per sample for 8 bits, two
/// otherwise).
///
/// The stream is walked marker by marker: SOI first; then segments, each
/// inside the stream; exactly one frame header, of `process`, declaring
/// one component sampled 1 x 1 with a precision of 2 to `bits_allocated`
/// bits on exactly Rows x Columns; exactly one scan; for JPEG-LS, no LSE
/// segment but preset parameters (mapping tables would turn the samples
/// into palette indices, and an oversize dimension would override the
/// frame header's size); EOI last, followed by at most one zero of padding.
///
/// # Errors
/// A one-line reason.
pub(super) fn check_jpeg(
    stream: &[u8],
    process: JpegProcess,
    (rows, columns): (usize, usize),
    bits_allocated: usize,
) -> Result<u8, String> {
    let name = process.name();
    if stream.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(format!("the {name} frame does not start with an SOI marker"));
    }
    let cut = || format!("the {name} frame is cut short: no EOI marker after its scan (truncated)");
    let (mut at, mut frame, mut scans) = (2usize, None, 0usize);
    loop {
        // fill bytes (FF) may precede a marker
        while stream.get(at..at + 2).is_some_and(|w| w == [0xFF, 0xFF]) {
            at += 1;
        }
        let marker = match stream.get(at..at + 2) {
            Some(&[0xFF, m]) => m,
            Some(_) => return Err(format!("the {name} frame has no marker at byte {at}")),
            None => return Err(cut()),
        };
        at += 2;
        if marker == 0xD9 {
            break;
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            continue; // no length
        }
        let len = be16_of(stream, at).ok_or_else(cut)?;
        let segment = stream.get(at..at + len).filter(|_| len >= 2).ok_or_else(cut)?;
        if is_sof(marker) {
            if marker != process.sof() {
                return Err(format!(
                    "the {name} frame has a frame header FF{marker:02X}, not FF{:02X}",
                    process.sof()
                ));
            }
            if frame.replace(segment).is_some() {
                return Err(format!("the {name} frame has two frame headers"));
            }
        }
        if process == JpegProcess::Ls && marker == 0xF8 && segment.get(2) != Some(&1) {
            return Err(format!(
                "the {name} frame has an LSE segment of type {:?} (only preset parameters, type 1, are read)",
                segment.get(2)
            ));
        }
        at += len;
        if marker == 0xDA {
            scans += 1;
            if scans > 1 {
                return Err(format!("the {name} frame has more than one scan"));
            }
            // the coded data runs to the next marker that ends it
            loop {
                match stream.get(at..at + 2) {
                    Some(&[0xFF, b]) if process.ends_scan(b) => break,
                    Some(_) => at += 1,
                    None => return Err(cut()),
                }
            }
        }
    }
    if !matches!(&stream[at..], [] | [0]) {
        return Err(format!(
            "the {name} frame has {} bytes after its EOI marker",
            stream.len() - at
        ));
    }
    let frame = frame.ok_or_else(|| format!("the {name} frame has no frame header"))?;
    if scans == 0 {
        return Err(format!("the {name} frame has no scan"));
    }
    // Lf, P, Y, X (u16), Nf, then per component C, H << 4 | V, Tq
    let (Some(&precision), Some(y), Some(x), Some(&components)) =
        (frame.get(2), be16_of(frame, 3), be16_of(frame, 5), frame.get(7))
    else {
        return Err(format!("the {name} frame header is cut short"));
    };
    if (y, x) != (rows, columns) {
        return Err(format!(
            "the {name} frame is {y} x {x} pixels, Rows x Columns is {rows} x {columns}"
        ));
    }
    if components != 1 || frame.get(9) != Some(&0x11) {
        return Err(format!(
            "the {name} frame has {components} components (sampling {:?}), a monochrome image one (1 x 1)",
            frame.get(9)
        ));
    }
    if !(2..=bits_allocated).contains(&usize::from(precision)) {
        return Err(format!(
            "the {name} frame has {precision}-bit samples, Bits Allocated is {bits_allocated} (2 to {bits_allocated} read)"
        ));
    }
    Ok(precision)
}

/// The big-endian `u16` at `at` in `bytes`, as a `usize`.
fn be16_of(bytes: &[u8], at: usize) -> Option<usize> {
    bytes
        .get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_lengths() {
        assert_eq!(packbits_len(&[2, 1, 2, 3], 9), Some(3));
        assert_eq!(packbits_len(&[0xFE, 7], 9), Some(3));
        assert_eq!(packbits_len(&[128, 0, 9], 9), Some(1));
        assert_eq!(packbits_len(&[3, 1, 2], 9), None);
        assert_eq!(packbits_len(&[0xFE], 9), None);
        // Padding after the runs that fill the image is not read.
        assert_eq!(packbits_len(&[0xFE, 7, 0], 3), Some(3));
    }

    /// A JPEG lossless stream of `scan` coded bytes on a 2 x 3 grid of
    /// 12-bit samples, with `extra` segments before the scan.
    fn lossless(extra: &[u8], scan: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, 0xD8];
        s.extend(extra);
        s.extend([0xFF, 0xC3, 0, 11, 12, 0, 2, 0, 3, 1, 1, 0x11, 0]);
        s.extend([0xFF, 0xDA, 0, 8, 1, 1, 0, 1, 0, 0]);
        s.extend(scan);
        s.extend([0xFF, 0xD9]);
        s
    }

    #[test]
    fn jpeg_streams_are_walked_marker_by_marker() {
        use JpegProcess::{Lossless, Ls};
        let ok = |s: &[u8]| check_jpeg(s, Lossless, (2, 3), 16);
        // stuffed FF 00 and a restart marker stay inside the scan; fill
        // bytes before a marker and one byte of padding are allowed
        assert_eq!(ok(&lossless(&[], &[1, 0xFF, 0, 2, 0xFF, 0xD0, 3])), Ok(12));
        assert_eq!(ok(&lossless(&[0xFF, 0xFF, 0xFE, 0, 3, 7], &[1])), Ok(12));
        let mut padded = lossless(&[], &[1]);
        padded.push(0);
        assert_eq!(ok(&padded), Ok(12));
        padded.push(0);
        assert!(ok(&padded).unwrap_err().contains("after its EOI"));
        // a marker-like pair inside an APP segment is skipped with it
        assert_eq!(ok(&lossless(&[0xFF, 0xE0, 0, 4, 0xFF, 0xDA], &[1])), Ok(12));
        let full = lossless(&[], &[1, 2, 3]);
        for cut in [full.len() - 1, full.len() - 3, 10, 3] {
            assert!(ok(&full[..cut]).unwrap_err().contains("truncated"), "{cut}");
        }
        assert!(ok(&full[2..]).unwrap_err().contains("SOI"));
        assert!(check_jpeg(&full, Lossless, (3, 2), 16).unwrap_err().contains("2 x 3"));
        assert!(check_jpeg(&full, Lossless, (2, 3), 8).unwrap_err().contains("12-bit"));
        assert!(check_jpeg(&full, Ls, (2, 3), 16).unwrap_err().contains("FFC3"));
        let two_scans = lossless(&[], &[1, 0xFF, 0xDA, 0, 8, 1, 1, 0, 1, 0, 0, 2]);
        assert!(ok(&two_scans).unwrap_err().contains("more than one scan"));
        let mut grey_alpha = full.clone();
        grey_alpha[11] = 2; // Nf
        assert!(ok(&grey_alpha).unwrap_err().contains("2 components"));
        // JPEG-LS: coded data ends at FF followed by 80 or more; an LSE
        // mapping table is refused
        let mut ls = lossless(&[], &[1, 0xFF, 0x7F, 2]);
        ls[3] = 0xF7;
        assert_eq!(check_jpeg(&ls, Ls, (2, 3), 16), Ok(12));
        let mut table = lossless(&[0xFF, 0xF8, 0, 5, 2, 1, 1], &[1]);
        table[10] = 0xF7;
        assert!(check_jpeg(&table, Ls, (2, 3), 16).unwrap_err().contains("LSE"));
    }

    #[test]
    fn rle_frames_must_hold_every_pixel() {
        let mut frame = vec![0u8; RLE_HEADER];
        frame[0] = 1;
        frame[4] = RLE_HEADER as u8;
        frame.extend([0xFD, 5]); // four bytes of 5
        assert!(check_rle(&frame, 4, 1).is_ok());
        assert!(check_rle(&frame, 5, 1).unwrap_err().contains("decodes to 4"));
        assert!(check_rle(&frame, 4, 2).unwrap_err().contains("segments"));
        frame[4] = 200;
        assert!(check_rle(&frame, 4, 1).unwrap_err().contains("offsets"));
        assert!(check_rle(&frame[..10], 4, 1).unwrap_err().contains("header"));
    }
}
