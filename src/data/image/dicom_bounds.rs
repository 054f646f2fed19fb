//! Declared lengths of a DICOM file checked before anything is read into
//! memory: dicom-object reserves and zero-fills the length an element's header
//! declares before it reads the value, so a header claiming 4 GB costs 4 GB
//! however short the file. [`meta_group`] walks the file meta group and
//! [`check_data_set`] the data set (through dicom-parser's token reader,
//! which yields each header before it reads the value); both refuse a length
//! past the bytes that follow the header or past [`MAX_ELEMENT_BYTES`]. A
//! deflated data set is inflated first, by [`inflate`], to at most
//! [`MAX_INFLATED_BYTES`], and checked as inflated.

use dicom_encoding::TransferSyntax;
use dicom_parser::dataset::DataToken;
use dicom_parser::DataSetReader;
use dicom_transfer_syntax_registry::entries::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};
use std::io::Read;

/// Largest value one element may declare: 1 GiB (a frame of 2^26 pixels,
/// the image cap, at 16 bits is 128 MiB).
pub(super) const MAX_ELEMENT_BYTES: u64 = 1 << 30;

/// Largest data set a deflated one may inflate to: 256 MiB, twice the
/// largest frame read (2^26 pixels at 16 bits), so a small file that
/// inflates to gigabytes (a deflate bomb) is refused after 256 MiB.
pub(super) const MAX_INFLATED_BYTES: u64 = 1 << 28;

/// Where the file meta group starts: after the 128-byte preamble and `DICM`.
const META_START: usize = 132;

