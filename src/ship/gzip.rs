//! gzip (RFC 1952) around flate2's raw deflate, with the CRC-32 from `crc32fast`.
//!
//! Why not `flate2::GzEncoder`: with the pure-Rust zlib-rs backend its CRC-32 runs the
//! portable "braid" code, which the end-to-end profile showed at 5% of all CPU; crc32fast
//! picks the carry-less-multiply implementation at run time. The output is ordinary gzip.

use std::io::{Read, Write};

const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Compresses `raw` into a gzip member.
pub(crate) fn encode(raw: &[u8], level: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 5 + 64);
    out.extend_from_slice(&HEADER);
    let mut enc = flate2::write::DeflateEncoder::new(out, flate2::Compression::new(level));
    enc.write_all(raw).expect("writing to a Vec cannot fail");
    let mut out = enc.finish().expect("writing to a Vec cannot fail");
    out.extend_from_slice(&crc32fast::hash(raw).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out
}

/// Decompresses one or more gzip members, checking each member's CRC-32 and length.
pub(crate) fn decode(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len() * 6);
    while !data.is_empty() {
        let body = skip_header(data)?;
        let start = out.len();
        let mut dec = flate2::bufread::DeflateDecoder::new(body);
        dec.read_to_end(&mut out)
            .map_err(|e| format!("gzip: {e}"))?;
        let consumed = body.len() - dec.into_inner().len();
        let trailer = body
            .get(consumed..consumed + 8)
            .ok_or("gzip: truncated trailer")?;
        let crc = u32::from_le_bytes(trailer[0..4].try_into().expect("4 bytes"));
        let size = u32::from_le_bytes(trailer[4..8].try_into().expect("4 bytes"));
        let member = &out[start..];
        if crc32fast::hash(member) != crc || member.len() as u32 != size {
            return Err("gzip: CRC or length mismatch".into());
        }
        data = &body[consumed + 8..];
    }
    Ok(out)
}

/// The data after a gzip member header.
fn skip_header(data: &[u8]) -> Result<&[u8], String> {
    if data.len() < 10 || data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
        return Err("gzip: not a gzip member".into());
    }
    let flags = data[3];
    let mut i = 10;
    let short = || "gzip: truncated header".to_string();
    if flags & 0x04 != 0 {
        let n = u16::from_le_bytes([
            *data.get(i).ok_or_else(short)?,
            *data.get(i + 1).ok_or_else(short)?,
        ]) as usize;
        i += 2 + n;
    }
    for bit in [0x08, 0x10] {
        if flags & bit != 0 {
            let end = data
                .get(i..)
                .ok_or_else(short)?
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(short)?;
            i += end + 1;
        }
    }
    if flags & 0x02 != 0 {
        i += 2;
    }
    data.get(i..).ok_or_else(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_interoperates_with_flate2() {
        let raw: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let ours = encode(&raw, 1);
        // Standard gzip readers accept ours...
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&ours[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, raw);
        // ...and we read theirs, including names and several members.
        let mut theirs = flate2::GzBuilder::new()
            .filename("x.json")
            .write(Vec::new(), flate2::Compression::default());
        theirs.write_all(&raw).unwrap();
        let mut two = theirs.finish().unwrap();
        two.extend_from_slice(&encode(b"more", 6));
        let mut expected = raw.clone();
        expected.extend_from_slice(b"more");
        assert_eq!(decode(&two).unwrap(), expected);
        // Corruption is an error, not a panic.
        let mut bad = ours.clone();
        let n = bad.len();
        bad[n - 6] ^= 1;
        assert!(decode(&bad).is_err());
        for cut in [0, 5, 12, n - 3] {
            assert!(decode(&ours[..cut]).is_err() || cut == 0);
        }
    }
}
