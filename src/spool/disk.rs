//! The spool and the file system underneath it: what makes a write durable, how much room
//! is left, and the emergency reserve that keeps the relay able to make progress on a full
//! disk.
//!
//! - **Durability.** sled's `flush` ends in `sync_file_range`, which on Linux neither
//!   flushes the drive's write cache nor persists a file's new size: a power cut can take
//!   back what it wrote. [`SyncedFile::sync`] is the `fdatasync` of a sled database's log
//!   file that the spool adds after each flush that something is promised on (a commit,
//!   a new delivered position, a dead letter).
//! - **Free space.** [`free_bytes`] (statvfs) is checked before every commit; below
//!   `RELAY_SPOOL_MIN_FREE_BYTES` the spool behaves as if it were at its size cap.
//! - **The reserve.** [`Ballast`] is a file of [`BALLAST_BYTES`] allocated in the spool
//!   directory. When the disk is nearly full anyway (something else filled it) it is
//!   deleted, so that recording acknowledgements and removing blocks, which need a little
//!   room in sled's log, still work and space can come back. It is re-created once free
//!   space is back (CockroachDB's ballast, for the same reason).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Size of the emergency reserve file.
pub const BALLAST_BYTES: u64 = 16 << 20;
/// The reserve's file name in the spool directory.
pub const BALLAST_FILE: &str = "reserve.ballast";

/// The log file of one sled database, kept open to `fdatasync` it.
pub(super) struct SyncedFile {
    file: File,
    dir: PathBuf,
}

impl SyncedFile {
    /// Opens the log file of the sled database in `sled_dir` (sled 0.34 keeps everything
    /// but snapshots and blobs in `db`). Call after sled has opened the database.
    pub(super) fn open(sled_dir: &Path) -> io::Result<SyncedFile> {
        Ok(SyncedFile {
            file: File::open(sled_dir.join("db"))?,
            dir: sled_dir.to_path_buf(),
        })
    }

    /// `fdatasync` of the log: what sled flushed is on stable storage when this returns.
    pub(super) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Also syncs sled's blob files (values too large for a page: only a large dead
    /// letter gets there) and the blob directory, which sled writes without syncing.
    pub(super) fn sync_with_blobs(&self) -> io::Result<()> {
        self.sync()?;
        let blobs = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&blobs) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            File::open(entry?.path())?.sync_data()?;
        }
        sync_dir(&blobs)
    }
}

/// `fsync` of a directory, so that files created or removed in it stay so.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes an unprivileged process may still write on the file system holding `path`. An
/// error for file systems that report no size (the free-space floor is then not applied).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    #[cfg(test)]
    if let Some(room) = PRETEND_FREE.with(|p| p.get()) {
        return Ok(room.saturating_sub(super::dir_size(path)));
    }
    statvfs(path).map(|s| s.0)
}

#[cfg(test)]
thread_local! {
    /// Unit tests on this thread: [`free_bytes`] reports this less what the spool
    /// directory holds, as on a volume with that much room for the spool (a full disk
    /// without filling one; the integration tests fill a real tmpfs).
    static PRETEND_FREE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Unit tests: make [`free_bytes`] report `room` less the spool directory's size on this
/// thread (`None`: the truth).
#[cfg(test)]
pub(super) fn pretend_free(room: Option<u64>) {
    PRETEND_FREE.with(|p| p.set(room));
}

/// The size of the file system holding `path`; an error where it reports none.
pub(super) fn fs_bytes(path: &Path) -> io::Result<u64> {
    statvfs(path).map(|s| s.1)
}

/// (bytes available to unprivileged writers, total bytes) of the file system at `path`.
fn statvfs(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string and `st` is a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    if st.f_blocks == 0 {
        // Some FUSE and network file systems report no sizes at all.
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the file system does not report its size",
        ));
    }
    // The field types differ between targets (u64 here, u32 on some).
    #[allow(clippy::unnecessary_cast)]
    let (avail, total, unit) = (st.f_bavail as u64, st.f_blocks as u64, st.f_frsize as u64);
    Ok((avail.saturating_mul(unit), total.saturating_mul(unit)))
}

/// What [`Ballast::adjust`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reserve {
    Released,
    Created,
    Unchanged,
}

