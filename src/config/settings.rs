//! Every variable the relay reads, declared once: its name, its default, how its value is
//! parsed and checked, whether it is a secret, and its documentation line.
//!
//! Everything else is derived from these declarations: the reader in [`super`] takes each
//! default from here (through the same parser as a value that is set), `relay check` lists
//! the variables that are set (secrets as `***`), unknown `RELAY_*` variables are reported
//! against [`SETTINGS`], and a test holds the configuration table of docs/configuration.md to it. To add a
//! variable: declare it here, list it in [`SETTINGS`], read it in [`super::Config::from_env`]
//! and add its row to docs/configuration.md (the test says what the row must be).

use std::net::SocketAddr;

/// How a variable's value is parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any text.
    Text,
    /// Any text, never printed.
    Secret,
    /// A file system path.
    Path,
    /// An integer in `min..=max`.
    Int { min: u64, max: u64 },
    /// A size with an optional unit (`5MB`, `512MiB`), at least `min` bytes.
    Size { min: u64 },
    /// A socket address (`127.0.0.1:9464`, `[::]:9464`).
    Addr,
    /// One of a fixed list of words.
    Choice(&'static [&'static str]),
    /// A URL with one of these schemes.
    Url(&'static [&'static str]),
    /// A comma-separated list.
    List,
}

/// One variable.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub kind: Kind,
    /// The value used when the variable is unset, written as a user would set it. `None`:
    /// unset means "off" or "required", as [`Setting::shown`] says.
    pub default: Option<&'static str>,
    /// The default column of docs/configuration.md and `relay check`, when it is not just `default`.
    shown: Option<&'static str>,
    pub doc: &'static str,
}

impl Setting {
    const fn new(name: &'static str, kind: Kind, doc: &'static str) -> Setting {
        Setting {
            name,
            kind,
            default: None,
            shown: None,
            doc,
        }
    }
    const fn default(mut self, value: &'static str) -> Setting {
        self.default = Some(value);
        self
    }
    const fn shown(mut self, text: &'static str) -> Setting {
        self.shown = Some(text);
        self
    }

    /// The default as documented: the value, or what unset means.
    pub fn shown_default(&self) -> &'static str {
        match (self.shown, self.default) {
            (Some(text), _) => text,
            (None, Some(value)) => value,
            (None, None) => "(none)",
        }
    }

    pub fn is_secret(&self) -> bool {
        self.kind == Kind::Secret
    }

    /// What a valid value looks like, for error messages.
    pub fn expected(&self) -> String {
        match self.kind {
            Kind::Text | Kind::Secret | Kind::Path | Kind::List => "a value".into(),
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Size { min } => {
                format!("a size of at least {min} bytes, like 5000000, 512MiB or 10GiB")
            }
            Kind::Addr => "an address like 127.0.0.1:9464 or [::]:9464".into(),
            Kind::Choice(words) => words
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(" or "),
            Kind::Url(schemes) => format!("a {} URL", schemes.join(" or ")),
        }
    }
}

/// An integer value of an [`Kind::Int`] setting.
pub fn parse_int(setting: &Setting, raw: &str) -> Option<u64> {
    let Kind::Int { min, max } = setting.kind else {
        return None;
    };
    raw.parse::<u64>().ok().filter(|v| (min..=max).contains(v))
}

/// A byte count of a [`Kind::Size`] setting.
pub fn parse_size(setting: &Setting, raw: &str) -> Option<u64> {
    let Kind::Size { min } = setting.kind else {
        return None;
    };
    parse_size::parse_size(raw).ok().filter(|v| *v >= min)
}

/// An address of a [`Kind::Addr`] setting.
pub fn parse_addr(raw: &str) -> Option<SocketAddr> {
    raw.parse().ok()
}

