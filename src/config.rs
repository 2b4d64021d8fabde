//! Configuration: one place that turns environment variables into typed settings.
//!
//! The relay is configured the way the old Python script was: environment variables, and
//! an env file in docker's `--env-file` format (`KEY=value` lines, bare values, `#`
//! comments). An `/etc/zoom-qss/env.vars` written for the old script works unchanged.
//!
//! Precedence: a variable set in the process environment wins over the same variable in
//! the env file, as `docker run -e` wins over `--env-file`. That keeps one-off overrides
//! (`RELAY_LOG_FORMAT=json relay run --env-file ...`) working.
//!
//! Loading never stops at the first mistake: [`Config::from_env`] collects one
//! [`Problem`] per bad variable so that an operator can fix them all in one go. Secrets are
//! held in [`Secret`], whose `Debug` and `Display` print `***`.
//!
//! Which settings are *required* depends on the command: `relay run` needs LogScale and at
//! least one source ([`Config::require_for_run`]); `relay spool ...` needs only the spool.

pub use crate::logging::LogFormat;
pub use crate::spool::{FullPolicy, SpoolSettings};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every variable the relay reads, with its default and meaning. The README's
/// configuration table is written from this list, and unknown `RELAY_*` variables are
/// reported against it (typos otherwise fail silently).
pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc::new("LOGSCALE_HOST", "(required)", "LogScale host: `host[:port]` (https implied) or a URL with a scheme (`http://127.0.0.1:8080` for local tests and proxies)."),
    SettingDoc::new("LOGSCALE_INGEST_TOKEN", "(required)", "Ingest token of the repository (secret)."),
    SettingDoc::new("LOGSCALE_REPOSITORY", "(none)", "Repository name, sent as the HEC `index`. Omitted when unset."),
    SettingDoc::new("LOGSCALE_COMPRESSION", "gzip", "Request compression: `gzip`, `zstd` (for gateways that accept it) or `none`."),
    SettingDoc::new("LOGSCALE_WEBHOOK_SOURCETYPE", "zoom_webhook", "`sourcetype` (LogScale parser) of webhook events that are not QSS events."),
    SettingDoc::new("ZOOM_ACCOUNT_ID", "(required with ZOOM_WSS_URL)", "Server-to-Server OAuth app: account id."),
    SettingDoc::new("ZOOM_CLIENT_ID", "(required with ZOOM_WSS_URL)", "Server-to-Server OAuth app: client id."),
    SettingDoc::new("ZOOM_CLIENT_SECRET", "(required with ZOOM_WSS_URL)", "Server-to-Server OAuth app: client secret (secret)."),
    SettingDoc::new("ZOOM_WSS_URL", "(none: WebSocket source off)", "QSS WebSocket endpoint of the subscription, with its `?subscriptionId=...`. Setting it turns the WebSocket source on."),
    SettingDoc::new("ZOOM_OAUTH_URL", "https://zoom.us/oauth/token", "Token endpoint."),
    SettingDoc::new("ZOOM_HEARTBEAT_INTERVAL_SECS", "30", "Interval of the `{\"module\":\"heartbeat\"}` frames; a connection silent for two intervals is reconnected."),
    SettingDoc::new("ZOOM_WEBHOOK_SECRET_TOKEN", "(none: webhook source off)", "Secret token of the webhook event subscription (secret). Setting it turns the webhook source on."),
    SettingDoc::new("RELAY_WEBHOOK_ADDR", "127.0.0.1:8080, or 0.0.0.0:8443 with TLS", "Listen address of the webhook endpoint `POST /zoom/webhook`."),
    SettingDoc::new("RELAY_WEBHOOK_TLS_CERT", "(none)", "PEM certificate chain: serve the webhook endpoint over TLS (reloaded on SIGHUP)."),
    SettingDoc::new("RELAY_WEBHOOK_TLS_KEY", "(none)", "PEM private key for RELAY_WEBHOOK_TLS_CERT."),
    SettingDoc::new("RELAY_WEBHOOK_MAX_BODY_BYTES", "1MiB", "Larger webhook bodies are answered 413."),
    SettingDoc::new("RELAY_WEBHOOK_MAX_CONNECTIONS", "4096", "Open connections to the webhook endpoint at most (at most half the process's file descriptor limit); over it new connections are closed at once."),
    SettingDoc::new("RELAY_WEBHOOK_MAX_BODIES", "64", "Request bodies read at once at most; over it a request is answered 503 (Zoom retries) before its body is read."),
    SettingDoc::new("RELAY_WEBHOOK_HEADER_TIMEOUT_SECS", "10", "A client must send its whole request head (and finish a TLS handshake) within this; otherwise the connection is closed."),
    SettingDoc::new("RELAY_WEBHOOK_BODY_TIMEOUT_SECS", "15", "A request body must arrive within this; otherwise 408 and the connection is closed."),
    SettingDoc::new("RELAY_WEBHOOK_IDLE_TIMEOUT_SECS", "60", "A connection with no byte moving for this long (idle keep-alive) is closed."),
    SettingDoc::new("RELAY_WEBHOOK_MAX_SKEW_SECS", "300", "Webhooks whose `x-zm-request-timestamp` is further than this from now are refused."),
    SettingDoc::new("RELAY_SPOOL_DIR", "$STATE_DIRECTORY/spool, else /var/lib/qss-relay/spool", "Directory of the on-disk spool. One process owns it."),
    SettingDoc::new("RELAY_SPOOL_MAX_BYTES", "10GiB", "Cap on the spool's stored (compressed) blocks. sled needs more disk than that while a backlog is held (up to about 3x for large backlogs); it gives the space back once drained."),
    SettingDoc::new("RELAY_SPOOL_FULL_POLICY", "drop-oldest", "At the cap: `drop-oldest` (drop the oldest pending events) or `reject-new` (refuse new events; webhooks get 503). Every drop is counted and logged."),
    SettingDoc::new("RELAY_SPOOL_MIN_FREE_BYTES", "128MiB", "Free space the spool leaves on its file system. Below it the spool behaves as at its size cap (RELAY_SPOOL_FULL_POLICY), so a full disk never stops the relay from recording deliveries; it resumes by itself once space is back."),
    SettingDoc::new("RELAY_SPOOL_COMMIT_MS", "10", "Group commit window: how long the spool writer gathers records before one compressed, flushed block."),
    SettingDoc::new("RELAY_SPOOL_CACHE_BYTES", "64MiB", "sled page cache bound (sled's own default is 1 GiB)."),
    SettingDoc::new("RELAY_BATCH_MAX_EVENTS", "5000", "Events per ingest request at most."),
    SettingDoc::new("RELAY_BATCH_MAX_BYTES", "5MB", "Uncompressed bytes per ingest request at most."),
    SettingDoc::new("RELAY_BATCH_TIMEOUT_MS", "500", "Linger: a batch that is not full is sent this long after its first event."),
    SettingDoc::new("RELAY_SHIP_CONCURRENCY", "4", "Ingest requests in flight."),
    SettingDoc::new("RELAY_SHIP_TIMEOUT_SECS", "30", "Timeout of one ingest request; a timeout is retried."),
    SettingDoc::new("RELAY_CA_FILE", "(none)", "Extra PEM CA certificates trusted for LogScale and Zoom (added to the system and webpki roots; verification is never turned off)."),
    SettingDoc::new("HTTPS_PROXY", "(none)", "Proxy for https and wss destinations (Zoom, LogScale): `http://[user:password@]host:port`. The relay opens a CONNECT tunnel and verifies the destination's certificate inside it. Lower case `https_proxy` works too."),
    SettingDoc::new("HTTP_PROXY", "(none)", "Proxy for http and ws destinations (`http_proxy` too)."),
    SettingDoc::new("ALL_PROXY", "(none)", "Proxy for every destination that HTTPS_PROXY/HTTP_PROXY do not name (`all_proxy` too)."),
    SettingDoc::new("NO_PROXY", "(none)", "Destinations reached directly: comma-separated host names (a name covers its subdomains), IP addresses or networks (`10.0.0.0/8`), or `*` (`no_proxy` too)."),
    SettingDoc::new("RELAY_HOSTNAME", "(the machine's host name)", "The HEC `host` field."),
    SettingDoc::new("RELAY_ADMIN_ADDR", "127.0.0.1:9464", "Admin endpoint: `/metrics`, `/healthz`, `/readyz` only (the spool's state and operations are on the operator socket `relay.sock` in the spool directory, mode 0600). `off` disables it."),
    SettingDoc::new("RELAY_ADMIN_ALLOWED_HOSTS", "(none)", "Comma-separated host names accepted in the admin endpoint's `Host` header besides IP addresses and `localhost` (e.g. the name Prometheus scrapes it by). Other names are refused (DNS rebinding)."),
    SettingDoc::new("RELAY_LOG_FORMAT", "text", "`text` or `json` (one object per line). `RUST_LOG` sets the level (default `info`)."),
    SettingDoc::new("RELAY_SHUTDOWN_TIMEOUT_SECS", "10", "On SIGTERM/SIGINT, how long in-flight ingest requests may take to finish."),
];

