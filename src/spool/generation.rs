//! A generation: one sled database (`blocks-NNNNNNNN/`) holding a run of blocks and their
//! index. The spool writes into the newest generation and starts a new one when it grows
//! past [`super::ROTATE_BYTES`] (or is empty but bloated); an older generation is deleted,
//! directory and all, once every block in it is acknowledged.
//!
//! Why: sled keeps the file space of removed values for reuse instead of returning it, so
//! a spool that once held a large backlog would keep that much disk forever. Dropping a
//! whole drained database gives the space back (measured: docs/performance.md, "Disk").

use super::block::BlockMeta;
use super::disk::{sync_dir, SyncedFile};
use super::fit::BlockLimits;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub(super) fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(super) fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// An open generation database.
struct GenDb {
    db: sled::Db,
    blocks: sled::Tree,
    index: sled::Tree,
    /// sled's log file, to `fdatasync` after a flush.
    log: SyncedFile,
}

/// One generation. Its database is opened when needed and can be closed again: sled's
/// memory grows with the data a database has touched, so the spool keeps only the
/// generations it writes and reads open, which bounds memory whatever the backlog.
pub(super) struct Gen {
    pub id: u64,
    pub dir: PathBuf,
    cache_bytes: u64,
    /// sled's segment size for this database: the fitted one ([`super::Fit`]) when new,
    /// what it was created with otherwise (sled refuses to open it with another).
    segment_size: usize,
    db: Mutex<Option<Arc<GenDb>>>,
    /// Deleted ([`Gen::discard`]): never reopened (that would make its directory anew),
    /// and reads find nothing.
    deleted: std::sync::atomic::AtomicBool,
}

/// What opening a generation found.
pub(super) struct Loaded {
    /// Blocks with their sizes.
    pub blocks: Vec<(u64, BlockMeta)>,
    /// Blocks whose header does not decode: (key, raw value, reason).
    pub corrupt: Vec<(Vec<u8>, Vec<u8>, String)>,
}

impl Gen {
    pub(super) fn dir_name(id: u64) -> String {
        format!("blocks-{id:08}")
    }

