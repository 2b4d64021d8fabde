//! The on-disk block format: one group commit = one block = one sled value.
//!
//! ```text
//! offset  size  field
//!  0      3     magic "QSB"
//!  3      1     format version (1)
//!  4      8     first sequence number (LE)
//! 12      4     record count (LE)
//! 16      4     uncompressed body length (LE)
//! 20      8     receive time of the first record, ms (LE)
//! 28      8     receive time of the last record, ms (LE)
//! 36      4     CRC-32 of bytes 0..36 followed by the compressed body (LE)
//! 40      ..    body: one zstd frame
//! ```
//!
//! The body, uncompressed, is the records back to back, each
//! `received_ms u64 | kind u8 | flags u8 | len u32 | payload[len]` (LE).
//!
//! Decoding never panics: any inconsistency (bad magic, unknown version, checksum
//! mismatch, a body that does not decompress to the announced length, a record running
//! past the end) is a [`BlockError`], and the spool moves such a block to the dead-letter
//! area instead of stopping the shipper.

use super::fit::BlockLimits;
use super::record::{NewRecord, Record, SourceKind};
use bytes::Bytes;
use std::io::Write;

pub(super) const MAGIC: &[u8; 3] = b"QSB";
pub(super) const VERSION: u8 = 1;
pub(super) const HEADER_LEN: usize = 40;
const RECORD_HEADER_LEN: usize = 14;
/// A block claiming a larger body is corrupt (the writer caps groups far below this).
pub(super) const MAX_RAW_LEN: usize = 512 << 20;
/// zstd level: level 1 compresses QSS JSON about 6x at several hundred MB/s per core.
pub(super) const ZSTD_LEVEL: i32 = 1;
/// zstd's window: 512 KiB, more than a block's raw size (about
/// [`super::BLOCK_RAW_TARGET`], 256 KiB), so that the encoder never wraps its window
/// (10% fewer instructions per block than a wrapping window, callgrind, when blocks were
/// 1 MiB), and readers need no more memory than the block.
pub(super) const WINDOW_LOG: u32 = 19;

/// The fixed-size header, readable without decompressing the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub first_seq: u64,
    pub count: u32,
    pub raw_len: u32,
    pub first_received_ms: u64,
    pub last_received_ms: u64,
}

impl BlockHeader {
    /// One past the last sequence number in the block.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + u64::from(self.count)
    }
}

/// Why a block could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block is truncated ({0} bytes, header needs {HEADER_LEN})")]
    Truncated(usize),
    #[error("bad magic bytes (not a spool block)")]
    BadMagic,
    #[error("unknown block format version {0} (this relay reads version {VERSION})")]
    UnknownVersion(u8),
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("body does not decompress: {0}")]
    Decompress(String),
    #[error("body is {actual} bytes, header says {expected}")]
    Length { expected: usize, actual: usize },
    #[error("record {index} is malformed: {reason}")]
    Record { index: u32, reason: &'static str },
    #[error("block key {key} does not match its header's first sequence {header}")]
    KeyMismatch { key: u64, header: u64 },
}

/// Sizes of one stored block, kept in memory (and in the `index` tree) so that stats and
/// the size cap never read block bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlockMeta {
    pub gen: u64,
    pub count: u32,
    pub raw_len: u32,
    pub stored_len: u32,
    pub first_ms: u64,
    pub last_ms: u64,
}

impl BlockMeta {
    pub(super) fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[0..4].copy_from_slice(&self.count.to_le_bytes());
        b[4..8].copy_from_slice(&self.raw_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.stored_len.to_le_bytes());
        b[12..20].copy_from_slice(&self.first_ms.to_le_bytes());
        b[20..28].copy_from_slice(&self.last_ms.to_le_bytes());
        b
    }

    pub(super) fn decode(gen: u64, b: &[u8]) -> Option<BlockMeta> {
        if b.len() != 28 {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(BlockMeta {
            gen,
            count: u32_at(0),
            raw_len: u32_at(4),
            stored_len: u32_at(8),
            first_ms: u64_at(12),
            last_ms: u64_at(20),
        })
    }

    pub(super) fn from_header(gen: u64, h: &BlockHeader, stored_len: usize) -> BlockMeta {
        BlockMeta {
            gen,
            count: h.count,
            raw_len: h.raw_len,
            stored_len: stored_len as u32,
            first_ms: h.first_received_ms,
            last_ms: h.last_received_ms,
        }
    }

    pub(super) fn end(&self, first: u64) -> u64 {
        first + u64::from(self.count)
    }
}

