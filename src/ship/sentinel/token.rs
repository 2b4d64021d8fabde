//! The Microsoft Entra ID token of the Logs Ingestion API: OAuth 2.0 client credentials,
//! scope `https://monitor.azure.com//.default`. One token is held and shared by the
//! delivery tasks; it is renewed before it expires (at 80% of its life, and at least
//! five minutes early), and forgotten when the API answers 401 so that the next attempt
//! fetches a new one. The client secret and the tokens travel only as [`Secret`]s.

use super::config::SentinelSettings;
use crate::net::http::{Body, HttpClient, HttpError};
use crate::secret::Secret;
use crate::ship::sink::BuildError;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Uri};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The scope the Logs Ingestion API's tokens are requested for.
pub(crate) const SCOPE: &str = "https://monitor.azure.com//.default";

/// Why no token could be had.
#[derive(Debug, Clone)]
pub(crate) struct TokenFailure {
    /// The token endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The credentials were refused (400/401 with `invalid_client` and the like): the fix
    /// is in the configuration, not in waiting.
    pub refused: bool,
    pub message: String,
}

struct Held {
    token: Secret,
    renew_at: Instant,
}

/// The token source of one Sentinel destination.
pub(crate) struct EntraToken {
    http: HttpClient,
    url: Uri,
    /// The form body (holds the client secret).
    form: Secret,
    timeout: Duration,
    held: Mutex<Option<Held>>,
    fetching: tokio::sync::Mutex<()>,
}

impl EntraToken {
    pub(crate) fn new(
        http: HttpClient,
        s: &SentinelSettings,
        timeout: Duration,
    ) -> Result<EntraToken, BuildError> {
        let tenant: String = form_urlencoded::byte_serialize(s.tenant_id.as_bytes()).collect();
        let url: Uri = format!("{}/{tenant}/oauth2/v2.0/token", s.authority_host)
            .parse()
            .map_err(|source| BuildError::InvalidUrl {
                var: "AZURE_AUTHORITY_HOST and AZURE_TENANT_ID",
                what: "token",
                source,
            })?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &s.client_id)
            .append_pair("client_secret", s.client_secret.expose())
            .append_pair("scope", SCOPE)
            .finish();
        Ok(EntraToken {
            http,
            url,
            form: Secret::new(form),
            timeout,
            held: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> Option<Secret> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref()
            .filter(|h| Instant::now() < h.renew_at)
            .map(|h| h.token.clone())
    }

    /// A valid token: the one held, or a new one.
    pub(crate) async fn get(&self) -> Result<Secret, TokenFailure> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let (token, lifetime) = self.fetch().await?;
        let early = (lifetime / 5)
            .max(Duration::from_secs(300))
            .min(lifetime / 2);
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(Held {
            token: token.clone(),
            renew_at: Instant::now() + lifetime - early,
        });
        tracing::info!(
            expires_in_secs = lifetime.as_secs(),
            "got a Microsoft Entra ID token for the Logs Ingestion API"
        );
        Ok(token)
    }

    /// Forgets `token` (the API refused it): the next [`get`](Self::get) fetches anew.
    pub(crate) fn reject(&self, token: &Secret) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.as_ref().is_some_and(|h| &h.token == token) {
            *held = None;
        }
    }

    async fn fetch(&self) -> Result<(Secret, Duration), TokenFailure> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::new(bytes::Bytes::from(
                self.form.expose().to_string(),
            )))
            .expect("valid request");
        let reply = self
            .http
            .send(req, self.timeout)
            .await
            .map_err(|e| TokenFailure {
                status: None,
                refused: false,
                message: match e {
                    HttpError::Timeout(d) => format!(
                        "the Microsoft Entra ID token endpoint did not answer within {}s",
                        d.as_secs()
                    ),
                    HttpError::Transport(t) => {
                        format!(
                            "cannot reach the Microsoft Entra ID token endpoint {}: {t}",
                            self.url
                        )
                    }
                },
            })?;
        let code = reply.status.as_u16();
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        if !reply.status.is_success() {
            // Only the error code and Azure's description are kept, never the body whole.
            let error = json.get("error").and_then(|v| v.as_str()).unwrap_or("");
            let description = json
                .get("error_description")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("");
            let refused = matches!(code, 400 | 401 | 403);
            return Err(TokenFailure {
                status: Some(code),
                refused,
                message: if refused {
                    format!("Microsoft Entra ID refused the app's credentials (HTTP {code} {error}: {description}): check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (an expired client secret is renewed in the app registration)")
                } else {
                    format!("the Microsoft Entra ID token endpoint answered HTTP {code} {error}: retrying")
                },
            });
        }
        let token = json.get("access_token").and_then(|v| v.as_str());
        let expires = json.get("expires_in").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        match (token, expires) {
            (Some(t), Some(e)) if e > 0 => Ok((Secret::new(t), Duration::from_secs(e))),
            _ => Err(TokenFailure {
                status: Some(code),
                refused: false,
                message: "the Microsoft Entra ID token endpoint answered without access_token and expires_in".into(),
            }),
        }
    }
}
