//! LogScale's own settings: where its HEC endpoint is, the token, the repository, the
//! request compression, and what every HEC event carries.

use super::hec::HecSettings;
use crate::redact::Redaction;
use crate::secret::Secret;

/// Request compression towards LogScale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// The configuration's spelling: `gzip`, `zstd`, `none`.
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "none" => Some(Compression::None),
            _ => None,
        }
    }
}

/// Where and how the shipper delivers to LogScale.
#[derive(Debug, Clone, PartialEq)]
pub struct LogscaleSettings {
    /// Base URL without a trailing slash, e.g. `https://cloud.example.com`.
    pub base_url: String,
    pub token: Secret,
    pub repository: Option<String>,
    pub compression: Compression,
    pub webhook_sourcetype: String,
}

impl LogscaleSettings {
    /// What every HEC event from the spool `spool_id`, relayed by `host`, carries.
    pub fn hec(&self, host: &str, spool_id: &str, redact: &Redaction) -> HecSettings {
        HecSettings {
            host: host.to_string(),
            index: self.repository.clone(),
            spool_id: spool_id.to_string(),
            webhook_sourcetype: self.webhook_sourcetype.clone(),
            redact: redact.clone(),
        }
    }
}
