//! The spool's settings, owned here: `config.rs` reads them from the environment and
//! builds a [`SpoolSettings`]; nothing in the spool reads the configuration itself.

use std::path::PathBuf;
use std::time::Duration;

/// What the spool does when it reaches `RELAY_SPOOL_MAX_BYTES`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FullPolicy {
    #[default]
    DropOldest,
    RejectNew,
}

impl FullPolicy {
    /// The value of `RELAY_SPOOL_FULL_POLICY`, as written in the settings and shown by
    /// `inspect`.
    pub fn name(self) -> &'static str {
        match self {
            FullPolicy::DropOldest => "drop-oldest",
            FullPolicy::RejectNew => "reject-new",
        }
    }

    /// Reads a `RELAY_SPOOL_FULL_POLICY` value.
    pub fn parse(s: &str) -> Option<FullPolicy> {
        [FullPolicy::DropOldest, FullPolicy::RejectNew]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// The on-disk spool.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// Free space to leave on the spool's file system (`RELAY_SPOOL_MIN_FREE_BYTES`).
    pub min_free_bytes: u64,
    pub full_policy: FullPolicy,
    pub commit_interval: Duration,
    pub cache_bytes: u64,
    /// Size at which a block database generation is rotated (not a setting: tests
    /// lower it; see [`ROTATE_BYTES`](super::ROTATE_BYTES)).
    pub rotate_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::FullPolicy;

    #[test]
    fn the_json_word_is_the_setting_word() {
        for p in [FullPolicy::DropOldest, FullPolicy::RejectNew] {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
            assert_eq!(FullPolicy::parse(p.name()), Some(p));
        }
    }
}
