//! Build script: the commit the binary is built from, for `relay --version`
//! (`QSS_RELAY_COMMIT` if set, as a package build from a tarball sets it; else
//! `git rev-parse`; else `unknown`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=QSS_RELAY_COMMIT");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("QSS_RELAY_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RELAY_COMMIT={commit}");
}
