//! Microsoft Sentinel through the Azure Monitor **Logs Ingestion API**: the second
//! destination. Rows ([`record`]) go as a gzip JSON array to
//! `{SENTINEL_ENDPOINT}/dataCollectionRules/{SENTINEL_DCR_ID}/streams/{SENTINEL_STREAM}`,
//! with a bearer token from Microsoft Entra ID ([`token`]).
//!
//! | answer                          | outcome                                                |
//! |---------------------------------|--------------------------------------------------------|
//! | 204 (any 2xx)                   | delivered: acknowledge                                 |
//! | 408, 429, 5xx, transport error, timeout | retry with backoff (`Retry-After` honoured)   |
//! | 401                             | token forgotten, a new one fetched; retried            |
//! | 403, 404; credentials refused   | keep everything, retry slowly; `inspect` says what to fix |
//! | 413                             | too large: split the batch                             |
//! | 400, other 4xx                  | refused: bisect to the refused row, dead-letter it for Sentinel with `x-ms-error-code` |
//!
//! Every request carries an `x-ms-client-request-id`, logged with its errors so that a
//! failure can be found in Azure's logs.

pub mod record;
pub(crate) mod token;

pub(crate) mod config;

pub use config::SentinelSettings;

use super::destination::{Attempt, Destination, Outcome, EXCERPT_CHARS};
use super::sink::{self, BuildError, RunningSink, SinkContext};
use crate::backoff::parse_retry_after;
use crate::net::http::{Body, HttpClient, HttpError};
use crate::redact::Redaction;
use crate::spool::Record;
use bytes::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use record::RowEncoder;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use token::EntraToken;

/// The API version of the Logs Ingestion API the relay speaks.
pub const API_VERSION: &str = "2023-01-01";
/// The API's limit on one request (uncompressed).
pub const MAX_REQUEST_BYTES: usize = 1_000_000;

/// The Sentinel destination.
#[derive(Clone)]
pub(crate) struct Sentinel {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    url: Uri,
    token: EntraToken,
    settings: SentinelSettings,
    spool_id: String,
    redact: Redaction,
    timeout: Duration,
}

