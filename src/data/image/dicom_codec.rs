//! What an encapsulated RLE or JPEG 2000 frame declares, checked before
//! dicom-pixeldata decodes it.
//!
//! The decoders trust the frame: the RLE Lossless reader indexes a segment
//! that decodes to fewer than Rows x Columns bytes, and unwraps a read error;
//! the JPEG 2000 reader allocates the image its codestream declares and
//! writes every sample of every component at an offset computed from
//! Rows x Columns. So an RLE frame must have the segments its Bits Allocated
//! needs, in order and inside the fragment, each decoding (PackBits) to at
//! least Rows x Columns bytes; a JPEG 2000 frame must be a bare codestream
//! (PS3.5 A.4.4; no JP2 wrapper) that ends with its EOC marker (OpenJPEG
//! decodes a truncated codestream to a coarser image without an error) and
//! whose SIZ marker declares one component, not subsampled, of at most 16
//! bits, on a Rows x Columns grid in at most [`MAX_TILES`] tiles.

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
