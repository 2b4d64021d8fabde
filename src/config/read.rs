//! [`Reader`]: reads declared [`Setting`]s from an [`Env`], collecting one [`Problem`] per
//! bad variable, and the readers of the sections that need more than one variable.

use super::settings::{self as s, Kind, Setting};
use super::{Env, Problem};
use crate::net::proxy::ProxySettings;
use crate::secret::Secret;
use crate::ship::{Compression, LogscaleSettings, SentinelSettings, Sources};
use crate::source::settings::{WebhookSettings, ZoomWsSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Collects problems while reading variables. Every default comes from the declaration,
/// through the same parser as a value that is set.
pub(super) struct Reader<'a> {
    env: &'a Env,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(env: &'a Env) -> Reader<'a> {
        Reader {
            env,
            problems: Vec::new(),
        }
    }

    pub(super) fn problem(&mut self, var: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            var: var.to_string(),
            message: message.into(),
        });
    }

    /// The raw value, if set (and not empty).
    pub(super) fn raw(&self, setting: &Setting) -> Option<&'a str> {
        self.env.get(setting.name)
    }

    /// The value as text, or the declared default.
    pub(super) fn string(&self, setting: &Setting) -> Option<String> {
        self.raw(setting).or(setting.default).map(str::to_string)
    }

    pub(super) fn secret(&self, setting: &Setting) -> Option<Secret> {
        debug_assert_eq!(setting.kind, Kind::Secret);
        self.raw(setting).map(Secret::new)
    }

    pub(super) fn path(&self, setting: &Setting) -> Option<PathBuf> {
        self.string(setting).map(PathBuf::from)
    }

    /// A comma-separated list, trimmed, empty items dropped.
    pub(super) fn list(&self, setting: &Setting) -> Vec<String> {
        self.string(setting)
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Parses the value (or the default) with `parse`; a bad value is a problem and yields
    /// the default.
    pub(super) fn parsed<T>(&mut self, setting: &Setting, parse: impl Fn(&str) -> Option<T>) -> T {
        let default = || {
            let d = setting
                .default
                .expect("a parsed setting declares a default");
            parse(d).unwrap_or_else(|| panic!("{}: invalid declared default", setting.name))
        };
        match self.raw(setting) {
            None => default(),
            Some(raw) => match parse(raw.trim()) {
                Some(v) => v,
                None => {
                    self.problem(
                        setting.name,
                        format!("expected {}, got {raw:?}", setting.expected()),
                    );
                    default()
                }
            },
        }
    }

    pub(super) fn int(&mut self, setting: &Setting) -> u64 {
        self.parsed(setting, |v| s::parse_int(setting, v))
    }

    pub(super) fn secs(&mut self, setting: &Setting) -> Duration {
        Duration::from_secs(self.int(setting))
    }

    pub(super) fn millis(&mut self, setting: &Setting) -> Duration {
        Duration::from_millis(self.int(setting))
    }

    pub(super) fn size(&mut self, setting: &Setting) -> u64 {
        self.parsed(setting, |v| s::parse_size(setting, v))
    }

    pub(super) fn addr(&mut self, setting: &Setting) -> SocketAddr {
        self.parsed(setting, s::parse_addr)
    }

    /// One of the words of a [`Kind::Choice`], mapped by `map`.
    pub(super) fn choice<T>(&mut self, setting: &Setting, map: impl Fn(&str) -> Option<T>) -> T {
        let Kind::Choice(words) = setting.kind else {
            unreachable!("{} is not a choice", setting.name)
        };
        self.parsed(setting, |v| if words.contains(&v) { map(v) } else { None })
    }

    /// Two variables that only work together: both values, or `None` when neither is set;
    /// one without the other is a problem that names the missing one and what it holds.
    pub(super) fn together<A, B>(
        &mut self,
        (a, a_value, a_what): (&Setting, Option<A>, &str),
        (b, b_value, b_what): (&Setting, Option<B>, &str),
    ) -> Option<(A, B)> {
        match (a_value, b_value) {
            (Some(x), Some(y)) => Some((x, y)),
            (None, None) => None,
            (Some(_), None) => {
                self.problem(b.name, format!("required with {}: {b_what}", a.name));
                None
            }
            (None, Some(_)) => {
                self.problem(a.name, format!("required with {}: {a_what}", b.name));
                None
            }
        }
    }

    /// A URL of one of the kind's schemes; a bad one is a problem and yields `None`.
    pub(super) fn url(&mut self, setting: &Setting) -> Option<String> {
        let Kind::Url(schemes) = setting.kind else {
            unreachable!("{} is not a URL", setting.name)
        };
        let value = self.string(setting)?;
        if let Err(e) = check_url(&value, schemes) {
            self.problem(setting.name, e);
        }
        Some(value)
    }
}