/// Splits `records` (numbered from `first`) into blocks of about `limits.raw_target`
/// uncompressed bytes ([`super::BLOCK_RAW_TARGET`] on a large disk), halving any whose
/// compressed size exceeds `limits.max_stored` ([`super::MAX_BLOCK_STORED`]).
pub(super) fn encode_blocks(
    gen: u64,
    limits: BlockLimits,
    first: u64,
    records: &[NewRecord],
) -> Vec<(u64, Vec<u8>, BlockMeta)> {
    let mut chunks: Vec<(usize, usize)> = Vec::new();
    let mut chunk_start = 0;
    let mut raw = 0;
    for (idx, r) in records.iter().enumerate() {
        raw += r.payload.len();
        if raw >= limits.raw_target || idx + 1 == records.len() {
            chunks.push((chunk_start, idx + 1));
            chunk_start = idx + 1;
            raw = 0;
        }
    }
    let encode = |(a, b): (usize, usize)| ((a, b), encode(first + a as u64, &records[a..b]));
    // Compression is most of a commit's CPU: blocks of one group compress in parallel.
    let mut encoded: Vec<((usize, usize), Vec<u8>)> = if chunks.len() > 1 {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(chunks.len());
        let per = chunks.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .chunks(per)
                .map(|part| {
                    scope.spawn(move || part.iter().map(|c| encode(*c)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("block encoding does not panic"))
                .collect()
        })
    } else {
        chunks.into_iter().map(encode).collect()
    };
    let mut out = Vec::with_capacity(encoded.len());
    while let Some(((a, b), block)) = encoded.pop() {
        if block.len() > limits.max_stored && b - a > 1 {
            let mid = a + (b - a) / 2;
            encoded.push(encode((mid, b)));
            encoded.push(encode((a, mid)));
            continue;
        }
        let h = decode_header(&block).expect("a block just encoded has a valid header");
        let m = BlockMeta::from_header(gen, &h, block.len());
        out.push((first + a as u64, block, m));
    }
    out.sort_unstable_by_key(|b| b.0);
    out
}

/// Encodes records (already numbered from `first_seq`) into one block.
///
/// Payloads are streamed into the zstd encoder: no copy of them is made before
/// compression. The window covers a whole block ([`WINDOW_LOG`]).
pub fn encode(first_seq: u64, records: &[NewRecord]) -> Vec<u8> {
    let raw_len: usize = records
        .iter()
        .map(|r| RECORD_HEADER_LEN + r.payload.len())
        .sum();
    let first_ms = records.first().map_or(0, |r| r.received_ms);
    let last_ms = records.last().map_or(0, |r| r.received_ms);

    let mut out = Vec::with_capacity(HEADER_LEN + raw_len / 4 + 64);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(&first_ms.to_le_bytes());
    out.extend_from_slice(&last_ms.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // checksum, filled below

    let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)
        .expect("zstd encoder with a valid level");
    enc.include_checksum(false).expect("zstd parameter");
    enc.set_pledged_src_size(Some(raw_len as u64))
        .expect("zstd parameter");
    enc.window_log(WINDOW_LOG).expect("zstd parameter");
    for r in records {
        let mut head = [0u8; RECORD_HEADER_LEN];
        head[0..8].copy_from_slice(&r.received_ms.to_le_bytes());
        head[8] = r.kind.as_u8();
        head[9] = r.flags;
        head[10..14].copy_from_slice(&(r.payload.len() as u32).to_le_bytes());
        enc.write_all(&head).expect("writing to a Vec cannot fail");
        enc.write_all(&r.payload)
            .expect("writing to a Vec cannot fail");
    }
    let mut out = enc.finish().expect("writing to a Vec cannot fail");
    let crc = checksum(&out);
    out[36..40].copy_from_slice(&crc.to_le_bytes());
    out
}

fn checksum(block: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&block[..36]);
    h.update(&block[HEADER_LEN..]);
    h.finalize()
}

