//! The shipper's settings: where LogScale is and how to batch and deliver. The shipper
//! owns these types; [`crate::config`] builds them from the environment.

use super::batch::Limits;
use super::hec::HecSettings;
use crate::redact::Redaction;
use crate::secret::Secret;
use std::time::Duration;

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

/// Batching, concurrency and the request timeout of a shipper.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShipSettings {
    pub limits: Limits,
    /// A batch that is not full is sent this long after its first event.
    pub linger: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Timeout of one request; a timeout is retried.
    pub request_timeout: Duration,
}

/// Which sources a destination takes (`SENTINEL_SOURCES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    pub webhook: bool,
    pub websocket: bool,
}

impl Sources {
    /// Both sources (LogScale takes everything).
    pub const ALL: Sources = Sources {
        webhook: true,
        websocket: true,
    };

    /// Whether a record from `kind` goes to the destination.
    pub fn takes(self, kind: crate::spool::SourceKind) -> bool {
        match kind {
            crate::spool::SourceKind::Webhook => self.webhook,
            crate::spool::SourceKind::WebSocket => self.websocket,
        }
    }

    /// `webhook`, `websocket`, or both separated by a comma.
    pub fn parse(s: &str) -> Option<Sources> {
        let mut out = Sources {
            webhook: false,
            websocket: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "webhook" => out.webhook = true,
                "websocket" => out.websocket = true,
                _ => return None,
            }
        }
        (out.webhook || out.websocket).then_some(out)
    }
}

/// Microsoft Sentinel through the Logs Ingestion API: where, with which app credentials,
/// and what goes there.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelSettings {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Without a trailing slash, e.g. `https://login.microsoftonline.com`.
    pub authority_host: String,
    /// The DCE or DCR ingestion endpoint, without a trailing slash.
    pub endpoint: String,
    /// `dcr-` and 32 hex digits.
    pub dcr_id: String,
    /// `Custom-ZoomLogs_CL` by default.
    pub stream: String,
    pub sources: Sources,
    /// Uncompressed bytes per request at most (the API takes 1 MB).
    pub max_body_bytes: usize,
}