impl Reader<'_> {
    /// A comma-separated list of URLs of the kind's schemes, each checked, none twice; a
    /// bad one is a problem and yields `None`.
    pub(super) fn urls(&mut self, setting: &Setting) -> Option<Vec<String>> {
        let Kind::Url(schemes) = setting.kind else {
            unreachable!("{} is not a URL", setting.name)
        };
        let value = self.string(setting)?;
        let urls: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if urls.is_empty() {
            self.problem(setting.name, "no URL given");
            return None;
        }
        for (i, u) in urls.iter().enumerate() {
            if let Err(e) = check_url(u, schemes) {
                self.problem(setting.name, e);
            } else if urls[..i].contains(u) {
                self.problem(
                    setting.name,
                    format!("{u:?} is given twice: one connection per subscription"),
                );
            }
        }
        Some(urls)
    }
}

pub(super) fn read_logscale(r: &mut Reader<'_>) -> Option<LogscaleSettings> {
    let host = r.string(&s::LOGSCALE_HOST);
    let token = r.secret(&s::LOGSCALE_INGEST_TOKEN);
    let compression = r.choice(&s::LOGSCALE_COMPRESSION, Compression::parse);
    let webhook_sourcetype = r
        .string(&s::LOGSCALE_WEBHOOK_SOURCETYPE)
        .expect("declared default");
    let repository = r.string(&s::LOGSCALE_REPOSITORY);
    let pair = r.together(
        (&s::LOGSCALE_HOST, host, "`host[:port]` or `https://host`"),
        (
            &s::LOGSCALE_INGEST_TOKEN,
            token,
            "the repository's ingest token",
        ),
    );
    match pair {
        None => None,
        Some((host, token)) => match normalize_logscale_host(&host) {
            Ok(base_url) => Some(LogscaleSettings {
                base_url,
                token,
                repository,
                compression,
                webhook_sourcetype,
            }),
            Err(message) => {
                r.problem(s::LOGSCALE_HOST.name, message);
                None
            }
        },
    }
}