/// One documented setting.
#[derive(Debug, Clone, Copy)]
pub struct SettingDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub description: &'static str,
}

impl SettingDoc {
    const fn new(name: &'static str, default: &'static str, description: &'static str) -> Self {
        SettingDoc {
            name,
            default,
            description,
        }
    }
}

/// A secret value (token, client secret). Printing it shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One thing wrong with the configuration: which variable, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub var: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.message)
    }
}

/// All the problems found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// An error in an env file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

/// Parses an env file in docker's `--env-file` format.
///
/// `KEY=value` per line; the value is everything after the first `=`, verbatim (quotes are
/// kept, as docker keeps them). Blank lines and lines starting with `#` are skipped. A line
/// with a name and no `=` takes the value from `lookup` (docker takes it from the calling
/// environment) and is skipped when that has none. A trailing `\r` (a file saved on
/// Windows) is removed.
pub fn parse_env_file(
    bytes: &[u8],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    for (idx, raw_line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = idx + 1;
        let line = std::str::from_utf8(raw_line).map_err(|_| EnvFileError {
            line: line_no,
            message: "not valid UTF-8".into(),
        })?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() {
            return Err(EnvFileError {
                line: line_no,
                message: "no variable name before `=`".into(),
            });
        }
        if key.chars().any(char::is_whitespace) {
            return Err(EnvFileError {
                line: line_no,
                message: format!("variable name {key:?} contains whitespace"),
            });
        }
        match value {
            Some(v) => out.push((key.to_string(), v.to_string())),
            None => {
                if let Some(v) = lookup(key) {
                    out.push((key.to_string(), v));
                }
            }
        }
    }
    Ok(out)
}

