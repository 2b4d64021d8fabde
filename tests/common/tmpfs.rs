//! A real small file system for the full-disk tests: a tmpfs of a given size mounted at a
//! temporary directory, unmounted on drop. Needs root (CI runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    pub mnt: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`8m`, `200m`) under `parent`; why not, when it cannot.
    pub fn mount(parent: &Path, size: &str) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (mounting a tmpfs needs it; CI runs as root)".into());
        }
        let mnt = parent.join(format!("small-disk-{size}"));
        std::fs::create_dir_all(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Tmpfs { mnt })
    }

    /// Bytes free on it.
    pub fn free(&self) -> u64 {
        qss_relay::spool::free_bytes(&self.mnt).unwrap()
    }

    /// Fills it with a file of `bytes` (really allocated) named `name`.
    pub fn fill(&self, name: &str, bytes: u64) {
        let f = std::fs::File::create(self.mnt.join(name)).unwrap();
        let chunk = vec![0xa5u8; 1 << 16];
        let mut w = std::io::BufWriter::new(f);
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            std::io::Write::write_all(&mut w, &chunk[..n]).unwrap();
            left -= n as u64;
        }
        std::io::Write::flush(&mut w).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}
