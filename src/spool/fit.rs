//! [`Fit`]: the spool's sizes fitted to the file system it is on.
//!
//! The defaults suit a disk of gigabytes: 4 MiB sled segments, 64 MiB generations, a
//! 128 MiB free-space floor. On a small volume (a container volume of 32 MiB, a nearly
//! full root disk) they wedge the spool: a floor larger than the volume refuses every
//! event, and a floor smaller than what sled writes between two free-space checks lets
//! sled itself hit ENOSPC, which fails the spool for good. So at open the spool takes the
//! file system's size and fits four figures to it:
//!
//! - **segment size** of the generations it creates: the largest power of two no larger
//!   than 1/16 of the file system, between 256 KiB and [`SEGMENT_SIZE`]. Blocks are kept
//!   under 1/80 of it ([`BlockLimits`]), as invariant 8 requires.
//! - **headroom**: what sled may write between two checks (the check runs before every
//!   commit; acknowledgements and removals write without one): four segments of the block
//!   database (the one being written, the next one sled opens, a leaf rewritten whole,
//!   room for the segment cleaner) and two of the state database's 512 KiB segments. The
//!   floor is never below it; a lower `RELAY_SPOOL_MIN_FREE_BYTES` is raised to it, and
//!   the start line and `relay check` say so.
//! - **floor**: the smaller of `RELAY_SPOOL_MIN_FREE_BYTES` and a quarter of the file
//!   system (the share left free for others on a shared disk; CockroachDB sizes its ballast
//!   from the disk the same way), but at least the headroom.
//! - **rotation size**: a generation is closed for writing past the smaller of
//!   [`ROTATE_BYTES`] and a quarter of what the spool can hold, so a full small volume
//!   still has several generations, and dropping the oldest whole gives space back at once.
//!
//! Measured on tmpfs (tests/small_disk.rs): with the old fixed sizes, an 8 MiB volume
//! refused every event (floor 128 MiB), and a 1 MiB floor let sled fail with ENOSPC within
//! seconds of the disk filling.

use super::{ROTATE_BYTES, SEGMENT_SIZE};

/// sled's smallest segment size that keeps blocks of a few KiB (sled allows 256 bytes).
pub(super) const MIN_SEGMENT: usize = 256 << 10;
/// Segment size of the state database (sled's default).
pub(super) const STATE_SEGMENT: u64 = 512 << 10;
/// Below this much room the spool is "too small to be useful": about 120,000 QSS events at
/// the ~130 stored bytes each that zstd makes of them, one minute at 2,000 events/s.
pub const MIN_USEFUL_BYTES: u64 = 16 << 20;

/// The spool's sizes on one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// The file system's size (`None`: it reports none; the defaults apply).
    pub fs_bytes: Option<u64>,
    /// sled segment size for new generations.
    pub segment_size: usize,
    /// What sled may write between two free-space checks.
    pub headroom: u64,
    /// `RELAY_SPOOL_MIN_FREE_BYTES` as set.
    pub configured_floor: u64,
    /// The free-space floor applied.
    pub floor: u64,
    /// Size past which the generation being written is closed.
    pub rotate_bytes: u64,
}

impl Fit {
    /// The sizes for a file system of `fs_bytes`, with the configured floor and rotation
    /// size (the latter is lowered by tests only).
    pub fn new(fs_bytes: Option<u64>, configured_floor: u64, rotate_bytes: u64) -> Fit {
        let Some(fs) = fs_bytes else {
            return Fit {
                fs_bytes,
                segment_size: SEGMENT_SIZE,
                headroom: headroom(SEGMENT_SIZE),
                configured_floor,
                floor: configured_floor,
                rotate_bytes,
            };
        };
        let segment_size = segment_for(fs);
        let headroom = headroom(segment_size);
        // A floor of 0 turns the free-space check off (tests, and file systems whose free
        // space means nothing); it stays off.
        let floor = if configured_floor == 0 {
            0
        } else {
            configured_floor.min(fs / 4).max(headroom)
        };
        let holdable = fs.saturating_sub(floor);
        Fit {
            fs_bytes,
            segment_size,
            headroom,
            configured_floor,
            floor,
            // Tests lower `rotate_bytes` below any fitted figure; it stays theirs.
            rotate_bytes: rotate_bytes.min(
                (holdable / 4)
                    .max(2 * segment_size as u64)
                    .min(ROTATE_BYTES),
            ),
        }
    }

    /// What the spool can hold on this file system when nothing else uses it: its size
    /// less the floor.
    pub fn holdable(&self) -> Option<u64> {
        self.fs_bytes.map(|fs| fs.saturating_sub(self.floor))
    }