/// Does `raw` parse under the setting's kind? (URLs and lists are checked by their readers.)
pub fn is_valid(setting: &Setting, raw: &str) -> bool {
    match setting.kind {
        Kind::Text | Kind::Secret | Kind::Path | Kind::List | Kind::Url(_) => true,
        Kind::Int { .. } => parse_int(setting, raw).is_some(),
        Kind::Size { .. } => parse_size(setting, raw).is_some(),
        Kind::Addr => parse_addr(raw).is_some(),
        Kind::Choice(words) => words.contains(&raw),
    }
}

macro_rules! secs {
    ($min:expr, $max:expr) => {
        Kind::Int {
            min: $min,
            max: $max,
        }
    };
}

// LogScale.
pub const LOGSCALE_HOST: Setting = Setting::new("LOGSCALE_HOST", Kind::Text, "LogScale host: `host[:port]` (https implied) or a URL with a scheme (`http://127.0.0.1:8080` for local tests and proxies). Setting it turns the LogScale destination on; at least one destination is required.").shown("(required unless Sentinel is set)");
pub const LOGSCALE_INGEST_TOKEN: Setting = Setting::new(
    "LOGSCALE_INGEST_TOKEN",
    Kind::Secret,
    "Ingest token of the repository (secret).",
)
.shown("(required with LOGSCALE_HOST)");
pub const LOGSCALE_REPOSITORY: Setting = Setting::new(
    "LOGSCALE_REPOSITORY",
    Kind::Text,
    "Repository name, sent as the HEC `index`. Omitted when unset.",
);
pub const LOGSCALE_COMPRESSION: Setting = Setting::new(
    "LOGSCALE_COMPRESSION",
    Kind::Choice(&["gzip", "zstd", "none"]),
    "Request compression: `gzip`, `zstd` (for gateways that accept it) or `none`.",
)
.default("gzip");
pub const LOGSCALE_WEBHOOK_SOURCETYPE: Setting = Setting::new(
    "LOGSCALE_WEBHOOK_SOURCETYPE",
    Kind::Text,
    "`sourcetype` (LogScale parser) of webhook events that are not QSS events.",
)
.default("zoom_webhook");

// Microsoft Sentinel (Logs Ingestion API).
pub const AZURE_TENANT_ID: Setting = Setting::new(
    "AZURE_TENANT_ID",
    Kind::Text,
    "Microsoft Entra ID tenant (directory) id of the app that sends to Sentinel.",
)
.shown("(required with SENTINEL_ENDPOINT)");
pub const AZURE_CLIENT_ID: Setting = Setting::new(
    "AZURE_CLIENT_ID",
    Kind::Text,
    "Application (client) id of that app registration.",
)
.shown("(required with SENTINEL_ENDPOINT)");
pub const AZURE_CLIENT_SECRET: Setting = Setting::new(
    "AZURE_CLIENT_SECRET",
    Kind::Secret,
    "Its client secret (secret).",
)
.shown("(required with SENTINEL_ENDPOINT)");
pub const AZURE_AUTHORITY_HOST: Setting = Setting::new(
    "AZURE_AUTHORITY_HOST",
    Kind::Url(&["https", "http"]),
    "Microsoft Entra ID authority (another host in sovereign clouds; http only for local tests).",
)
.default("https://login.microsoftonline.com");
pub const SENTINEL_ENDPOINT: Setting = Setting::new("SENTINEL_ENDPOINT", Kind::Url(&["https", "http"]), "Logs ingestion endpoint: a data collection endpoint (`https://NAME.REGION-1.ingest.monitor.azure.com`) or the DCR's own. Setting it turns the Sentinel destination on.").shown("(none: Sentinel off)");
pub const SENTINEL_DCR_ID: Setting = Setting::new(
    "SENTINEL_DCR_ID",
    Kind::Text,
    "Immutable id of the data collection rule: `dcr-` and 32 hex digits.",
)
.shown("(required with SENTINEL_ENDPOINT)");
pub const SENTINEL_STREAM: Setting =
    Setting::new("SENTINEL_STREAM", Kind::Text, "Stream declared in the DCR.")
        .default("Custom-ZoomLogs_CL");
