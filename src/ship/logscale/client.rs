//! The LogScale HEC endpoint as the shipper sees it: compress a body, post it, and sort
//! the answer into what to do next.
//!
//! | answer                          | outcome                                      |
//! |---------------------------------|----------------------------------------------|
//! | 2xx                             | accepted: acknowledge                        |
//! | 408, 429, 5xx, transport error, timeout | retry with backoff (`Retry-After` honoured) |
//! | 401, 403                        | token refused: back off, retry, nothing dropped |
//! | 413                             | too large: split the batch                   |
//! | 400, other 4xx                  | refused: bisect down to the refused events   |

use super::config::Compression;
use crate::backoff::parse_retry_after;
use crate::net::http::{Body, HttpClient, HttpError};
use crate::secret::Secret;
use crate::ship::destination::{Attempt, Outcome, EXCERPT_CHARS};
use crate::ship::sink::BuildError;
use bytes::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use std::time::Duration;

/// gzip level: 1 keeps a core free for the rest of the pipeline; QSS JSON still
/// compresses about 8:1.
pub(crate) const GZIP_LEVEL: u32 = 1;
/// zstd level for `LOGSCALE_COMPRESSION=zstd`.
pub(crate) const ZSTD_LEVEL: i32 = 1;
/// What an HTTP status from LogScale means (the table in the module docs), with the
/// line logged when it is not a success.
pub(crate) fn outcome_of(code: u16, retry_after: Option<Duration>) -> (Outcome, String) {
    match code {
        200..=299 => (Outcome::Accepted, String::new()),
        401 | 403 => (
            Outcome::TokenRefused,
            format!("LogScale refused the ingest token (HTTP {code}): check LOGSCALE_INGEST_TOKEN; nothing is dropped, the backlog waits in the spool and drains after a restart with a valid token"),
        ),
        413 => (Outcome::TooLarge, format!("LogScale says the request is too large (HTTP {code}): splitting it")),
        408 | 429 | 500..=599 => (Outcome::Retry { retry_after }, format!("LogScale answered HTTP {code}: retrying")),
        _ => (Outcome::Refused, format!("LogScale refused the request (HTTP {code}): isolating the refused events")),
    }
}

/// A client for one LogScale HEC endpoint.
#[derive(Clone)]
pub struct HecClient {
    http: HttpClient,
    url: Uri,
    health_url: Uri,
    auth: HeaderValue,
    compression: Compression,
    timeout: Duration,
}

impl HecClient {
    /// `base_url` as normalised by the configuration (no trailing slash).
    pub fn new(
        http: HttpClient,
        base_url: &str,
        token: &Secret,
        compression: Compression,
        timeout: Duration,
    ) -> Result<HecClient, BuildError> {
        let url = |path: &str, what| {
            format!("{base_url}{path}")
                .parse::<Uri>()
                .map_err(|source| BuildError::InvalidUrl {
                    var: "LOGSCALE_HOST",
                    what,
                    source,
                })
        };
        let (url, health_url) = (
            url("/api/v1/ingest/hec", "ingest")?,
            url("/api/v1/ingest/hec/health", "health")?,
        );
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                BuildError::InvalidHeader {
                    var: "LOGSCALE_INGEST_TOKEN",
                }
            })?;
        auth.set_sensitive(true);
        Ok(HecClient {
            http,
            url,
            health_url,
            auth,
            compression,
            timeout,
        })
    }

    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// Compresses a body as configured (CPU work: call it off the async threads).
    pub fn compress(&self, raw: &[u8]) -> Bytes {
        match self.compression {
            Compression::None => Bytes::copy_from_slice(raw),
            Compression::Gzip => Bytes::from(crate::ship::gzip::encode(raw, GZIP_LEVEL)),
            Compression::Zstd => Bytes::from(
                zstd::bulk::compress(raw, ZSTD_LEVEL).expect("zstd compression of memory"),
            ),
        }
    }

    /// Posts an already compressed body once.
    pub async fn post(&self, body: Bytes) -> Attempt {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("qss-relay/", env!("CARGO_PKG_VERSION")))
            .body(Body::new(body))
            .expect("valid request");
        req.headers_mut().insert(AUTHORIZATION, self.auth.clone());
        match self.compression {
            Compression::Gzip => {
                req.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Compression::Zstd => {
                req.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("zstd"));
            }
            Compression::None => {}
        }
        match self.http.send(req, self.timeout).await {
            Err(e) => Attempt {
                outcome: Outcome::Retry { retry_after: None },
                status: None,
                message: match e {
                    HttpError::Timeout(d) => format!(
                        "LogScale did not answer within {}s (RELAY_SHIP_TIMEOUT_SECS)",
                        d.as_secs()
                    ),
                    HttpError::Transport(t) => {
                        format!("cannot reach LogScale at {}: {t}", self.url)
                    }
                },
                body_excerpt: None,
            },
            Ok(reply) => {
                let code = reply.status.as_u16();
                let excerpt = reply.excerpt(EXCERPT_CHARS);
                let retry_after = reply
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let (outcome, message) = outcome_of(code, retry_after);
                Attempt {
                    outcome,
                    status: Some(code),
                    message,
                    body_excerpt: (!excerpt.is_empty()).then_some(excerpt),
                }
            }
        }
    }

    /// `GET /api/v1/ingest/hec/health` with the token (for `relay check`).
    pub async fn health(&self) -> Result<(u16, String), String> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(self.health_url.clone())
            .body(Body::new(Bytes::new()))
            .expect("valid request");
        req.headers_mut().insert(AUTHORIZATION, self.auth.clone());
        match self.http.send(req, self.timeout).await {
            Ok(r) => Ok((r.status.as_u16(), r.excerpt(EXCERPT_CHARS))),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_answer_table() {
        let hint = Some(Duration::from_secs(7));
        for code in [200, 201, 204, 299] {
            assert_eq!(outcome_of(code, hint).0, Outcome::Accepted, "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(
                outcome_of(code, hint).0,
                Outcome::Retry { retry_after: hint },
                "{code} is retried with the server's hint"
            );
        }
        assert_eq!(
            outcome_of(503, None).0,
            Outcome::Retry { retry_after: None }
        );
        for code in [401, 403] {
            let (outcome, message) = outcome_of(code, None);
            assert_eq!(outcome, Outcome::TokenRefused, "{code}");
            assert!(message.contains("LOGSCALE_INGEST_TOKEN"), "{message}");
        }
        assert_eq!(outcome_of(413, None).0, Outcome::TooLarge);
        for code in [300, 301, 400, 404, 405, 409, 411, 412, 414, 422, 499, 600] {
            assert_eq!(outcome_of(code, None).0, Outcome::Refused, "{code}");
        }
    }

    #[test]
    fn status_classes_for_the_metric_label() {
        let class = |status| {
            Attempt {
                outcome: Outcome::Accepted,
                status,
                message: String::new(),
                body_excerpt: None,
            }
            .class()
        };
        assert_eq!(class(Some(204)), "2xx");
        assert_eq!(class(Some(404)), "4xx");
        assert_eq!(class(Some(503)), "5xx");
        assert_eq!(class(Some(302)), "other");
        assert_eq!(class(None), "error");
    }
}