    /// Generation ids present under `root`, oldest first.
    pub(super) fn list(root: &Path) -> std::io::Result<Vec<u64>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(root)? {
            let name = entry?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("blocks-"))
                .and_then(|n| n.parse().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// A handle to generation `id` under `root`, opened (created with `new_segment_size`
    /// byte segments if new) at once so that errors show here.
    pub(super) fn open(
        root: &Path,
        id: u64,
        cache_bytes: u64,
        new_segment_size: usize,
    ) -> sled::Result<Gen> {
        let dir = root.join(Self::dir_name(id));
        let gen = Gen {
            id,
            segment_size: segment_size_of(&dir).unwrap_or(new_segment_size),
            dir,
            cache_bytes,
            db: Mutex::new(None),
            deleted: Default::default(),
        };
        let created = !gen.dir.exists();
        gen.db()?;
        if created {
            // The new directory's entry must survive a power cut with the blocks in it.
            sync_dir(root)?;
        }
        Ok(gen)
    }

    /// The open database, opening it if needed; an error once deleted.
    fn db(&self) -> sled::Result<Arc<GenDb>> {
        self.db_unless_deleted()?
            .ok_or_else(|| sled::Error::Unsupported(format!("generation {} was deleted", self.id)))
    }

    /// The open database, opening it if needed; `None` once deleted (decided under the
    /// same lock as [`Gen::discard`], so a database is never reopened, and its directory
    /// made anew, while it is being deleted).
    fn db_unless_deleted(&self) -> sled::Result<Option<Arc<GenDb>>> {
        let mut slot = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_deleted() {
            return Ok(None);
        }
        if let Some(db) = slot.as_ref() {
            return Ok(Some(db.clone()));
        }
        let db = super::disk::open_retrying_lock(|| {
            sled::Config::new()
                .path(&self.dir)
                .cache_capacity(self.cache_bytes)
                .segment_size(self.segment_size)
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(Some(500))
                .open()
        })?;
        let blocks = db.open_tree("blocks")?;
        let index = db.open_tree("index")?;
        let log = SyncedFile::open(&self.dir)?;
        let db = Arc::new(GenDb {
            db,
            blocks,
            index,
            log,
        });
        *slot = Some(db.clone());
        Ok(Some(db))
    }

    /// How large this generation's blocks may be (from its segment size).
    pub(super) fn block_limits(&self) -> BlockLimits {
        BlockLimits::for_segment(self.segment_size)
    }

    pub(super) fn is_open(&self) -> bool {
        self.db.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Closes the database without flushing it: for a generation being deleted. Its files'
    /// space returns to the file system only once no handle is left.
    pub(super) fn discard(&self) {
        let mut slot = self.db.lock().unwrap_or_else(|p| p.into_inner());
        self.deleted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        drop(slot.take());
    }

    fn is_deleted(&self) -> bool {
        self.deleted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Flushes and closes the database (it reopens on the next use).
    pub(super) fn close(&self) {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(db) = db {
            if let Err(e) = db.db.flush() {
                tracing::warn!(generation = self.id, error = %e, "spool: flush before closing a generation failed");
            }
        }
    }

    /// Loads the index, repairing the two windows a crash can leave between the `blocks`
    /// and `index` trees (sled keeps the order of operations within a database, so only
    /// these two exist): a block stored without its index entry (crash in a commit), and a
    /// block whose index entry is gone but not the block (crash while removing). Blocks
    /// entirely below `floor` are removed.
    pub(super) fn load(&self, floor: u64) -> sled::Result<Loaded> {
        let g = self.db()?;
        let mut blocks = Vec::new();
        for item in g.index.iter() {
            let (k, v) = item?;
            if let (Some(seq), Some(m)) = (seq_of(&k), BlockMeta::decode(self.id, &v)) {
                blocks.push((seq, m));
            }
        }
        let first = blocks.first().map(|b| b.0);
        let last = blocks.last().map(|b| b.0);
        let mut orphans = Vec::new();
        let before = match first {
            Some(f) => g.blocks.range(..key(f)),
            None => g.blocks.iter(),
        };
        for item in before {
            orphans.push(item?);
        }
        if let Some(l) = last {
            for item in g.blocks.range(key(l.saturating_add(1))..) {
                orphans.push(item?);
            }
        }
        let mut corrupt = Vec::new();
        for (k, v) in orphans {
            let Some(seq) = seq_of(&k) else {
                corrupt.push((
                    k.to_vec(),
                    v.to_vec(),
                    "block key is not a sequence number".into(),
                ));
                continue;
            };
            match super::block::decode_header(&v) {
                Ok(h) => {
                    let m = BlockMeta::from_header(self.id, &h, v.len());
                    g.index.insert(&k, &m.encode())?;
                    blocks.push((seq, m));
                }
                Err(e) => corrupt.push((k.to_vec(), v.to_vec(), e.to_string())),
            }
        }
        blocks.sort_unstable_by_key(|b| b.0);
        let mut kept = Vec::with_capacity(blocks.len());
        for (seq, m) in blocks {
            if m.end(seq) <= floor {
                self.remove(seq)?;
            } else {
                kept.push((seq, m));
            }
        }
        Ok(Loaded {
            blocks: kept,
            corrupt,
        })
    }

    /// Stores a block and its index entry (not flushed).
    pub(super) fn insert(&self, seq: u64, block: &[u8], meta: &BlockMeta) -> sled::Result<()> {
        let g = self.db()?;
        g.blocks.insert(key(seq), block)?;
        g.index.insert(key(seq), &meta.encode())?;
        Ok(())
    }

    /// A block's bytes; nothing once the generation is deleted (its blocks were dropped
    /// or delivered while a reader was on its way to them).
    pub(super) fn get(&self, seq: u64) -> sled::Result<Option<sled::IVec>> {
        match self.db_unless_deleted()? {
            Some(g) => g.blocks.get(key(seq)),
            None => Ok(None),
        }
    }

    /// Overwrites a block's bytes (tests simulate corruption with it).
    #[cfg(test)]
    pub(super) fn overwrite(&self, seq: u64, bytes: &[u8]) -> sled::Result<()> {
        self.db()?.blocks.insert(key(seq), bytes)?;
        Ok(())
    }

    /// Removes a block: the index entry first, so that a crash in between leaves a block
    /// that [`load`](Self::load) puts back in the index (or removes, below the floor).
    pub(super) fn remove(&self, seq: u64) -> sled::Result<()> {
        self.remove_raw(&key(seq))
    }

    pub(super) fn remove_raw(&self, k: &[u8]) -> sled::Result<()> {
        let Some(g) = self.db_unless_deleted()? else {
            // Its directory is gone with every block in it.
            return Ok(());
        };
        g.index.remove(k)?;
        g.blocks.remove(k)?;
        Ok(())
    }

    /// Flushes and `fdatasync`s: what was inserted or removed is on stable storage.
    pub(super) fn sync(&self) -> sled::Result<()> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match db {
            Some(g) => {
                g.db.flush()?;
                g.log.sync()?;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Bytes of the generation's files (open or not).
    pub(super) fn size_on_disk(&self) -> u64 {
        dir_size(&self.dir)
    }
}

/// The segment size an existing generation's database was created with, from the
/// `conf` file sled writes when it creates a database (`segment_size: N`); `None` for a
/// directory sled has not created yet. Generations made before 4 MiB segments have 16 MiB
/// ones, and sled opens a database only with its own size.
fn segment_size_of(dir: &Path) -> Option<usize> {
    // The text is followed by a binary checksum.
    let conf = std::fs::read(dir.join("conf")).ok()?;
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix("segment_size:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Bytes of the files under `dir`, recursively (0 if it cannot be read). What the spool
/// reports as its size on disk; the benches measure with it too.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

use super::{crash, CommitGuard, SpoolError};

/// The spool's generations: starting one, keeping only the two in use open, deleting the
/// drained ones.
impl super::Spool {
    /// Starts a new generation after `current` (the caller holds the commit lock).
    pub(super) fn start_generation(&self, current: &Gen) {
        let id = current.id + 1;
        let cache = (self.inner.settings.cache_bytes / 2).max(4 << 20);
        match Gen::open(&self.inner.dir, id, cache, self.inner.fit.segment_size) {
            Ok(g) => {
                // Routine (every 64 MiB, or every few MiB on a small volume): debug level.
                tracing::debug!(generation = id, previous_bytes = current.size_on_disk(), "spool: new block database generation (the previous one is deleted once drained)");
                self.inner
                    .gens
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Arc::new(g));
                self.trim_open_generations(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "spool: cannot start a new generation; going on with the current one")
            }
        }
    }

    /// Closes the databases of generations that are neither written (the newest), nor
    /// being read (the one holding the oldest pending block, or `also_keep`).
    pub(super) fn trim_open_generations(&self, also_keep: Option<u64>) {
        let oldest = self.state().blocks.values().next().map(|m| m.gen);
        let gens = self.gens();
        let active = gens.last().map(|g| g.id);
        for g in &gens {
            let keep = [active, oldest, also_keep].contains(&Some(g.id));
            if !keep && g.is_open() {
                g.close();
            }
        }
    }

    /// Deletes generations that hold no block any more (all but the active one), and
    /// replaces an empty active generation that has grown large. Needs the commit lock:
    /// no commit (which may add blocks to a generation) and no rotation (which makes a
    /// generation eligible) can interleave with the decision.
    pub(super) fn retire_generations(&self, _commits: &CommitGuard<'_>) {
        let in_use: std::collections::HashSet<u64> =
            self.state().blocks.values().map(|m| m.gen).collect();
        let gens = self.gens();
        let Some(active) = gens.last().cloned() else {
            return;
        };
        if !in_use.contains(&active.id)
            && active.size_on_disk() > self.inner.fit.rotate_bytes * 3 / 8
        {
            self.start_generation(&active);
        }
        let gens = self.gens();
        let active_id = gens.last().map(|g| g.id);
        let retire: Vec<Arc<Gen>> = gens
            .iter()
            .filter(|g| Some(g.id) != active_id && !in_use.contains(&g.id))
            .cloned()
            .collect();
        if retire.is_empty() {
            self.trim_open_generations(None);
            return;
        }
        {
            let mut all = self.inner.gens.write().unwrap_or_else(|p| p.into_inner());
            all.retain(|g| !retire.iter().any(|r| r.id == g.id));
        }
        for g in retire {
            let (id, dir, bytes) = (g.id, g.dir.clone(), g.size_on_disk());
            crash::point("retire:before_delete");
            // Readers may still hold the database open for a moment: unlinked files stay
            // readable until closed, so removing now is safe.
            // Closed and marked first: nothing reopens it while its files go.
            g.discard();
            drop(g);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::debug!(
                    generation = id,
                    freed_bytes = bytes,
                    "spool: drained block database deleted"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, dir = %dir.display(), "spool: cannot delete a drained block database")
                }
            }
        }
    }

    /// Removes blocks from their generations (the floor covering them is already durable).
    pub(super) fn remove_blocks(&self, removed: &[(u64, u64)]) -> Result<(), SpoolError> {
        if removed.is_empty() {
            return Ok(());
        }
        let gens = self.gens();
        for (seq, gen_id) in removed {
            if let Some(g) = gens.iter().find(|g| g.id == *gen_id) {
                g.remove(*seq).map_err(|e| self.db_err(e))?;
            }
            crash::point("remove:first_block_removed");
        }
        drop(gens);
        crash::point("remove:blocks_removed");
        Ok(())
    }
}