pub const SENTINEL_SOURCES: Setting = Setting::new("SENTINEL_SOURCES", Kind::Text, "Which events go to Sentinel: `webhook` (as the replaced Azure Function did), `websocket` (QSS), or `webhook,websocket`.").default("webhook");
pub const SENTINEL_MAX_BODY_BYTES: Setting = Setting::new("SENTINEL_MAX_BODY_BYTES", Kind::Size { min: 1024 }, "Uncompressed bytes per Logs Ingestion request at most (the API takes 1 MB; lower it, never raise it).").default("1MB");

// Zoom WebSocket.
pub const ZOOM_ACCOUNT_ID: Setting = Setting::new(
    "ZOOM_ACCOUNT_ID",
    Kind::Text,
    "Server-to-Server OAuth app: account id.",
)
.shown("(required with ZOOM_WSS_URL)");
pub const ZOOM_CLIENT_ID: Setting = Setting::new(
    "ZOOM_CLIENT_ID",
    Kind::Text,
    "Server-to-Server OAuth app: client id.",
)
.shown("(required with ZOOM_WSS_URL)");
pub const ZOOM_CLIENT_SECRET: Setting = Setting::new(
    "ZOOM_CLIENT_SECRET",
    Kind::Secret,
    "Server-to-Server OAuth app: client secret (secret).",
)
.shown("(required with ZOOM_WSS_URL)");
pub const ZOOM_WSS_URL: Setting = Setting::new("ZOOM_WSS_URL", Kind::Url(&["wss", "ws"]), "QSS WebSocket endpoint of the subscription, with its `?subscriptionId=...`; several subscriptions of the same app, comma-separated, for redundancy (one connection each; an event arriving on several is spooled once). Setting it turns the WebSocket source on.").shown("(none: WebSocket source off)");
pub const ZOOM_OAUTH_URL: Setting = Setting::new(
    "ZOOM_OAUTH_URL",
    Kind::Url(&["https", "http"]),
    "Token endpoint.",
)
.default("https://zoom.us/oauth/token");
pub const ZOOM_HEARTBEAT_INTERVAL_SECS: Setting = Setting::new("ZOOM_HEARTBEAT_INTERVAL_SECS", secs!(1, 600), "Interval of the `{\"module\":\"heartbeat\"}` frames; a connection silent for two intervals is reconnected.").default("30");