/// The merged variables: the env file first, the process environment on top.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Reads the env file (if any) and the process environment.
    pub fn load(env_file: Option<&Path>) -> Result<Env, Problems> {
        let process: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let mut env = Env::default();
        if let Some(path) = env_file {
            let bytes = std::fs::read(path).map_err(|e| {
                Problems(vec![Problem {
                    var: "--env-file".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                }])
            })?;
            let pairs = parse_env_file(&bytes, |k| std::env::var(k).ok()).map_err(|e| {
                Problems(vec![Problem {
                    var: "--env-file".into(),
                    message: format!("{}: {e}", path.display()),
                }])
            })?;
            env.vars.extend(pairs);
        }
        env.vars.extend(process);
        Ok(env)
    }

    /// Builds an environment from pairs (tests, the demo).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(key.into(), value.into());
    }

    /// The value of `key`; an empty value counts as unset (as the old script treated it).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Relay variables that no setting knows: most likely typos.
    pub fn unknown_relay_vars(&self) -> Vec<String> {
        self.vars
            .keys()
            .filter(|k| k.starts_with("RELAY_") && !SETTINGS.iter().any(|s| s.name == k.as_str()))
            .cloned()
            .collect()
    }
}

/// Request compression towards LogScale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// The proxy variables, as set (validated: `http://` proxy URLs only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    pub http: Option<String>,
    pub https: Option<String>,
    pub all: Option<String>,
    pub no: Option<String>,
}