/// The emergency reserve: a file of [`BALLAST_BYTES`] whose blocks are really allocated.
pub(super) struct Ballast {
    path: PathBuf,
    present: AtomicBool,
}

impl Ballast {
    pub(super) fn new(spool_dir: &Path) -> Ballast {
        let path = spool_dir.join(BALLAST_FILE);
        let present = std::fs::metadata(&path).is_ok_and(|m| m.len() >= BALLAST_BYTES);
        Ballast {
            path,
            present: AtomicBool::new(present),
        }
    }

    pub(super) fn is_present(&self) -> bool {
        self.present.load(Ordering::Relaxed)
    }

    /// The one rule for the reserve, given `free` bytes on the file system: released when
    /// less than its size is left (something filled the disk: recording deliveries needs
    /// the room), re-created once it fits above `keep_free` with as much to spare.
    pub(super) fn adjust(&self, free: u64, keep_free: u64) -> Reserve {
        if free < BALLAST_BYTES {
            if self.release() {
                return Reserve::Released;
            }
        } else if self.ensure(free, keep_free) {
            return Reserve::Created;
        }
        Reserve::Unchanged
    }

    /// Creates the reserve if it is missing and `free` leaves room for it above
    /// `keep_free`. Returns whether it was created now.
    pub(super) fn ensure(&self, free: u64, keep_free: u64) -> bool {
        if self.is_present() || free < keep_free.saturating_add(2 * BALLAST_BYTES) {
            return false;
        }
        match allocate(&self.path, BALLAST_BYTES) {
            Ok(()) => {
                self.present.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                tracing::debug!(error = %e, "spool: cannot create the emergency reserve yet");
                false
            }
        }
    }

    /// Deletes the reserve, giving its space to the spool. Returns whether there was one.
    pub(super) fn release(&self) -> bool {
        if !self.present.swap(false, Ordering::Relaxed) {
            return false;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "spool: cannot delete the emergency reserve");
                false
            }
        }
    }
}

/// Writes a file of `len` bytes with its blocks allocated (not sparse), and syncs it.
fn allocate(path: &Path, len: u64) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::io::AsRawFd;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    // SAFETY: a valid, open file descriptor.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len as libc::off_t) };
    if rc != 0 {
        if rc == libc::ENOSPC {
            drop(f);
            let _ = std::fs::remove_file(&tmp);
            return Err(io::Error::from_raw_os_error(rc));
        }
        // Not supported here: write zeros instead.
        let zeros = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
    }
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Opens a sled database, retrying for half a second while its lock is held: in one
/// process, sled's background threads may hold a just-dropped database for a moment. A
/// lock held by another process is still reported within that half second.
pub(super) fn open_retrying_lock<T>(mut open: impl FnMut() -> sled::Result<T>) -> sled::Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        match open() {
            Err(e) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

pub(super) fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballast_is_allocated_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let b = Ballast::new(dir.path());
        assert!(!b.is_present());
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        // Not enough room above what must stay free: not created.
        assert!(!b.ensure(free, free));
        assert!(b.ensure(free, 0));
        let meta = std::fs::metadata(dir.path().join(BALLAST_FILE)).unwrap();
        assert_eq!(meta.len(), BALLAST_BYTES);
        {
            use std::os::unix::fs::MetadataExt;
            // Allocated, not sparse: the blocks are really taken.
            assert!(meta.blocks() * 512 >= BALLAST_BYTES, "{}", meta.blocks());
        }
        assert!(Ballast::new(dir.path()).is_present());
        // The rule: kept while there is room, released when less than its size is left,
        // re-created only with room to spare above what must stay free.
        assert_eq!(b.adjust(free, 0), Reserve::Unchanged);
        assert_eq!(b.adjust(BALLAST_BYTES - 1, 0), Reserve::Released);
        assert!(!dir.path().join(BALLAST_FILE).exists());
        assert_eq!(b.adjust(BALLAST_BYTES - 1, 0), Reserve::Unchanged);
        assert_eq!(
            b.adjust(3 * BALLAST_BYTES, 2 * BALLAST_BYTES),
            Reserve::Unchanged
        );
        assert_eq!(b.adjust(free, 0), Reserve::Created);
        assert!(b.release());
        assert!(!dir.path().join(BALLAST_FILE).exists());
        assert!(!b.release());
    }
}