// Zoom webhooks.
pub const ZOOM_WEBHOOK_SECRET_TOKEN: Setting = Setting::new("ZOOM_WEBHOOK_SECRET_TOKEN", Kind::Secret, "Secret token of the webhook event subscription (secret). Setting it turns the webhook source on.").shown("(none: webhook source off)");
pub const RELAY_WEBHOOK_ADDR: Setting = Setting::new(
    "RELAY_WEBHOOK_ADDR",
    Kind::Addr,
    "Listen address of the webhook endpoint `POST /zoom/webhook`.",
)
.default("127.0.0.1:8080")
.shown("127.0.0.1:8080, or 0.0.0.0:8443 with TLS");
/// The webhook endpoint's default address when it serves TLS (it is then meant to be
/// reached from outside); [`RELAY_WEBHOOK_ADDR`]'s documented default names it.
pub const WEBHOOK_TLS_ADDR: &str = "0.0.0.0:8443";
pub const RELAY_WEBHOOK_TLS_CERT: Setting = Setting::new(
    "RELAY_WEBHOOK_TLS_CERT",
    Kind::Path,
    "PEM certificate chain: serve the webhook endpoint over TLS (reloaded on SIGHUP).",
);
pub const RELAY_WEBHOOK_TLS_KEY: Setting = Setting::new(
    "RELAY_WEBHOOK_TLS_KEY",
    Kind::Path,
    "PEM private key for RELAY_WEBHOOK_TLS_CERT.",
);
pub const RELAY_WEBHOOK_MAX_BODY_BYTES: Setting = Setting::new(
    "RELAY_WEBHOOK_MAX_BODY_BYTES",
    Kind::Size { min: 1024 },
    "Larger webhook bodies are answered 413.",
)
.default("1MiB");
pub const RELAY_WEBHOOK_MAX_CONNECTIONS: Setting = Setting::new("RELAY_WEBHOOK_MAX_CONNECTIONS", Kind::Int { min: 1, max: 1_000_000 }, "Open connections to the webhook endpoint at most (at most half the process's file descriptor limit); over it new connections are closed at once.").default("4096");
pub const RELAY_WEBHOOK_MAX_BODIES: Setting = Setting::new("RELAY_WEBHOOK_MAX_BODIES", Kind::Int { min: 1, max: 100_000 }, "Request bodies read at once at most; over it a request is answered 503 (Zoom retries) before its body is read.").default("64");
pub const RELAY_WEBHOOK_HEADER_TIMEOUT_SECS: Setting = Setting::new("RELAY_WEBHOOK_HEADER_TIMEOUT_SECS", secs!(1, 3600), "A client must send its whole request head (and finish a TLS handshake) within this; otherwise the connection is closed.").default("10");
pub const RELAY_WEBHOOK_BODY_TIMEOUT_SECS: Setting = Setting::new(
    "RELAY_WEBHOOK_BODY_TIMEOUT_SECS",
    secs!(1, 3600),
    "A request body must arrive within this; otherwise 408 and the connection is closed.",
)
.default("15");
pub const RELAY_WEBHOOK_IDLE_TIMEOUT_SECS: Setting = Setting::new(
    "RELAY_WEBHOOK_IDLE_TIMEOUT_SECS",
    secs!(1, 86_400),
    "A connection with no byte moving for this long (idle keep-alive) is closed.",
)
.default("60");
pub const RELAY_WEBHOOK_MAX_SKEW_SECS: Setting = Setting::new(
    "RELAY_WEBHOOK_MAX_SKEW_SECS",
    secs!(1, 86_400),
    "Webhooks whose `x-zm-request-timestamp` is further than this from now are refused.",
)
.default("300");

// Spool.
pub const RELAY_SPOOL_DIR: Setting = Setting::new(
    "RELAY_SPOOL_DIR",
    Kind::Path,
    "Directory of the on-disk spool. One process owns it.",
)
.shown("$STATE_DIRECTORY/spool, else /var/lib/qss-relay/spool");
/// Where the spool lives when neither `RELAY_SPOOL_DIR` nor systemd's `STATE_DIRECTORY` is set.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/qss-relay/spool";
pub const RELAY_SPOOL_MAX_BYTES: Setting = Setting::new("RELAY_SPOOL_MAX_BYTES", Kind::Size { min: 1 << 20 }, "Cap on the spool's stored (compressed) blocks. sled needs more disk than that while a backlog is held (up to about 3x for large backlogs); it gives the space back once drained.").default("10GiB");
pub const RELAY_SPOOL_FULL_POLICY: Setting = Setting::new("RELAY_SPOOL_FULL_POLICY", Kind::Choice(&["drop-oldest", "reject-new"]), "At the cap: `drop-oldest` (drop the oldest pending events) or `reject-new` (refuse new events; webhooks get 503). Every drop is counted and logged.").default("drop-oldest");
pub const RELAY_SPOOL_MIN_FREE_BYTES: Setting = Setting::new("RELAY_SPOOL_MIN_FREE_BYTES", Kind::Size { min: 0 }, "Free space the spool leaves on its file system. Below it the spool behaves as at its size cap (RELAY_SPOOL_FULL_POLICY), so a full disk never stops the relay from recording deliveries; it resumes by itself once space is back.").default("128MiB");
pub const RELAY_SPOOL_COMMIT_MS: Setting = Setting::new("RELAY_SPOOL_COMMIT_MS", Kind::Int { min: 0, max: 10_000 }, "Group commit window: how long the spool writer gathers records before one compressed, flushed block.").default("10");
pub const RELAY_SPOOL_CACHE_BYTES: Setting = Setting::new(
    "RELAY_SPOOL_CACHE_BYTES",
    Kind::Size { min: 1 << 20 },
    "sled page cache bound (sled's own default is 1 GiB).",
)
.default("64MiB");