/// Where and how the shipper delivers.
#[derive(Debug, Clone)]
pub struct LogscaleConfig {
    /// Base URL without a trailing slash, e.g. `https://cloud.example.com`.
    pub base_url: String,
    pub token: Secret,
    pub repository: Option<String>,
    pub compression: Compression,
    pub webhook_sourcetype: String,
}

/// The Zoom QSS WebSocket source.
#[derive(Debug, Clone)]
pub struct ZoomWsConfig {
    pub account_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// As configured, with `?subscriptionId=...`; the token is appended per connection.
    pub wss_url: String,
    pub oauth_url: String,
    pub heartbeat_interval: Duration,
}

/// The Zoom webhook source.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub secret_token: Secret,
    pub addr: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_body_bytes: usize,
    pub max_skew: Duration,
    pub max_connections: usize,
    pub max_bodies: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Batching and delivery.
#[derive(Debug, Clone)]
pub struct ShipSettings {
    pub batch_max_events: usize,
    pub batch_max_bytes: usize,
    pub batch_timeout: Duration,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// The whole configuration. Sections that are not configured at all are `None`.
#[derive(Debug, Clone)]
pub struct Config {
    pub logscale: Option<LogscaleConfig>,
    pub zoom_ws: Option<ZoomWsConfig>,
    pub webhook: Option<WebhookConfig>,
    pub spool: SpoolSettings,
    pub ship: ShipSettings,
    pub admin_addr: Option<SocketAddr>,
    /// Host names the admin endpoint accepts besides addresses and `localhost`.
    pub admin_allowed_hosts: Vec<String>,
    pub log_format: LogFormat,
    pub ca_file: Option<PathBuf>,
    pub proxy: ProxyConfig,
    pub hostname: String,
    pub shutdown_timeout: Duration,
}

/// Collects problems while reading variables.
struct Reader<'a> {
    env: &'a Env,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn problem(&mut self, var: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            var: var.to_string(),
            message: message.into(),
        });
    }

    fn string(&self, var: &str) -> Option<String> {
        self.env.get(var).map(str::to_string)
    }

    fn parsed<T>(
        &mut self,
        var: &str,
        default: T,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> T {
        match self.env.get(var) {
            None => default,
            Some(raw) => match parse(raw.trim()) {
                Some(v) => v,
                None => {
                    self.problem(var, format!("expected {expected}, got {raw:?}"));
                    default
                }
            },
        }
    }

    fn int(&mut self, var: &str, default: u64, min: u64, max: u64) -> u64 {
        let expected = format!("an integer from {min} to {max}");
        self.parsed(var, default, &expected, |s| {
            s.parse::<u64>().ok().filter(|v| (min..=max).contains(v))
        })
    }

    fn size(&mut self, var: &str, default: u64, min: u64) -> u64 {
        let expected = format!("a size of at least {min} bytes, like 5000000, 512MiB or 10GiB");
        self.parsed(var, default, &expected, |s| {
            parse_size::parse_size(s).ok().filter(|v| *v >= min)
        })
    }

    fn addr(&mut self, var: &str, default: SocketAddr) -> SocketAddr {
        self.parsed(
            var,
            default,
            "an address like 127.0.0.1:9464 or [::]:9464",
            |s| s.parse().ok(),
        )
    }
}