    /// Whether the configured floor was changed to fit, and why (for the start line and
    /// `relay check`).
    pub fn adjustment(&self) -> Option<String> {
        if self.floor == self.configured_floor {
            return None;
        }
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        Some(if self.floor > self.configured_floor {
            format!(
                "RELAY_SPOOL_MIN_FREE_BYTES ({}) is below what sled may write between two free-space checks here ({}: four {} KiB segments and the state database's two); raised to {}",
                mib(self.configured_floor),
                mib(self.headroom),
                self.segment_size >> 10,
                mib(self.floor)
            )
        } else {
            format!(
                "RELAY_SPOOL_MIN_FREE_BYTES ({}) is more than a quarter of this {} file system; lowered to {}",
                mib(self.configured_floor),
                mib(self.fs_bytes.unwrap_or(0)),
                mib(self.floor)
            )
        })
    }
}

/// The segment size of new generations on a file system of `fs` bytes.
fn segment_for(fs: u64) -> usize {
    let target = (fs / 16).clamp(MIN_SEGMENT as u64, SEGMENT_SIZE as u64);
    // The largest power of two not above the target.
    1usize << (63 - target.leading_zeros())
}

/// What sled may write between two free-space checks with `segment` byte segments.
fn headroom(segment: usize) -> u64 {
    4 * segment as u64 + 2 * STATE_SEGMENT
}

/// How large blocks of one generation may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlockLimits {
    /// Uncompressed bytes aimed at per block.
    pub raw_target: usize,
    /// Largest stored block, unless one record is larger by itself.
    pub max_stored: usize,
}

impl BlockLimits {
    /// The limits for a generation with `segment_size` segments: stored blocks under 1/80
    /// of the segment (never above the bound of [`SEGMENT_SIZE`], which older generations
    /// with larger segments share), and a raw target five times that, as 256 KiB is for
    /// 52 KiB (QSS JSON compresses about 11:1, so blocks are rarely split).
    pub(super) fn for_segment(segment_size: usize) -> BlockLimits {
        let max_stored = segment_size.min(SEGMENT_SIZE) / 80;
        BlockLimits {
            raw_target: max_stored * 5,
            max_stored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{BLOCK_RAW_TARGET, MAX_BLOCK_STORED};

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_large_disk_keeps_the_defaults() {
        let f = Fit::new(Some(100 << 30), 128 * MIB, ROTATE_BYTES);
        assert_eq!(f.segment_size, SEGMENT_SIZE);
        assert_eq!((f.floor, f.rotate_bytes), (128 * MIB, ROTATE_BYTES));
        assert_eq!(f.adjustment(), None);
        let b = BlockLimits::for_segment(SEGMENT_SIZE);
        assert_eq!(b.max_stored, MAX_BLOCK_STORED);
        assert!(b.raw_target.abs_diff(BLOCK_RAW_TARGET) < BLOCK_RAW_TARGET / 50);
        // Older generations with 16 MiB segments keep the same bound.
        assert_eq!(BlockLimits::for_segment(16 << 20), b);
    }

    #[test]
    fn small_volumes_get_small_segments_a_floor_that_fits_and_several_generations() {
        // 8 MiB: 512 KiB segments, headroom 3 MiB; the default floor (128 MiB) would refuse
        // everything, 1 MiB would let sled hit ENOSPC.
        for configured in [128 * MIB, MIB] {
            let f = Fit::new(Some(8 * MIB), configured, ROTATE_BYTES);
            assert_eq!(f.segment_size, 512 << 10);
            assert_eq!(f.headroom, 3 * MIB);
            assert_eq!(f.floor, 3 * MIB, "{configured}");
            assert_eq!(f.holdable(), Some(5 * MIB));
            assert_eq!(f.rotate_bytes, 5 * MIB / 4);
            let why = f.adjustment().unwrap();
            assert!(
                why.contains(if configured > f.floor {
                    "lowered"
                } else {
                    "raised"
                }),
                "{why}"
            );
        }
        // 32 MiB with a 12 MiB floor: 2 MiB segments, the floor lowered to a quarter.
        let f = Fit::new(Some(32 * MIB), 12 * MIB, ROTATE_BYTES);
        assert_eq!(f.segment_size, 2 << 20);
        assert_eq!((f.headroom, f.floor), (9 * MIB, 9 * MIB));
        assert_eq!(f.rotate_bytes, 23 * MIB / 4);
        // Off stays off.
        assert_eq!(Fit::new(Some(8 * MIB), 0, ROTATE_BYTES).floor, 0);
        // A file system without sizes: the settings as they are.
        let f = Fit::new(None, 7, ROTATE_BYTES);
        assert_eq!((f.floor, f.segment_size), (7, SEGMENT_SIZE));
    }

    #[test]
    fn segments_are_powers_of_two_sled_accepts() {
        for fs in [0, 1, 3 << 20, 8 << 20, 33 << 20, 100 << 20, 1 << 40] {
            let s = segment_for(fs);
            assert!(
                s.is_power_of_two() && (MIN_SEGMENT..=SEGMENT_SIZE).contains(&s),
                "{fs}: {s}"
            );
        }
    }
}