// Shipping.
pub const RELAY_BATCH_MAX_EVENTS: Setting = Setting::new(
    "RELAY_BATCH_MAX_EVENTS",
    Kind::Int {
        min: 1,
        max: 1_000_000,
    },
    "Events per ingest request at most.",
)
.default("5000");
pub const RELAY_BATCH_MAX_BYTES: Setting = Setting::new(
    "RELAY_BATCH_MAX_BYTES",
    Kind::Size { min: 1024 },
    "Uncompressed bytes per ingest request at most.",
)
.default("5MB");
/// LogScale refuses larger requests (after decompression).
pub const LOGSCALE_MAX_REQUEST_BYTES: u64 = 32_000_000;
pub const RELAY_BATCH_TIMEOUT_MS: Setting = Setting::new(
    "RELAY_BATCH_TIMEOUT_MS",
    Kind::Int {
        min: 0,
        max: 600_000,
    },
    "Linger: a batch that is not full is sent this long after its first event.",
)
.default("500");
pub const RELAY_SHIP_CONCURRENCY: Setting = Setting::new(
    "RELAY_SHIP_CONCURRENCY",
    Kind::Int { min: 1, max: 64 },
    "Ingest requests in flight.",
)
.default("4");
pub const RELAY_SHIP_TIMEOUT_SECS: Setting = Setting::new(
    "RELAY_SHIP_TIMEOUT_SECS",
    secs!(1, 3600),
    "Timeout of one ingest request; a timeout is retried.",
)
.default("30");

// Network.
pub const RELAY_CA_FILE: Setting = Setting::new("RELAY_CA_FILE", Kind::Path, "Extra PEM CA certificates trusted for LogScale and Zoom (added to the system and webpki roots; verification is never turned off).");
pub const HTTPS_PROXY: Setting = Setting::new("HTTPS_PROXY", Kind::Text, "Proxy for https and wss destinations (Zoom, LogScale): `http://[user:password@]host:port`. The relay opens a CONNECT tunnel and verifies the destination's certificate inside it. Lower case `https_proxy` works too.");
pub const HTTP_PROXY: Setting = Setting::new(
    "HTTP_PROXY",
    Kind::Text,
    "Proxy for http and ws destinations (`http_proxy` too).",
);
pub const ALL_PROXY: Setting = Setting::new(
    "ALL_PROXY",
    Kind::Text,
    "Proxy for every destination that HTTPS_PROXY/HTTP_PROXY do not name (`all_proxy` too).",
);
pub const NO_PROXY: Setting = Setting::new("NO_PROXY", Kind::List, "Destinations reached directly: comma-separated host names (a name covers its subdomains), IP addresses or networks (`10.0.0.0/8`), or `*` (`no_proxy` too).");

