//! Test infrastructure shared by the unit tests (the spool's power-cut tests) and the
//! integration tests (`tests/power_cut.rs`): [`LazyFs`], power cuts on demand. Not part
//! of the relay; hidden from its documentation.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A LazyFS mount of `root` at `mnt`, unmounted on drop. LazyFS (a FUSE file system)
/// keeps written data in its own cache until `fsync`/`fdatasync` and drops every unsynced
/// byte when told to ([`LazyFs::cut`]): what a power cut leaves.
pub struct LazyFs {
    ctl: PathBuf,
    root: PathBuf,
    mnt: PathBuf,
}

impl LazyFs {
    /// The control script, or why power-cut tests cannot run here: root, `/dev/fuse`, and
    /// `LAZYFS_CTL` or `../shared/tools/lazyfs/lazyfs-ctl` beside the repository (it
    /// builds LazyFS offline on first use).
    pub fn available() -> Result<PathBuf, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (LazyFS mounts need it; CI runs as root)".into());
        }
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse".into());
        }
        let ctl = std::env::var_os("LAZYFS_CTL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/lazyfs/lazyfs-ctl")
            });
        if !ctl.is_file() {
            return Err(format!(
                "no LazyFS control script at {} (set LAZYFS_CTL)",
                ctl.display()
            ));
        }
        Ok(ctl)
    }

    fn ctl(&self, args: &[&Path]) {
        let out = Command::new("bash")
            .arg(&self.ctl)
            .args(args)
            .output()
            .expect("run lazyfs-ctl");
        assert!(
            out.status.success(),
            "lazyfs-ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Mounts `root` at `mnt` (both directories must exist).
    pub fn mount(ctl: PathBuf, root: PathBuf, mnt: PathBuf) -> LazyFs {
        // The first mount on a machine builds LazyFS (apt-get, cmake); two tests doing that
        // at once collide on apt's lock. One mount at a time; after the first the build is
        // cached and mounting takes a moment.
        static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
        let fs = LazyFs { ctl, root, mnt };
        fs.ctl(&[Path::new("mount"), &fs.root, &fs.mnt]);
        fs
    }

    pub fn mnt(&self) -> &Path {
        &self.mnt
    }

    /// Drops every byte not yet synced: what a power cut leaves.
    pub fn cut(&self) {
        self.ctl(&[Path::new("cut"), &self.mnt]);
    }

    pub fn umount(&self) {
        self.ctl(&[Path::new("umount"), &self.mnt]);
    }

    /// Unmounts and mounts again: the next process sees only what survived the cut.
    pub fn remount(&self) {
        self.umount();
        self.ctl(&[Path::new("mount"), &self.root, &self.mnt]);
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.ctl)
            .arg("umount")
            .arg(&self.mnt)
            .output();
    }
}