/// `host[:port]` becomes `https://host[:port]`; a URL with a scheme is kept. The result
/// has no trailing slash, so `base + "/api/v1/ingest/hec"` is the ingest URL.
pub fn normalize_logscale_host(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let uri: hyper::Uri = with_scheme.parse().map_err(|e| {
        format!("expected `host[:port]` or `https://host[:port]`, got {raw:?} ({e})")
    })?;
    match uri.scheme_str() {
        Some("https") | Some("http") => {}
        _ => return Err(format!("expected an http or https URL, got {raw:?}")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("no host name in {raw:?}"));
    }
    if uri.query().is_some() {
        return Err(format!("a query string is not allowed in {raw:?}"));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

pub(super) fn read_zoom_ws(r: &mut Reader<'_>) -> Option<ZoomWsSettings> {
    let heartbeat_interval = r.secs(&s::ZOOM_HEARTBEAT_INTERVAL_SECS);
    let oauth_url = r.url(&s::ZOOM_OAUTH_URL).expect("declared default");
    let wss_urls = r.urls(&s::ZOOM_WSS_URL)?;
    let mut required = |setting: &Setting| {
        let v = r.string(setting);
        if v.is_none() {
            r.problem(
                setting.name,
                "required with ZOOM_WSS_URL (from the Server-to-Server OAuth app)",
            );
        }
        v
    };
    let account_id = required(&s::ZOOM_ACCOUNT_ID);
    let client_id = required(&s::ZOOM_CLIENT_ID);
    let client_secret = required(&s::ZOOM_CLIENT_SECRET);
    Some(ZoomWsSettings {
        account_id: account_id?,
        client_id: client_id?,
        client_secret: Secret::new(client_secret?),
        wss_urls,
        oauth_url,
        heartbeat_interval,
    })
}

/// The proxy variables: upper case wins over lower case, as in curl. A proxy URL must be
/// `http://` (or a bare `host:port`); credentials in it are never printed.
pub(super) fn read_proxy(r: &mut Reader<'_>) -> ProxySettings {
    let mut get = |setting: &Setting, is_proxy: bool| {
        let lower = setting.name.to_ascii_lowercase();
        let (var, value) = match r.raw(setting) {
            Some(v) => (setting.name.to_string(), v.to_string()),
            None => (lower.clone(), r.env.get(&lower)?.to_string()),
        };
        if is_proxy {
            let with_scheme = if value.contains("://") {
                value.clone()
            } else {
                format!("http://{value}")
            };
            match with_scheme.parse::<hyper::Uri>() {
                Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {}
                Ok(u) if u.scheme_str() == Some("https") => {
                    r.problem(&var, "an https:// proxy is not supported: use the proxy's http:// address (the tunnel to the destination is still TLS)");
                    return None;
                }
                _ => {
                    r.problem(&var, "expected http://[user:password@]host:port");
                    return None;
                }
            }
        }
        Some(value)
    };
    ProxySettings {
        https: get(&s::HTTPS_PROXY, true),
        http: get(&s::HTTP_PROXY, true),
        all: get(&s::ALL_PROXY, true),
        no: get(&s::NO_PROXY, false),
    }
}

fn check_url(raw: &str, schemes: &[&str]) -> Result<(), String> {
    let uri: hyper::Uri = raw
        .parse()
        .map_err(|e| format!("not a URL: {raw:?} ({e})"))?;
    match uri.scheme_str() {
        Some(s) if schemes.contains(&s) => {}
        _ => {
            return Err(format!(
                "expected a {} URL, got {raw:?}",
                schemes.join(" or ")
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("no host name in {raw:?}"));
    }
    Ok(())
}

pub(super) fn read_webhook(r: &mut Reader<'_>) -> Option<WebhookSettings> {
    let cert = r.path(&s::RELAY_WEBHOOK_TLS_CERT);
    let key = r.path(&s::RELAY_WEBHOOK_TLS_KEY);
    let tls = r.together(
        (&s::RELAY_WEBHOOK_TLS_CERT, cert, "PEM certificate chain"),
        (&s::RELAY_WEBHOOK_TLS_KEY, key, "PEM private key"),
    );
    let addr = match (tls.is_some(), r.raw(&s::RELAY_WEBHOOK_ADDR)) {
        (true, None) => s::parse_addr(s::WEBHOOK_TLS_ADDR).expect("valid constant"),
        _ => r.addr(&s::RELAY_WEBHOOK_ADDR),
    };
    let max_body_bytes = r.size(&s::RELAY_WEBHOOK_MAX_BODY_BYTES) as usize;
    let max_skew = r.secs(&s::RELAY_WEBHOOK_MAX_SKEW_SECS);
    let max_connections = r.int(&s::RELAY_WEBHOOK_MAX_CONNECTIONS) as usize;
    let max_bodies = r.int(&s::RELAY_WEBHOOK_MAX_BODIES) as usize;
    let header_timeout = r.secs(&s::RELAY_WEBHOOK_HEADER_TIMEOUT_SECS);
    let body_timeout = r.secs(&s::RELAY_WEBHOOK_BODY_TIMEOUT_SECS);
    let idle_timeout = r.secs(&s::RELAY_WEBHOOK_IDLE_TIMEOUT_SECS);
    let secret_token = r.secret(&s::ZOOM_WEBHOOK_SECRET_TOKEN)?;
    Some(WebhookSettings {
        secret_token,
        addr,
        tls,
        max_body_bytes,
        max_skew,
        max_connections,
        max_bodies,
        header_timeout,
        body_timeout,
        idle_timeout,
    })
}

/// `dcr-` followed by 32 hex digits.
fn is_dcr_id(s: &str) -> bool {
    s.strip_prefix("dcr-")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(super) fn read_sentinel(r: &mut Reader<'_>) -> Option<SentinelSettings> {
    let authority_host = r.url(&s::AZURE_AUTHORITY_HOST).expect("declared default");
    let stream = r.string(&s::SENTINEL_STREAM).expect("declared default");
    if !stream.starts_with("Custom-") && !stream.starts_with("Microsoft-") {
        r.problem(
            s::SENTINEL_STREAM.name,
            format!("expected a stream name declared in the DCR, like Custom-ZoomLogs_CL, got {stream:?}"),
        );
    }
    let sources = r.parsed(&s::SENTINEL_SOURCES, Sources::parse);
    let max_body_bytes = r.size(&s::SENTINEL_MAX_BODY_BYTES) as usize;
    if max_body_bytes > crate::ship::sentinel::MAX_REQUEST_BYTES {
        r.problem(
            s::SENTINEL_MAX_BODY_BYTES.name,
            "the Logs Ingestion API takes 1 MB per request at most: use 1MB (the default) or less",
        );
    }
    let endpoint = r.url(&s::SENTINEL_ENDPOINT)?;
    let mut required = |setting: &Setting| {
        let v = r.string(setting);
        if v.is_none() {
            r.problem(
                setting.name,
                "required with SENTINEL_ENDPOINT (see docs/sentinel.md)",
            );
        }
        v
    };
    let tenant_id = required(&s::AZURE_TENANT_ID);
    let client_id = required(&s::AZURE_CLIENT_ID);
    let client_secret = required(&s::AZURE_CLIENT_SECRET);
    let dcr_id = required(&s::SENTINEL_DCR_ID);
    if let Some(id) = dcr_id.as_deref().filter(|id| !is_dcr_id(id)) {
        r.problem(
            s::SENTINEL_DCR_ID.name,
            format!("expected `dcr-` and 32 hex digits (the DCR's immutableId, not its name), got {id:?}"),
        );
    }
    Some(SentinelSettings {
        tenant_id: tenant_id?,
        client_id: client_id?,
        client_secret: Secret::new(client_secret?),
        authority_host: authority_host.trim_end_matches('/').to_string(),
        endpoint: endpoint.trim_end_matches('/').to_string(),
        dcr_id: dcr_id.filter(|id| is_dcr_id(id))?,
        stream,
        sources,
        max_body_bytes,
    })
}

/// The election (`RELAY_HA_*`): `None` unless etcd endpoints are given. A bare
/// `host:port` means `http://host:port`.
pub(super) fn read_ha(r: &mut Reader<'_>) -> Option<crate::ha::HaSettings> {
    let endpoints = r.list(&s::RELAY_HA_ETCD_ENDPOINTS);
    let name = r.string(&s::RELAY_HA_NAME).expect("declared default");
    let lease_ttl = r.secs(&s::RELAY_HA_LEASE_TTL_SECS);
    let standby = r.choice(&s::RELAY_HA_STANDBY, crate::ha::Standby::parse);
    if endpoints.is_empty() {
        return None;
    }
    let mut urls = Vec::new();
    for e in endpoints {
        let url = if e.contains("://") {
            e
        } else {
            format!("http://{e}")
        };
        match check_url(&url, &["http", "https"]) {
            Ok(()) => urls.push(url.trim_end_matches('/').to_string()),
            Err(m) => r.problem(s::RELAY_HA_ETCD_ENDPOINTS.name, m),
        }
    }
    if name.is_empty() || name.contains('/') {
        r.problem(s::RELAY_HA_NAME.name, "a name without `/`, e.g. qss-relay");
    }
    Some(crate::ha::HaSettings {
        endpoints: urls,
        name,
        lease_ttl,
        standby,
    })
}