/// Reads and checks the header (magic, version, checksum). Cheap: no decompression.
pub(super) fn decode_header(block: &[u8]) -> Result<BlockHeader, BlockError> {
    if block.len() < HEADER_LEN {
        return Err(BlockError::Truncated(block.len()));
    }
    if &block[0..3] != MAGIC {
        return Err(BlockError::BadMagic);
    }
    if block[3] != VERSION {
        return Err(BlockError::UnknownVersion(block[3]));
    }
    let u64_at = |i: usize| u64::from_le_bytes(block[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_le_bytes(block[i..i + 4].try_into().expect("4 bytes"));
    let stored = u32_at(36);
    let computed = checksum(block);
    if stored != computed {
        return Err(BlockError::Checksum { stored, computed });
    }
    Ok(BlockHeader {
        first_seq: u64_at(4),
        count: u32_at(12),
        raw_len: u32_at(16),
        first_received_ms: u64_at(20),
        last_received_ms: u64_at(28),
    })
}

/// Decodes a whole block into records whose payloads share one buffer.
pub fn decode(block: &[u8]) -> Result<(BlockHeader, Vec<Record>), BlockError> {
    let header = decode_header(block)?;
    let raw_len = header.raw_len as usize;
    if raw_len > MAX_RAW_LEN {
        return Err(BlockError::Length {
            expected: raw_len,
            actual: 0,
        });
    }
    let body = zstd::bulk::decompress(&block[HEADER_LEN..], raw_len)
        .map_err(|e| BlockError::Decompress(e.to_string()))?;
    if body.len() != raw_len {
        return Err(BlockError::Length {
            expected: raw_len,
            actual: body.len(),
        });
    }
    let body = Bytes::from(body);
    let mut records =
        Vec::with_capacity((header.count as usize).min(raw_len / RECORD_HEADER_LEN + 1));
    let mut pos = 0usize;
    for index in 0..header.count {
        let bad = |reason| BlockError::Record { index, reason };
        let head = body
            .get(pos..pos + RECORD_HEADER_LEN)
            .ok_or(bad("header runs past the body"))?;
        let received_ms = u64::from_le_bytes(head[0..8].try_into().expect("8 bytes"));
        let kind = SourceKind::from_u8(head[8]).ok_or(bad("unknown source kind"))?;
        let flags = head[9];
        let len = u32::from_le_bytes(head[10..14].try_into().expect("4 bytes")) as usize;
        let start = pos + RECORD_HEADER_LEN;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= body.len())
            .ok_or(bad("payload runs past the body"))?;
        records.push(Record {
            seq: header.first_seq + u64::from(index),
            received_ms,
            kind,
            flags,
            payload: body.slice(start..end),
        });
        pos = end;
    }
    if pos != body.len() {
        return Err(BlockError::Length {
            expected: pos,
            actual: body.len(),
        });
    }
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64, payload: &str) -> NewRecord {
        NewRecord {
            received_ms: 1_700_000_000_000 + i,
            kind: if i.is_multiple_of(2) {
                SourceKind::WebSocket
            } else {
                SourceKind::Webhook
            },
            flags: (i % 3) as u8,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        }
    }

    /// Invariant 8: what is stored stays under the generation's limit (`MAX_BLOCK_STORED`
    /// with 4 MiB segments, less with the smaller ones of a small volume; sled would
    /// otherwise write a blob file it never reclaims), except a single record larger by
    /// itself.
    #[test]
    fn blocks_are_split_under_the_stored_limit_and_cover_every_record() {
        for segment in [super::super::SEGMENT_SIZE, 512 << 10] {
            split_under(BlockLimits::for_segment(segment));
        }
    }

    fn split_under(limits: BlockLimits) {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut records: Vec<NewRecord> = (0..400)
            .map(|i| {
                let noise: String = (0..8_000).map(|_| rng.alphanumeric()).collect();
                rec(i, &noise)
            })
            .collect();
        let huge: String = (0..400_000).map(|_| rng.alphanumeric()).collect();
        records.push(rec(400, &huge));
        let blocks = encode_blocks(1, limits, 5_000, &records);
        let mut next = 5_000;
        for (first, block, meta) in &blocks {
            assert_eq!(*first, next, "contiguous, in order");
            let (h, recs) = decode(block).unwrap();
            assert_eq!(h.first_seq, *first);
            assert_eq!(meta.stored_len as usize, block.len());
            assert!(
                block.len() <= limits.max_stored || recs.len() == 1,
                "{} records in {} stored bytes",
                recs.len(),
                block.len()
            );
            next += recs.len() as u64;
        }
        assert_eq!(next, 5_000 + records.len() as u64);
        assert!(blocks.len() > 10, "split: {} blocks", blocks.len());
    }

    #[test]
    fn round_trip() {
        let records: Vec<_> = (0..50).map(|i| rec(i, &format!("{{\"n\":{i}}}"))).collect();
        let block = encode(1000, &records);
        let (h, out) = decode(&block).unwrap();
        assert_eq!(h.first_seq, 1000);
        assert_eq!(h.count, 50);
        assert_eq!(h.end_seq(), 1050);
        assert_eq!(h.first_received_ms, records[0].received_ms);
        assert_eq!(h.last_received_ms, records[49].received_ms);
        for (i, (a, b)) in records.iter().zip(&out).enumerate() {
            assert_eq!(b.seq, 1000 + i as u64);
            assert_eq!(
                (a.received_ms, a.kind, a.flags, &a.payload),
                (b.received_ms, b.kind, b.flags, &b.payload)
            );
        }
    }

    /// Blocks written before blocks were 256 KiB used a 2 MiB zstd window over 1 MiB of
    /// records: they still decode (the window is in zstd's frame header, and the decoder
    /// takes windows up to its default limit, far above both).
    #[test]
    fn blocks_written_with_the_earlier_2_mib_window_decode() {
        let records: Vec<_> = (0..800)
            .map(|i| {
                rec(
                    i,
                    &format!("{{\"n\":{i},\"pad\":\"{}\"}}", "q".repeat(1400)),
                )
            })
            .collect();
        let block = encode(7, &records);
        let raw = zstd::bulk::decompress(&block[HEADER_LEN..], 2 << 20).unwrap();
        assert!(raw.len() > 1 << 20, "a 1 MiB block, as they were");
        let mut enc = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
        enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(21))
            .unwrap();
        let mut old = block[..HEADER_LEN].to_vec();
        old.extend_from_slice(&enc.compress(&raw).unwrap());
        let crc = checksum(&old);
        old[36..40].copy_from_slice(&crc.to_le_bytes());
        assert_ne!(old, block, "compressed differently");
        let (h, out) = decode(&old).unwrap();
        assert_eq!((h.first_seq, out.len()), (7, 800));
        assert!(records
            .iter()
            .zip(&out)
            .all(|(a, b)| a.payload == b.payload));
    }

    #[test]
    fn empty_payloads_and_empty_blocks() {
        let block = encode(7, &[rec(0, "")]);
        assert_eq!(decode(&block).unwrap().1[0].payload.len(), 0);
        let block = encode(7, &[]);
        assert!(decode(&block).unwrap().1.is_empty());
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let block = encode(1, &[rec(0, "hello"), rec(1, "world")]);
        for byte in 0..block.len() {
            for bit in 0..8 {
                let mut b = block.clone();
                b[byte] ^= 1 << bit;
                assert!(
                    decode(&b).is_err(),
                    "flip at byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn truncation_is_an_error() {
        let block = encode(1, &[rec(0, "hello")]);
        for len in 0..block.len() {
            assert!(decode(&block[..len]).is_err());
        }
    }
}