// The process.
pub const RELAY_HA_ETCD_ENDPOINTS: Setting = Setting::new("RELAY_HA_ETCD_ENDPOINTS", Kind::List, "etcd members (`http://host:2379`, comma-separated): relays with the same RELAY_HA_NAME elect one leader there. Unset: no election, this relay acts alone.").shown("(none: no election)");
pub const RELAY_HA_NAME: Setting = Setting::new("RELAY_HA_NAME", Kind::Text, "The election's name (the prefix of its keys in etcd): the relays that stand in for one another share it.").default("qss-relay");
pub const RELAY_HA_LEASE_TTL_SECS: Setting = Setting::new("RELAY_HA_LEASE_TTL_SECS", Kind::Int { min: 2, max: 300 }, "Lease of the leader in etcd: a leader that cannot renew it steps down within it, and a dead leader is replaced after it.").default("10");
pub const RELAY_HA_STANDBY: Setting = Setting::new("RELAY_HA_STANDBY", Kind::Choice(&["cold", "hot"]), "`cold`: only the leader connects to Zoom (relays sharing subscription URLs); `hot`: every relay keeps its own subscriptions open and spools every event, and only the leader ships QSS (relays with subscriptions of their own).").default("cold");
pub const RELAY_HOSTNAME: Setting = Setting::new(
    "RELAY_HOSTNAME",
    Kind::Text,
    "The HEC `host` field, and this relay's name in an election (unique per relay).",
)
.shown("(the machine's host name)");
pub const RELAY_ADMIN_ADDR: Setting = Setting::new("RELAY_ADMIN_ADDR", Kind::Addr, "Admin endpoint: `/metrics`, `/healthz`, `/readyz` only (the spool's state and operations are on the operator socket `relay.sock` in the spool directory, mode 0600). `off` disables it.").default("127.0.0.1:9464");
pub const RELAY_REDACT_HEADER_FIELDS: Setting = Setting::new("RELAY_REDACT_HEADER_FIELDS", Kind::List, "Comma-separated names of Zoom frame `header` members whose values are shipped as `[REDACTED]`, in addition to `Authorization` (always redacted, in any letter case). The spool keeps frames as received.");
pub const RELAY_ADMIN_ALLOWED_HOSTS: Setting = Setting::new("RELAY_ADMIN_ALLOWED_HOSTS", Kind::List, "Comma-separated host names accepted in the admin endpoint's `Host` header besides IP addresses and `localhost` (e.g. the name Prometheus scrapes it by). Other names are refused (DNS rebinding).");
pub const RELAY_LOG_FORMAT: Setting = Setting::new(
    "RELAY_LOG_FORMAT",
    Kind::Choice(&["text", "json"]),
    "`text` or `json` (one object per line). `RUST_LOG` sets the level (default `info`).",
)
.default("text");
pub const RELAY_SHUTDOWN_TIMEOUT_SECS: Setting = Setting::new(
    "RELAY_SHUTDOWN_TIMEOUT_SECS",
    secs!(0, 3600),
    "On SIGTERM/SIGINT, how long in-flight ingest requests may take to finish.",
)
.default("10");

/// Every variable, in the order of docs/configuration.md.
pub const SETTINGS: &[Setting] = &[
    LOGSCALE_HOST,
    LOGSCALE_INGEST_TOKEN,
    LOGSCALE_REPOSITORY,
    LOGSCALE_COMPRESSION,
    LOGSCALE_WEBHOOK_SOURCETYPE,
    AZURE_TENANT_ID,
    AZURE_CLIENT_ID,
    AZURE_CLIENT_SECRET,
    AZURE_AUTHORITY_HOST,
    SENTINEL_ENDPOINT,
    SENTINEL_DCR_ID,
    SENTINEL_STREAM,
    SENTINEL_SOURCES,
    SENTINEL_MAX_BODY_BYTES,
    ZOOM_ACCOUNT_ID,
    ZOOM_CLIENT_ID,
    ZOOM_CLIENT_SECRET,
    ZOOM_WSS_URL,
    ZOOM_OAUTH_URL,
    ZOOM_HEARTBEAT_INTERVAL_SECS,
    ZOOM_WEBHOOK_SECRET_TOKEN,
    RELAY_WEBHOOK_ADDR,
    RELAY_WEBHOOK_TLS_CERT,
    RELAY_WEBHOOK_TLS_KEY,
    RELAY_WEBHOOK_MAX_BODY_BYTES,
    RELAY_WEBHOOK_MAX_CONNECTIONS,
    RELAY_WEBHOOK_MAX_BODIES,
    RELAY_WEBHOOK_HEADER_TIMEOUT_SECS,
    RELAY_WEBHOOK_BODY_TIMEOUT_SECS,
    RELAY_WEBHOOK_IDLE_TIMEOUT_SECS,
    RELAY_WEBHOOK_MAX_SKEW_SECS,
    RELAY_SPOOL_DIR,
    RELAY_SPOOL_MAX_BYTES,
    RELAY_SPOOL_FULL_POLICY,
    RELAY_SPOOL_MIN_FREE_BYTES,
    RELAY_SPOOL_COMMIT_MS,
    RELAY_SPOOL_CACHE_BYTES,
    RELAY_BATCH_MAX_EVENTS,
    RELAY_BATCH_MAX_BYTES,
    RELAY_BATCH_TIMEOUT_MS,
    RELAY_SHIP_CONCURRENCY,
    RELAY_SHIP_TIMEOUT_SECS,
    RELAY_CA_FILE,
    HTTPS_PROXY,
    HTTP_PROXY,
    ALL_PROXY,
    NO_PROXY,
    RELAY_HA_ETCD_ENDPOINTS,
    RELAY_HA_NAME,
    RELAY_HA_LEASE_TTL_SECS,
    RELAY_HA_STANDBY,
    RELAY_HOSTNAME,
    RELAY_ADMIN_ADDR,
    RELAY_ADMIN_ALLOWED_HOSTS,
    RELAY_REDACT_HEADER_FIELDS,
    RELAY_LOG_FORMAT,
    RELAY_SHUTDOWN_TIMEOUT_SECS,
];

