//! Zoom Server-to-Server OAuth: one token held at a time, renewed before it expires and
//! whenever Zoom rejects it, never requested in a tight loop.
//!
//! `POST {ZOOM_OAUTH_URL}?grant_type=account_credentials&account_id=...` with
//! `Authorization: Basic base64(client_id:client_secret)`; the answer carries
//! `access_token` and `expires_in`. A background task renews the token at 90% of its
//! life, so a reconnect always finds a valid one. Failures back off; a 401 means the
//! credentials are wrong, which is logged with the settings to check and retried slowly
//! (the spool keeps shipping meanwhile).

use crate::backoff::Backoff;
use crate::metrics::{label, Metrics};
use crate::net::http::{Body, HttpClient};
use crate::secret::Secret;
use crate::source::settings::ZoomWsSettings;
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, Request};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Never ask for tokens more often than this.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Backoff after a failed token request (network, 5xx).
const ERROR_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(60),
};
/// Backoff after Zoom refused the credentials: they will not fix themselves quickly.
const REFUSED_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(30),
    cap: Duration::from_secs(300),
};

#[derive(Clone)]
struct Token {
    value: Secret,
    issued: Instant,
    expires: Instant,
}

impl Token {
    /// Renewal time: 90% of its life.
    fn renew_at(&self) -> Instant {
        self.issued + (self.expires - self.issued).mul_f64(0.9)
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

/// Why a token request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("Zoom refused the client credentials (HTTP {status}: {body}): check ZOOM_ACCOUNT_ID, ZOOM_CLIENT_ID and ZOOM_CLIENT_SECRET (the app must be a Server-to-Server OAuth app, activated)")]
    Refused { status: u16, body: String },
    #[error("the token request to {url} failed: {message}")]
    Failed { url: String, message: String },
}

/// Holds and renews the token.
pub(crate) struct TokenSource {
    http: HttpClient,
    cfg: ZoomWsSettings,
    metrics: Arc<Metrics>,
    current: Mutex<Option<Token>>,
    /// Serializes requests so that concurrent callers share one.
    fetching: tokio::sync::Mutex<()>,
    last_request: Mutex<Option<Instant>>,
}

impl TokenSource {
    pub(crate) fn new(
        http: HttpClient,
        cfg: ZoomWsSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<TokenSource> {
        Arc::new(TokenSource {
            http,
            cfg,
            metrics,
            current: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            last_request: Mutex::new(None),
        })
    }

    fn valid_current(&self) -> Option<Secret> {
        let cur = self.current.lock().expect("not poisoned");
        cur.as_ref()
            .filter(|t| {
                Instant::now() + Duration::from_secs(5).min((t.expires - t.issued) / 10) < t.expires
            })
            .map(|t| t.value.clone())
    }

    /// A valid token, requesting one if needed. Retries with backoff until it gets one;
    /// `None` only on shutdown.
    pub(crate) async fn get(&self, shutdown: &CancellationToken) -> Option<Secret> {
        let mut attempt = 0u32;
        loop {
            if let Some(t) = self.valid_current() {
                return Some(t);
            }
            let _guard = tokio::select! {
                _ = shutdown.cancelled() => return None,
                g = self.fetching.lock() => g,
            };
            // Someone else may have fetched while we waited.
            if let Some(t) = self.valid_current() {
                return Some(t);
            }
            match self.fetch(shutdown).await {
                Ok(Some(t)) => return Some(t),
                Ok(None) => return None,
                Err(e) => {
                    let delay = match e {
                        TokenError::Refused { .. } => REFUSED_BACKOFF.bound(attempt),
                        TokenError::Failed { .. } => ERROR_BACKOFF.delay(attempt).max(MIN_INTERVAL),
                    };
                    tracing::error!(error = %e, retry_in_secs = delay.as_secs(), "cannot get a Zoom access token");
                    attempt += 1;
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// One token request, no retries (`relay check`).
    pub(crate) async fn fetch_once(&self) -> Result<Secret, TokenError> {
        let never = CancellationToken::new();
        let _guard = self.fetching.lock().await;
        self.fetch(&never).await.map(|t| t.expect("not cancelled"))
    }

    /// Zoom rejected `token`: forget it, so the next [`get`](Self::get) fetches a new one.
    pub(crate) fn reject(&self, token: &Secret) {
        let mut cur = self.current.lock().expect("not poisoned");
        if cur.as_ref().is_some_and(|t| &t.value == token) {
            *cur = None;
        }
    }

    /// Renews the token at 90% of its life, until shutdown.
    pub(crate) async fn refresh_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let renew_at = self
                .current
                .lock()
                .expect("not poisoned")
                .as_ref()
                .map(Token::renew_at);
            let Some(at) = renew_at else {
                // No token yet (or it was rejected): whoever needs one fetches it.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(at.into()) => {}
            }
            let still_due = self
                .current
                .lock()
                .expect("not poisoned")
                .as_ref()
                .is_some_and(|t| t.renew_at() <= Instant::now());
            if !still_due {
                continue;
            }
            let _guard = self.fetching.lock().await;
            match self.fetch(&shutdown).await {
                Ok(_) => tracing::debug!("Zoom access token renewed before expiry"),
                Err(e) => {
                    // Keep the current token until it expires; try again shortly.
                    tracing::warn!(error = %e, "renewing the Zoom access token failed; retrying in 10 s");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                }
            }
        }
    }

    /// One token request (spaced at least [`MIN_INTERVAL`] from the previous one).
    async fn fetch(&self, shutdown: &CancellationToken) -> Result<Option<Secret>, TokenError> {
        let wait = self
            .last_request
            .lock()
            .expect("not poisoned")
            .map(|last| (last + MIN_INTERVAL).saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        if !wait.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        *self.last_request.lock().expect("not poisoned") = Some(Instant::now());
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "account_credentials")
            .append_pair("account_id", &self.cfg.account_id)
            .finish();
        let url = format!("{}?{query}", self.cfg.oauth_url);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.cfg.client_id,
            self.cfg.client_secret.expose()
        ));
        let failed = |message: String| TokenError::Failed {
            url: self.cfg.oauth_url.clone(),
            message,
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::new(Bytes::new()))
            .map_err(|e| failed(e.to_string()))?;
        let mut auth = hyper::header::HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|e| failed(e.to_string()))?;
        auth.set_sensitive(true);
        req.headers_mut().insert("authorization", auth);
        let requested = Instant::now();
        let reply = self.http.send(req, Duration::from_secs(30)).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .token_refreshes
                    .get_or_create(&label("result", "error"))
                    .inc();
                return Err(failed(e.to_string()));
            }
        };
        let status = reply.status.as_u16();
        if status == 401 || status == 400 {
            self.metrics
                .token_refreshes
                .get_or_create(&label("result", "rejected"))
                .inc();
            return Err(TokenError::Refused {
                status,
                body: reply.excerpt(200),
            });
        }
        if !reply.status.is_success() {
            self.metrics
                .token_refreshes
                .get_or_create(&label("result", "error"))
                .inc();
            return Err(failed(format!("HTTP {status}: {}", reply.excerpt(200))));
        }
        let answer: TokenAnswer = serde_json::from_slice(&reply.body).map_err(|e| {
            self.metrics
                .token_refreshes
                .get_or_create(&label("result", "error"))
                .inc();
            failed(format!("the answer has no access_token: {e}"))
        })?;
        self.metrics
            .token_refreshes
            .get_or_create(&label("result", "ok"))
            .inc();
        let life = Duration::from_secs(answer.expires_in.unwrap_or(3600).max(1));
        let token = Token {
            value: Secret::new(answer.access_token),
            issued: requested,
            expires: requested + life,
        };
        tracing::info!(expires_in_secs = life.as_secs(), "got a Zoom access token");
        let value = token.value.clone();
        *self.current.lock().expect("not poisoned") = Some(token);
        Ok(Some(value))
    }
}
