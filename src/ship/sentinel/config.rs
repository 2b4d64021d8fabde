//! Sentinel's own settings: the app registration, the data collection rule and stream, the
//! sources it takes and its request size.

use crate::secret::Secret;
use crate::ship::Sources;

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