impl Config {
    /// Reads every setting, collecting all problems.
    pub fn from_env(env: &Env) -> Result<Config, Problems> {
        let mut r = Reader {
            env,
            problems: Vec::new(),
        };

        let logscale = read_logscale(&mut r);
        let zoom_ws = read_zoom_ws(&mut r);
        let webhook = read_webhook(&mut r);

        let default_dir = match env.get("STATE_DIRECTORY") {
            // systemd may pass several directories separated by ':'; the first is ours.
            Some(state) => PathBuf::from(state.split(':').next().unwrap_or(state)).join("spool"),
            None => PathBuf::from("/var/lib/qss-relay/spool"),
        };
        let spool = SpoolSettings {
            dir: r
                .string("RELAY_SPOOL_DIR")
                .map(PathBuf::from)
                .unwrap_or(default_dir),
            max_bytes: r.size("RELAY_SPOOL_MAX_BYTES", 10 << 30, 1 << 20),
            min_free_bytes: r.size("RELAY_SPOOL_MIN_FREE_BYTES", 128 << 20, 0),
            full_policy: r.parsed(
                "RELAY_SPOOL_FULL_POLICY",
                FullPolicy::DropOldest,
                "`drop-oldest` or `reject-new`",
                FullPolicy::parse,
            ),
            commit_interval: Duration::from_millis(r.int("RELAY_SPOOL_COMMIT_MS", 10, 0, 10_000)),
            cache_bytes: r.size("RELAY_SPOOL_CACHE_BYTES", 64 << 20, 1 << 20),
            rotate_bytes: crate::spool::ROTATE_BYTES,
        };

        let ship = ShipSettings {
            batch_max_events: r.int("RELAY_BATCH_MAX_EVENTS", 5000, 1, 1_000_000) as usize,
            batch_max_bytes: r.size("RELAY_BATCH_MAX_BYTES", 5_000_000, 1024) as usize,
            batch_timeout: Duration::from_millis(r.int("RELAY_BATCH_TIMEOUT_MS", 500, 0, 600_000)),
            concurrency: r.int("RELAY_SHIP_CONCURRENCY", 4, 1, 64) as usize,
            timeout: Duration::from_secs(r.int("RELAY_SHIP_TIMEOUT_SECS", 30, 1, 3600)),
        };
        if ship.batch_max_bytes > 32_000_000 {
            r.problem(
                "RELAY_BATCH_MAX_BYTES",
                "LogScale refuses requests over 32 MB after decompression; use 5MB (the default) or less than 32MB",
            );
        }

        let admin_addr = match env.get("RELAY_ADMIN_ADDR") {
            Some("off") => None,
            _ => Some(r.addr(
                "RELAY_ADMIN_ADDR",
                "127.0.0.1:9464".parse().expect("valid default"),
            )),
        };
        let admin_allowed_hosts = r
            .string("RELAY_ADMIN_ALLOWED_HOSTS")
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let log_format = r.parsed(
            "RELAY_LOG_FORMAT",
            LogFormat::Text,
            "`text` or `json`",
            |s| match s {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                _ => None,
            },
        );
        let ca_file = r.string("RELAY_CA_FILE").map(PathBuf::from);
        if let Some(path) = &ca_file {
            if !path.is_file() {
                r.problem(
                    "RELAY_CA_FILE",
                    format!("{} is not a readable file", path.display()),
                );
            }
        }
        let proxy = read_proxy(&mut r);
        let hostname = r
            .string("RELAY_HOSTNAME")
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
        let shutdown_timeout =
            Duration::from_secs(r.int("RELAY_SHUTDOWN_TIMEOUT_SECS", 10, 0, 3600));

        if r.problems.is_empty() {
            Ok(Config {
                logscale,
                zoom_ws,
                webhook,
                spool,
                ship,
                admin_addr,
                admin_allowed_hosts,
                log_format,
                ca_file,
                proxy,
                hostname,
                shutdown_timeout,
            })
        } else {
            Err(Problems(r.problems))
        }
    }

