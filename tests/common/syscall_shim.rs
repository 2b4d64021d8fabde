//! Faults at the system-call boundary for the real binary: a small shared library, built
//! with the C compiler and loaded with `LD_PRELOAD`, that makes `fdatasync` and `fsync`
//! fail with EIO while the file `$FAIL_SYNC_TRIGGER` exists (a failing disk), or take
//! 200 ms while `$SLOW_SYNC_TRIGGER` exists (a slow one). Every other call goes to libc.

use std::path::{Path, PathBuf};
use std::process::Command;

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int present(const char *var) {
    const char *path = getenv(var);
    return path && access(path, F_OK) == 0;
}

static int fault(void) {
    if (present("FAIL_SYNC_TRIGGER")) { errno = EIO; return -1; }
    if (present("SLOW_SYNC_TRIGGER")) usleep(200000);
    return 0;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (fault()) return -1;
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (fault()) return -1;
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
"#;

/// Builds the shim into `dir`; why not, when there is no C compiler.
pub fn build_shim(dir: &Path) -> Result<PathBuf, String> {
    let src = dir.join("syncfault.c");
    let lib = dir.join("libsyncfault.so");
    std::fs::write(&src, SHIM).unwrap();
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .map_err(|e| format!("no C compiler (cc): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(lib)
}