/// The setting called `name`, if the relay reads it.
pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// One line per declared variable that is set in `vars`, for `relay check`: the value
/// (`***` for a secret, and for credentials in a proxy URL) and the default it replaces.
pub fn report<'a>(vars: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    vars.filter(|(_, v)| !v.is_empty())
        .filter_map(|(name, value)| {
            let setting = find(&name.to_ascii_uppercase())?;
            let shown = if setting.is_secret() {
                "***".to_string()
            } else if setting.name.ends_with("_PROXY") && value.contains('@') {
                let (_, host) = value.rsplit_once('@').expect("contains @");
                let scheme = value.split_once("://").map_or("", |(s, _)| s);
                let sep = if scheme.is_empty() { "" } else { "://" };
                format!("{scheme}{sep}***@{host}")
            } else {
                value.to_string()
            };
            Some(format!(
                "{name}={shown} (default: {})",
                setting.shown_default()
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_default_is_a_valid_value() {
        for s in SETTINGS {
            if let Some(d) = s.default {
                assert!(
                    is_valid(s, d),
                    "{}: default {d:?} is not {}",
                    s.name,
                    s.expected()
                );
            }
        }
    }

    #[test]
    fn names_are_unique_and_secrets_are_marked() {
        for (i, s) in SETTINGS.iter().enumerate() {
            assert!(
                SETTINGS[i + 1..].iter().all(|o| o.name != s.name),
                "{} is listed twice",
                s.name
            );
            if s.name.contains("SECRET") || s.name.ends_with("TOKEN") {
                assert!(s.is_secret(), "{} should be a secret", s.name);
            }
        }
    }

    #[test]
    fn the_report_hides_secrets_and_proxy_credentials() {
        let vars = [
            ("LOGSCALE_INGEST_TOKEN", "tok-123"),
            ("https_proxy", "http://user:pw@proxy:3128"),
            ("RELAY_SPOOL_COMMIT_MS", "20"),
            ("PATH", "/usr/bin"),
        ];
        let lines = report(vars.into_iter());
        assert_eq!(
            lines,
            [
                "LOGSCALE_INGEST_TOKEN=*** (default: (required with LOGSCALE_HOST))",
                "https_proxy=http://***@proxy:3128 (default: (none))",
                "RELAY_SPOOL_COMMIT_MS=20 (default: 10)",
            ]
        );
    }

    #[test]
    fn the_webhook_address_defaults_are_the_documented_ones() {
        let shown = RELAY_WEBHOOK_ADDR.shown_default();
        assert!(shown.contains(RELAY_WEBHOOK_ADDR.default.unwrap()));
        assert!(shown.contains(WEBHOOK_TLS_ADDR), "{shown}");
        assert!(RELAY_SPOOL_DIR.shown_default().contains(DEFAULT_SPOOL_DIR));
    }
}