    /// What `relay run` needs on top of well-formed values: a destination and a source.
    pub fn require_for_run(&self) -> Result<(), Problems> {
        let mut problems = Vec::new();
        if self.logscale.is_none() {
            problems.push(Problem {
                var: "LOGSCALE_HOST".into(),
                message: "required: where to ship events (with LOGSCALE_INGEST_TOKEN)".into(),
            });
        }
        if self.zoom_ws.is_none() && self.webhook.is_none() {
            problems.push(Problem {
                var: "ZOOM_WSS_URL".into(),
                message: "no source configured: set ZOOM_WSS_URL (with ZOOM_ACCOUNT_ID, ZOOM_CLIENT_ID, ZOOM_CLIENT_SECRET) for the QSS WebSocket, or ZOOM_WEBHOOK_SECRET_TOKEN for webhooks".into(),
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(problems))
        }
    }
}

fn read_logscale(r: &mut Reader<'_>) -> Option<LogscaleConfig> {
    let host = r.string("LOGSCALE_HOST");
    let token = r.string("LOGSCALE_INGEST_TOKEN");
    let compression = r.parsed(
        "LOGSCALE_COMPRESSION",
        Compression::Gzip,
        "`gzip`, `zstd` or `none`",
        |s| match s {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "none" => Some(Compression::None),
            _ => None,
        },
    );
    let webhook_sourcetype = r
        .string("LOGSCALE_WEBHOOK_SOURCETYPE")
        .unwrap_or_else(|| "zoom_webhook".to_string());
    let repository = r.string("LOGSCALE_REPOSITORY");
    match (host, token) {
        (None, None) => None,
        (Some(_), None) => {
            r.problem(
                "LOGSCALE_INGEST_TOKEN",
                "required with LOGSCALE_HOST: the repository's ingest token",
            );
            None
        }
        (None, Some(_)) => {
            r.problem(
                "LOGSCALE_HOST",
                "required with LOGSCALE_INGEST_TOKEN: `host[:port]` or `https://host`",
            );
            None
        }
        (Some(host), Some(token)) => match normalize_logscale_host(&host) {
            Ok(base_url) => Some(LogscaleConfig {
                base_url,
                token: Secret::new(token),
                repository,
                compression,
                webhook_sourcetype,
            }),
            Err(message) => {
                r.problem("LOGSCALE_HOST", message);
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

fn read_zoom_ws(r: &mut Reader<'_>) -> Option<ZoomWsConfig> {
    let heartbeat_interval = Duration::from_secs(r.int("ZOOM_HEARTBEAT_INTERVAL_SECS", 30, 1, 600));
    let oauth_url = r
        .string("ZOOM_OAUTH_URL")
        .unwrap_or_else(|| "https://zoom.us/oauth/token".to_string());
    if let Err(e) = check_url(&oauth_url, &["https", "http"]) {
        r.problem("ZOOM_OAUTH_URL", e);
    }
    let wss_url = r.string("ZOOM_WSS_URL")?;
    if let Err(e) = check_url(&wss_url, &["wss", "ws"]) {
        r.problem("ZOOM_WSS_URL", e);
    }
    let mut required = |var: &str| {
        let v = r.string(var);
        if v.is_none() {
            r.problem(
                var,
                "required with ZOOM_WSS_URL (from the Server-to-Server OAuth app)",
            );
        }
        v
    };
    let account_id = required("ZOOM_ACCOUNT_ID");
    let client_id = required("ZOOM_CLIENT_ID");
    let client_secret = required("ZOOM_CLIENT_SECRET");
    Some(ZoomWsConfig {
        account_id: account_id?,
        client_id: client_id?,
        client_secret: Secret::new(client_secret?),
        wss_url,
        oauth_url,
        heartbeat_interval,
    })
}

/// The proxy variables: upper case wins over lower case, as in curl. A proxy URL must be
/// `http://` (or a bare `host:port`); credentials in it are never printed.
fn read_proxy(r: &mut Reader<'_>) -> ProxyConfig {
    let mut get = |upper: &str, lower: &str, is_proxy: bool| {
        let (var, value) = match r.string(upper) {
            Some(v) => (upper, v),
            None => (lower, r.string(lower)?),
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
                    r.problem(var, "an https:// proxy is not supported: use the proxy's http:// address (the tunnel to the destination is still TLS)");
                    return None;
                }
                _ => {
                    r.problem(var, "expected http://[user:password@]host:port");
                    return None;
                }
            }
        }
        Some(value)
    };
    ProxyConfig {
        https: get("HTTPS_PROXY", "https_proxy", true),
        http: get("HTTP_PROXY", "http_proxy", true),
        all: get("ALL_PROXY", "all_proxy", true),
        no: get("NO_PROXY", "no_proxy", false),
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

fn read_webhook(r: &mut Reader<'_>) -> Option<WebhookConfig> {
    let cert = r.string("RELAY_WEBHOOK_TLS_CERT").map(PathBuf::from);
    let key = r.string("RELAY_WEBHOOK_TLS_KEY").map(PathBuf::from);
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            r.problem(
                "RELAY_WEBHOOK_TLS_KEY",
                "required with RELAY_WEBHOOK_TLS_CERT (PEM private key)",
            );
            None
        }
        (None, Some(_)) => {
            r.problem(
                "RELAY_WEBHOOK_TLS_CERT",
                "required with RELAY_WEBHOOK_TLS_KEY (PEM certificate chain)",
            );
            None
        }
    };
    let default_addr = if tls.is_some() {
        "0.0.0.0:8443"
    } else {
        "127.0.0.1:8080"
    };
    let addr = r.addr(
        "RELAY_WEBHOOK_ADDR",
        default_addr.parse().expect("valid default"),
    );
    let max_body_bytes = r.size("RELAY_WEBHOOK_MAX_BODY_BYTES", 1 << 20, 1024) as usize;
    let max_skew = Duration::from_secs(r.int("RELAY_WEBHOOK_MAX_SKEW_SECS", 300, 1, 86_400));
    let max_connections = r.int("RELAY_WEBHOOK_MAX_CONNECTIONS", 4096, 1, 1_000_000) as usize;
    let max_bodies = r.int("RELAY_WEBHOOK_MAX_BODIES", 64, 1, 100_000) as usize;
    let header_timeout =
        Duration::from_secs(r.int("RELAY_WEBHOOK_HEADER_TIMEOUT_SECS", 10, 1, 3600));
    let body_timeout = Duration::from_secs(r.int("RELAY_WEBHOOK_BODY_TIMEOUT_SECS", 15, 1, 3600));
    let idle_timeout = Duration::from_secs(r.int("RELAY_WEBHOOK_IDLE_TIMEOUT_SECS", 60, 1, 86_400));
    let secret = r.string("ZOOM_WEBHOOK_SECRET_TOKEN")?;
    Some(WebhookConfig {
        secret_token: Secret::new(secret),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn env_file_follows_docker_rules() {
        let text = b"# comment\n\nLOGSCALE_HOST=cloud.example.com\r\n  ZOOM_CLIENT_SECRET=a=b#c \nQUOTED=\"x\"\nFROM_ENV\n";
        let pairs = parse_env_file(text, |k| (k == "FROM_ENV").then(|| "v".to_string())).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("LOGSCALE_HOST".into(), "cloud.example.com".into()),
                ("ZOOM_CLIENT_SECRET".into(), "a=b#c ".into()),
                ("QUOTED".into(), "\"x\"".into()),
                ("FROM_ENV".into(), "v".into()),
            ]
        );
    }

    #[test]
    fn env_file_errors_name_the_line() {
        let err = parse_env_file(b"A=1\nBAD KEY=2\n", no_env).unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse_env_file(b"=x\n", no_env).unwrap_err();
        assert_eq!(err.line, 1);
        let err = parse_env_file(b"A=\xff\n", no_env).unwrap_err();
        assert!(err.message.contains("UTF-8"));
    }

    fn old_script_env() -> Env {
        Env::from_pairs([
            ("LOGSCALE_HOST", "cloud.community.humio.com"),
            ("LOGSCALE_INGEST_TOKEN", "tok-123"),
            ("LOGSCALE_REPOSITORY", "zoom"),
            ("ZOOM_ACCOUNT_ID", "acc"),
            ("ZOOM_CLIENT_ID", "cid"),
            ("ZOOM_CLIENT_SECRET", "csecret"),
            ("ZOOM_WSS_URL", "wss://ws.zoom.us/ws?subscriptionId=abc"),
        ])
    }

    #[test]
    fn old_script_variables_are_enough_to_run() {
        let cfg = Config::from_env(&old_script_env()).unwrap();
        cfg.require_for_run().unwrap();
        let ls = cfg.logscale.as_ref().unwrap();
        assert_eq!(ls.base_url, "https://cloud.community.humio.com");
        assert_eq!(ls.compression, Compression::Gzip);
        let z = cfg.zoom_ws.as_ref().unwrap();
        assert_eq!(z.oauth_url, "https://zoom.us/oauth/token");
        assert_eq!(z.heartbeat_interval, Duration::from_secs(30));
        assert!(cfg.webhook.is_none());
        assert_eq!(cfg.spool.max_bytes, 10 << 30);
        assert_eq!(cfg.spool.full_policy, FullPolicy::DropOldest);
        assert_eq!(cfg.spool.commit_interval, Duration::from_millis(10));
        assert_eq!(cfg.admin_addr, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn every_problem_is_reported_once_and_secrets_are_hidden() {
        let mut env = old_script_env();
        env.set("RELAY_SPOOL_MAX_BYTES", "lots");
        env.set("RELAY_SPOOL_FULL_POLICY", "panic");
        env.set("LOGSCALE_COMPRESSION", "brotli");
        env.set("ZOOM_WSS_URL", "https://not-a-websocket");
        let problems = Config::from_env(&env).unwrap_err();
        let vars: Vec<&str> = problems.0.iter().map(|p| p.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "LOGSCALE_COMPRESSION",
                "ZOOM_WSS_URL",
                "RELAY_SPOOL_MAX_BYTES",
                "RELAY_SPOOL_FULL_POLICY"
            ]
        );
        let text = problems.to_string();
        assert!(
            !text.contains("csecret") && !text.contains("tok-123"),
            "{text}"
        );
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
    }

    #[test]
    fn logscale_host_forms() {
        assert_eq!(
            normalize_logscale_host("example.com:8443").unwrap(),
            "https://example.com:8443"
        );
        assert_eq!(
            normalize_logscale_host("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalize_logscale_host("https://gw.example.com/logscale").unwrap(),
            "https://gw.example.com/logscale"
        );
        assert!(normalize_logscale_host("ftp://x").is_err());
        assert!(normalize_logscale_host("").is_err());
    }

    #[test]
    fn missing_source_or_partial_zoom_settings_are_named() {
        let env = Env::from_pairs([("LOGSCALE_HOST", "h"), ("LOGSCALE_INGEST_TOKEN", "t")]);
        let cfg = Config::from_env(&env).unwrap();
        let p = cfg.require_for_run().unwrap_err();
        assert_eq!(p.0[0].var, "ZOOM_WSS_URL");

        let env = Env::from_pairs([("ZOOM_WSS_URL", "wss://ws.zoom.us/ws?subscriptionId=x")]);
        let p = Config::from_env(&env).unwrap_err();
        let vars: Vec<&str> = p.0.iter().map(|p| p.var.as_str()).collect();
        assert_eq!(
            vars,
            ["ZOOM_ACCOUNT_ID", "ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET"]
        );
    }

    #[test]
    fn process_environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.vars");
        std::fs::write(
            &path,
            "QSS_RELAY_TEST_PRECEDENCE=file\nQSS_RELAY_TEST_ONLY_FILE=file\n",
        )
        .unwrap();
        // SAFETY: this test is the only user of these variable names.
        unsafe { std::env::set_var("QSS_RELAY_TEST_PRECEDENCE", "process") };
        let env = Env::load(Some(&path)).unwrap();
        assert_eq!(env.get("QSS_RELAY_TEST_PRECEDENCE"), Some("process"));
        assert_eq!(env.get("QSS_RELAY_TEST_ONLY_FILE"), Some("file"));
    }

    #[test]
    fn the_readme_documents_every_setting_with_its_default() {
        let readme = include_str!("../README.md");
        for s in SETTINGS {
            let row = format!("| `{}` | {} |", s.name, s.default);
            assert!(
                readme.contains(&row),
                "README.md lacks the configuration row for {}: {row}",
                s.name
            );
        }
    }

    #[test]
    fn unknown_relay_variables_are_reported() {
        let env = Env::from_pairs([("RELAY_SPOOL_MAXBYTES", "1"), ("RELAY_SPOOL_DIR", "/x")]);
        assert_eq!(
            env.unknown_relay_vars(),
            vec!["RELAY_SPOOL_MAXBYTES".to_string()]
        );
    }
}
