//! The sources' settings: what [`crate::config`] builds from the environment and hands to
//! [`super::zoom_ws`], [`super::zoom_token`] and [`super::webhook`]. The sources own these
//! types; nothing here reads a variable.

use crate::secret::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The Zoom QSS WebSocket source.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoomWsSettings {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// One URL per subscription (same account and app), each with its
    /// `?subscriptionId=...`; the token is appended per connection.
    pub wss_urls: Vec<String>,
    pub oauth_url: String,
    pub heartbeat_interval: Duration,
}

impl ZoomWsSettings {
    /// The name of the subscription a URL connects to, for metrics and logs: its
    /// `subscriptionId`, else the URL's path.
    pub fn subscription_of(url: &str) -> String {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "subscriptionId")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| url.split('?').next().unwrap_or(url).to_string())
    }
}

/// The Zoom webhook source.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub secret_token: Secret,
    pub addr: SocketAddr,
    /// PEM certificate chain and private key, when the endpoint serves TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_body_bytes: usize,
    pub max_skew: Duration,
    pub max_connections: usize,
    pub max_bodies: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}