/// A GUID-shaped request id (random), for `x-ms-client-request-id`.
fn request_id() -> String {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// What an HTTP status from the Logs Ingestion API means (the table in the module docs),
/// with the line logged when it is not a success. `error_code` is `x-ms-error-code`.
pub(crate) fn outcome_of(
    code: u16,
    retry_after: Option<Duration>,
    error_code: &str,
    settings: &SentinelSettings,
) -> (Outcome, String) {
    let ec = if error_code.is_empty() {
        String::new()
    } else {
        format!(" {error_code}")
    };
    match code {
        200..=299 => (Outcome::Accepted, String::new()),
        401 => (
            Outcome::TokenRefused,
            format!("Sentinel refused the token (HTTP 401{ec}): fetching a new one; if this persists check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET. Nothing is dropped"),
        ),
        403 => (
            Outcome::TokenRefused,
            format!("Sentinel refused the request (HTTP 403{ec}): the app {} lacks the Monitoring Metrics Publisher role on the data collection rule {} (role assignments take up to 30 minutes to apply). Nothing is dropped; the backlog waits in the spool", settings.client_id, settings.dcr_id),
        ),
        404 => (
            Outcome::TokenRefused,
            format!("Sentinel does not know this data collection rule or stream (HTTP 404{ec}): check SENTINEL_ENDPOINT, SENTINEL_DCR_ID ({}) and SENTINEL_STREAM ({}). Nothing is dropped", settings.dcr_id, settings.stream),
        ),
        413 => (Outcome::TooLarge, format!("Sentinel says the request is too large (HTTP 413{ec}): splitting it")),
        408 | 429 | 500..=599 => (Outcome::Retry { retry_after }, format!("Sentinel answered HTTP {code}{ec}: retrying")),
        _ => (Outcome::Refused, format!("Sentinel refused the request (HTTP {code}{ec}): isolating the refused rows")),
    }
}

impl Sentinel {
    pub(crate) fn new(
        http: HttpClient,
        settings: SentinelSettings,
        spool_id: &str,
        redact: Redaction,
        timeout: Duration,
    ) -> Result<Sentinel, BuildError> {
        let url: Uri = format!(
            "{}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
            settings.endpoint, settings.dcr_id, settings.stream
        )
        .parse()
        .map_err(|source| BuildError::InvalidUrl {
            var: "SENTINEL_ENDPOINT",
            what: "ingestion",
            source,
        })?;
        let token = EntraToken::new(http.clone(), &settings, timeout)?;
        Ok(Sentinel {
            inner: Arc::new(Inner {
                http,
                url,
                token,
                settings,
                spool_id: spool_id.to_string(),
                redact,
                timeout,
            }),
        })
    }

    pub(crate) fn url(&self) -> &Uri {
        &self.inner.url
    }

    /// Gets a token once (for `relay check`).
    pub(crate) async fn check_token(&self) -> Result<(), token::TokenFailure> {
        self.inner.token.get().await.map(|_| ())
    }

    async fn post_once(&self, body: Bytes) -> Attempt {
        let i = &self.inner;
        let token = match i.token.get().await {
            Ok(t) => t,
            Err(f) => {
                return Attempt {
                    outcome: if f.refused {
                        Outcome::TokenRefused
                    } else {
                        Outcome::Retry { retry_after: None }
                    },
                    status: f.status,
                    message: f.message,
                    body_excerpt: None,
                }
            }
        };
        let id = request_id();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        auth.set_sensitive(true);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(i.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .header("x-ms-client-request-id", id.as_str())
            .header(USER_AGENT, concat!("qss-relay/", env!("CARGO_PKG_VERSION")))
            .body(Body::new(body))
            .expect("valid request");
        req.headers_mut().insert(AUTHORIZATION, auth);
        match i.http.send(req, i.timeout).await {
            Err(e) => Attempt {
                outcome: Outcome::Retry { retry_after: None },
                status: None,
                message: match e {
                    HttpError::Timeout(d) => format!(
                        "Sentinel did not answer within {}s (RELAY_SHIP_TIMEOUT_SECS; request id {id})",
                        d.as_secs()
                    ),
                    HttpError::Transport(t) => {
                        format!("cannot reach Sentinel at {} (request id {id}): {t}", i.url)
                    }
                },
                body_excerpt: None,
            },
            Ok(reply) => {
                let code = reply.status.as_u16();
                let header = |name: &str| {
                    reply
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let retry_after = parse_retry_after(&header("retry-after"));
                let (outcome, mut message) =
                    outcome_of(code, retry_after, &header("x-ms-error-code"), &i.settings);
                if code == 401 {
                    i.token.reject(&token);
                }
                if !message.is_empty() {
                    message.push_str(&format!(" (request id {id})"));
                }
                let excerpt = reply.excerpt(EXCERPT_CHARS);
                Attempt {
                    outcome,
                    status: Some(code),
                    message,
                    body_excerpt: (!excerpt.is_empty()).then_some(excerpt),
                }
            }
        }
    }
}

impl SentinelSettings {
    /// Builds the Logs Ingestion client and starts Sentinel's shipper, its batches capped
    /// at what one request may carry.
    pub fn start(&self, cx: &SinkContext<'_>) -> Result<RunningSink, BuildError> {
        let dest = Sentinel::new(
            cx.http.clone(),
            self.clone(),
            cx.spool.id(),
            cx.redact.clone(),
            cx.ship.request_timeout,
        )?;
        let mut settings = cx.ship;
        // The API takes 1 MB per request; the array's brackets take two bytes.
        settings.limits.max_bytes = settings.limits.max_bytes.min(self.max_body_bytes - 2);
        Ok(sink::spawn(cx, dest, settings))
    }
}

impl Destination for Sentinel {
    type Encoder = RowEncoder;

    fn name(&self) -> &'static str {
        "sentinel"
    }
    fn title(&self) -> &'static str {
        "Sentinel"
    }
    fn accepts(&self, r: &Record) -> bool {
        self.inner.settings.sources.takes(r.kind)
    }
    fn new_encoder(&self) -> RowEncoder {
        RowEncoder::new(&self.inner.spool_id, self.inner.redact.clone())
    }
    fn encode(encoder: &mut RowEncoder, r: &Record, out: &mut Vec<u8>) {
        encoder.encode(r, out)
    }
    fn compress(&self, run: &[u8]) -> Bytes {
        Bytes::from(frame_and_gzip(run))
    }
    fn post(&self, body: Bytes) -> impl Future<Output = Attempt> + Send {
        let me = self.clone();
        async move { me.post_once(body).await }
    }
}

/// `[` + the rows without their last comma + `]`, gzipped.
pub(crate) fn frame_and_gzip(run: &[u8]) -> Vec<u8> {
    let rows = run.strip_suffix(b",").unwrap_or(run);
    let mut array = Vec::with_capacity(rows.len() + 2);
    array.push(b'[');
    array.extend_from_slice(rows);
    array.push(b']');
    super::gzip::encode(&array, super::logscale::client::GZIP_LEVEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SentinelSettings {
        SentinelSettings {
            tenant_id: "t".into(),
            client_id: "app-1".into(),
            client_secret: crate::secret::Secret::new("s"),
            authority_host: "http://127.0.0.1:1".into(),
            endpoint: "http://127.0.0.1:1".into(),
            dcr_id: "dcr-00000000000000000000000000000000".into(),
            stream: "Custom-ZoomLogs_CL".into(),
            sources: crate::ship::Sources {
                webhook: true,
                websocket: false,
            },
            max_body_bytes: MAX_REQUEST_BYTES,
        }
    }

    #[test]
    fn every_row_of_the_answer_table() {
        let s = settings();
        let hint = Some(Duration::from_secs(7));
        assert_eq!(outcome_of(204, None, "", &s).0, Outcome::Accepted);
        for code in [408, 429, 500, 503] {
            assert_eq!(
                outcome_of(code, hint, "", &s).0,
                Outcome::Retry { retry_after: hint },
                "{code}"
            );
        }
        for code in [401, 403, 404] {
            assert_eq!(
                outcome_of(code, None, "", &s).0,
                Outcome::TokenRefused,
                "{code}"
            );
        }
        let (o, m) = outcome_of(403, None, "InsufficientAccess", &s);
        assert_eq!(o, Outcome::TokenRefused);
        assert!(
            m.contains("Monitoring Metrics Publisher") && m.contains("app-1"),
            "{m}"
        );
        assert_eq!(outcome_of(413, None, "", &s).0, Outcome::TooLarge);
        let (o, m) = outcome_of(400, None, "InvalidContent", &s);
        assert_eq!(o, Outcome::Refused);
        assert!(m.contains("InvalidContent"), "{m}");
    }

    #[test]
    fn a_run_of_rows_is_framed_as_a_json_array() {
        let gz = frame_and_gzip(b"{\"a\":1},{\"a\":2},");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
            .unwrap();
        assert_eq!(text, "[{\"a\":1},{\"a\":2}]");
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
    }
}