/// Little-endian integer of `bytes[at..at + n]` (`n` <= 4); `None` past the end.
fn le(bytes: &[u8], at: usize, n: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(n)?)?;
    Some(slice.iter().rev().fold(0, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Refuses `len` declared at `at` for `what` when it passes the end of
/// `bytes` or [`MAX_ELEMENT_BYTES`].
fn within(len: u64, at: usize, bytes: &[u8], what: &str) -> Result<(), String> {
    let left = bytes.len().saturating_sub(at) as u64;
    if len > left || len > MAX_ELEMENT_BYTES {
        return Err(format!(
            "{what} declares {len} bytes, but {left} bytes follow it (and at most {MAX_ELEMENT_BYTES} are read)"
        ));
    }
    Ok(())
}

/// The file meta group of the DICOM file `bytes` (preamble and `DICM`
/// included; explicit VR little endian, read as dicom-object reads it:
/// elements until the group length is used up): every length checked
/// against the end of the group and [`MAX_ELEMENT_BYTES`], and
/// the Transfer Syntax UID (without padding) and the offset of the data set
/// returned.
///
/// # Errors
/// A message for a malformed or cut meta group, a length past the end of
/// the file or past [`MAX_ELEMENT_BYTES`], or no Transfer Syntax UID.
pub(super) fn meta_group(bytes: &[u8]) -> Result<(String, usize), String> {
    // PS3.5 7.1.2: the VRs with a 2-byte length; dicom-object reads every
    // other VR, an unknown one too, with a 4-byte length after 2 reserved
    // bytes, and an item tag (group FFFE) with a 4-byte length and no VR
    const SHORT_VRS: [&[u8; 2]; 21] = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS",
        b"ST", b"TM", b"UI", b"UL", b"US",
    ];
    let truncated = || "file meta group is cut short".to_string();
    // (0002,0000) UL 4 <group length>
    if le(bytes, META_START, 4) != Some(0x0000_0002) || bytes.get(META_START + 4..META_START + 6) != Some(b"UL") {
        return Err("file meta group does not start with its group length".into());
    }
    let group_length = le(bytes, META_START + 8, 4).ok_or_else(truncated)?;
    let start = META_START + 12;
    within(group_length, start, bytes, "the file meta group length")?;
    let end = start + group_length as usize;
    let mut at = start;
    let mut transfer_syntax = None;
    while at < end {
        let (group, element) = (le(bytes, at, 2), le(bytes, at + 2, 2));
        let vr = bytes.get(at + 4..at + 6).ok_or_else(truncated)?;
        let (len, header) = if group == Some(0xFFFE) {
            (le(bytes, at + 4, 4).ok_or_else(truncated)?, 8)
        } else if SHORT_VRS.iter().any(|v| v[..] == *vr) {
            (le(bytes, at + 6, 2).ok_or_else(truncated)?, 8)
        } else {
            (le(bytes, at + 8, 4).ok_or_else(truncated)?, 12)
        };
        let what = format!("meta element ({:04X},{:04X})", group.unwrap_or(0), element.unwrap_or(0));
        // dicom-object reads the meta group from its bytes alone
        within(len, at + header, &bytes[..end], &what)?;
        let value = &bytes[at + header..at + header + len as usize];
        if (group, element) == (Some(0x0002), Some(0x0010)) {
            let text = String::from_utf8_lossy(value);
            transfer_syntax = Some(text.trim_end_matches(['\0', ' ']).trim().to_string());
        }
        at += header + len as usize;
    }
    let transfer_syntax = transfer_syntax.ok_or("file meta group has no Transfer Syntax UID")?;
    Ok((transfer_syntax, end))
}

/// How the data set of a file in transfer syntax `uid` is encoded once
/// inflated when deflated: implicit VR little endian for
/// 1.2.840.10008.1.2, explicit VR little endian for every other syntax
/// read here.
pub(super) fn data_set_syntax(uid: &str) -> TransferSyntax {
    if uid == IMPLICIT_VR_LITTLE_ENDIAN.uid() {
        IMPLICIT_VR_LITTLE_ENDIAN.erased()
    } else {
        EXPLICIT_VR_LITTLE_ENDIAN.erased()
    }
}

/// Checks every length declared in the data set `body` (the bytes after
/// the file meta group, inflated if they were deflated), encoded as `ts`.
///
/// # Errors
/// A message for a length past the end of the data set or past
/// [`MAX_ELEMENT_BYTES`]. A data set the token reader cannot read to its
/// end is refused too, so dicom-object only reads what was checked.
pub(super) fn check_data_set(body: &[u8], ts: &TransferSyntax) -> Result<(), String> {
    let reader = DataSetReader::new_with_ts(body, ts).map_err(|e| e.to_string())?;
    for token in reader {
        // refused here rather than left to dicom-object, whose reading past
        // this point would not have been checked
        let token = token.map_err(|e| e.to_string())?;
        let (len, what) = match &token {
            DataToken::ElementHeader(header) => (header.len, format!("element {}", header.tag)),
            DataToken::SequenceStart { tag, len } => (*len, format!("sequence {tag}")),
            DataToken::ItemStart { len } => (*len, "an item".to_string()),
            _ => continue,
        };
        if let Some(len) = len.get() {
            // the header is read: what follows it is at most the rest of the data set
            within(u64::from(len), 0, body, &what)?;
        }
    }
    Ok(())
}

/// Inflates a deflated data set (Deflated Explicit VR Little Endian,
/// PS3.5 A.5: raw deflate, RFC 1951, without a zlib header), reading at
/// most [`MAX_INFLATED_BYTES`] of output.
///
/// # Errors
/// A message for a stream that does not inflate (corrupt or cut short) or
/// inflates past [`MAX_INFLATED_BYTES`].
pub(super) fn inflate(deflated: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the deflated data set does not inflate: {e}"))?;
    if out.len() as u64 > MAX_INFLATED_BYTES {
        return Err(format!(
            "the deflated data set inflates to more than {MAX_INFLATED_BYTES} bytes, the most read"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A meta element: (group, element), VR, value.
    type Meta<'a> = ((u16, u16), &'a [u8; 2], &'a [u8]);

    /// A file meta group of `elements` after a preamble.
    fn file(elements: &[Meta<'_>]) -> Vec<u8> {
        let mut group = Vec::new();
        for ((g, e), vr, value) in elements {
            group.extend(g.to_le_bytes());
            group.extend(e.to_le_bytes());
            group.extend(*vr);
            if *vr == b"OB" {
                group.extend([0, 0]);
                group.extend((value.len() as u32).to_le_bytes());
            } else {
                group.extend((value.len() as u16).to_le_bytes());
            }
            group.extend(*value);
        }
        let mut bytes = vec![0; 128];
        bytes.extend(b"DICM");
        bytes.extend([2, 0, 0, 0]);
        bytes.extend(b"UL");
        bytes.extend(4u16.to_le_bytes());
        bytes.extend((group.len() as u32).to_le_bytes());
        bytes.extend(group);
        bytes
    }

    #[test]
    fn meta_group_gives_the_transfer_syntax_and_refuses_long_lengths() {
        let ts = b"1.2.840.10008.1.2.1\0";
        let ok = file(&[((2, 1), b"OB", &[0, 1]), ((2, 0x10), b"UI", ts)]);
        let (found, end) = meta_group(&ok).unwrap();
        assert_eq!((found.as_str(), end), ("1.2.840.10008.1.2.1", ok.len()));
        let mut long = ok.clone();
        // the OB element's 4-byte length, just after its tag, VR and 2 reserved bytes
        long[META_START + 12 + 8..META_START + 12 + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let e = meta_group(&long).unwrap_err();
        assert!(e.contains("(0002,0001)") && e.contains("4294967280"), "{e}");
        let e = meta_group(&ok[..ok.len() - 3]).unwrap_err();
        assert!(e.contains("group length"), "{e}");
        assert!(meta_group(&file(&[((2, 1), b"OB", &[0, 1])])).is_err());
    }
}
