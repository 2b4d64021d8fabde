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
//! - [`settings`]: every variable, declared once (name, default, parser, doc, secret).
//! - [`env`](mod@env): the env file and the process environment, merged.
//! - [`read`]: typed values from declared settings, and the multi-variable sections.
//!
//! Each component owns its settings type ([`SpoolSettings`], [`ShipSettings`],
//! [`ZoomWsSettings`], [`WebhookSettings`], [`ProxySettings`]); this module builds them and
//! nothing below it imports `config`.
//!
//! Which settings are *required* depends on the command: `relay run` needs LogScale and at
//! least one source ([`Config::require_for_run`]); `relay spool ...` needs only the spool.

pub mod env;
mod read;
pub mod settings;

pub use crate::logging::LogFormat;
pub use crate::net::proxy::ProxySettings;
pub use crate::secret::Secret;
pub use crate::ship::{Compression, LogscaleSettings, SentinelSettings, ShipSettings, Sources};
pub use crate::source::settings::{WebhookSettings, ZoomWsSettings};
pub use crate::spool::{FullPolicy, SpoolSettings};
pub use env::{parse_env_file, Env, EnvFileError};
pub use read::normalize_logscale_host;
pub use settings::{Setting, SETTINGS};

use crate::redact::Redaction;
use crate::ship::Limits;
use read::Reader;
use settings as s;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

/// The whole configuration. Sections that are not configured at all are `None`.
#[derive(Debug, Clone)]
pub struct Config {
    pub logscale: Option<LogscaleSettings>,
    pub sentinel: Option<SentinelSettings>,
    pub zoom_ws: Option<ZoomWsSettings>,
    pub webhook: Option<WebhookSettings>,
    pub spool: SpoolSettings,
    pub ship: ShipSettings,
    pub admin_addr: Option<SocketAddr>,
    /// Host names the admin endpoint accepts besides addresses and `localhost`.
    pub admin_allowed_hosts: Vec<String>,
    pub log_format: LogFormat,
    pub ca_file: Option<PathBuf>,
    pub proxy: ProxySettings,
    pub hostname: String,
    /// The election (`RELAY_HA_*`), when there is one.
    pub ha: Option<crate::ha::HaSettings>,
    /// The frame header members that never leave the host.
    pub redact: Redaction,
    pub shutdown_timeout: Duration,
}

impl Config {
    /// Reads every setting, collecting all problems.
    pub fn from_env(env: &Env) -> Result<Config, Problems> {
        let mut r = Reader::new(env);

        let logscale = read::read_logscale(&mut r);
        let sentinel = read::read_sentinel(&mut r);
        let zoom_ws = read::read_zoom_ws(&mut r);
        let webhook = read::read_webhook(&mut r);

        let default_dir = match env.get("STATE_DIRECTORY") {
            // systemd may pass several directories separated by ':'; the first is ours.
            Some(state) => PathBuf::from(state.split(':').next().unwrap_or(state)).join("spool"),
            None => PathBuf::from(s::DEFAULT_SPOOL_DIR),
        };
        let spool = SpoolSettings {
            dir: r.path(&s::RELAY_SPOOL_DIR).unwrap_or(default_dir),
            max_bytes: r.size(&s::RELAY_SPOOL_MAX_BYTES),
            min_free_bytes: r.size(&s::RELAY_SPOOL_MIN_FREE_BYTES),
            full_policy: r.choice(&s::RELAY_SPOOL_FULL_POLICY, FullPolicy::parse),
            commit_interval: r.millis(&s::RELAY_SPOOL_COMMIT_MS),
            cache_bytes: r.size(&s::RELAY_SPOOL_CACHE_BYTES),
            rotate_bytes: crate::spool::ROTATE_BYTES,
        };

        let ship = ShipSettings {
            limits: Limits {
                max_events: r.int(&s::RELAY_BATCH_MAX_EVENTS) as usize,
                max_bytes: r.size(&s::RELAY_BATCH_MAX_BYTES) as usize,
            },
            linger: r.millis(&s::RELAY_BATCH_TIMEOUT_MS),
            concurrency: r.int(&s::RELAY_SHIP_CONCURRENCY) as usize,
            request_timeout: r.secs(&s::RELAY_SHIP_TIMEOUT_SECS),
        };
        if ship.limits.max_bytes as u64 > s::LOGSCALE_MAX_REQUEST_BYTES {
            r.problem(
                s::RELAY_BATCH_MAX_BYTES.name,
                "LogScale refuses requests over 32 MB after decompression; use 5MB (the default) or less than 32MB",
            );
        }

        let admin_addr = match r.raw(&s::RELAY_ADMIN_ADDR) {
            Some("off") => None,
            _ => Some(r.addr(&s::RELAY_ADMIN_ADDR)),
        };
        let admin_allowed_hosts = r.list(&s::RELAY_ADMIN_ALLOWED_HOSTS);
        let log_format = r.choice(&s::RELAY_LOG_FORMAT, |v| match v {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        });
        let ca_file = r.path(&s::RELAY_CA_FILE);
        if let Some(path) = &ca_file {
            if !path.is_file() {
                r.problem(
                    s::RELAY_CA_FILE.name,
                    format!("{} is not a readable file", path.display()),
                );
            }
        }
        let proxy = read::read_proxy(&mut r);
        let hostname = r
            .string(&s::RELAY_HOSTNAME)
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
        let shutdown_timeout = r.secs(&s::RELAY_SHUTDOWN_TIMEOUT_SECS);
        let redact = Redaction::with_extra(r.list(&s::RELAY_REDACT_HEADER_FIELDS));
        let ha = read::read_ha(&mut r);

        if r.problems.is_empty() {
            Ok(Config {
                logscale,
                sentinel,
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
                ha,
                redact,
                shutdown_timeout,
            })
        } else {
            Err(Problems(r.problems))
        }
    }

    /// The configured destinations, by the spool's name for them, with the sources each
    /// takes.
    pub fn destinations(&self) -> Vec<(&'static str, Sources)> {
        let mut out = Vec::new();
        if self.logscale.is_some() {
            out.push(("logscale", Sources::ALL));
        }
        if let Some(s) = &self.sentinel {
            out.push(("sentinel", s.sources));
        }
        out
    }

    /// What HEC events from the spool `spool_id` carry: LogScale's settings, or (when
    /// LogScale is not configured, as for `relay spool export` on a copied spool) the
    /// declared defaults.
    pub fn hec(&self, spool_id: &str) -> crate::ship::HecSettings {
        match &self.logscale {
            Some(l) => l.hec(&self.hostname, spool_id, &self.redact),
            None => crate::ship::HecSettings {
                host: self.hostname.clone(),
                index: None,
                spool_id: spool_id.to_string(),
                webhook_sourcetype: s::LOGSCALE_WEBHOOK_SOURCETYPE
                    .default
                    .expect("declared default")
                    .to_string(),
                redact: self.redact.clone(),
            },
        }
    }

    /// What `relay run` needs on top of well-formed values: a destination and a source.
    pub fn require_for_run(&self) -> Result<(), Problems> {
        let mut problems = Vec::new();
        if self.logscale.is_none() && self.sentinel.is_none() {
            problems.push(Problem {
                var: "LOGSCALE_HOST".into(),
                message: "no destination configured: set LOGSCALE_HOST (with LOGSCALE_INGEST_TOKEN) for LogScale, or SENTINEL_ENDPOINT (with SENTINEL_DCR_ID and AZURE_*) for Microsoft Sentinel, or both".into(),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn sentinel_vars() -> [(&'static str, &'static str); 5] {
        [
            (
                "SENTINEL_ENDPOINT",
                "https://zoom-dce.westeurope-1.ingest.monitor.azure.com/",
            ),
            ("SENTINEL_DCR_ID", "dcr-0123456789abcdef0123456789abcdef"),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_CLIENT_ID", "app"),
            ("AZURE_CLIENT_SECRET", "azure-secret"),
        ]
    }

    #[test]
    fn sentinel_alone_is_a_destination_and_its_mistakes_are_named() {
        let env = Env::from_pairs(
            sentinel_vars()
                .into_iter()
                .chain([("ZOOM_WEBHOOK_SECRET_TOKEN", "w")]),
        );
        let cfg = Config::from_env(&env).unwrap();
        cfg.require_for_run().unwrap();
        let s = cfg.sentinel.as_ref().unwrap();
        assert_eq!(
            s.endpoint,
            "https://zoom-dce.westeurope-1.ingest.monitor.azure.com"
        );
        assert_eq!(s.authority_host, "https://login.microsoftonline.com");
        assert_eq!(s.stream, "Custom-ZoomLogs_CL");
        assert_eq!(
            s.sources,
            Sources {
                webhook: true,
                websocket: false
            }
        );
        assert_eq!(s.max_body_bytes, 1_000_000);
        assert!(cfg.logscale.is_none());

        let mut env = Env::from_pairs(sentinel_vars());
        env.set("SENTINEL_DCR_ID", "zoom-dcr");
        env.set("SENTINEL_SOURCES", "webhook,qss");
        env.set("SENTINEL_MAX_BODY_BYTES", "4MB");
        env.set("AZURE_CLIENT_SECRET", "");
        let p = Config::from_env(&env).unwrap_err();
        let vars: Vec<&str> = p.0.iter().map(|p| p.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "SENTINEL_SOURCES",
                "SENTINEL_MAX_BODY_BYTES",
                "AZURE_CLIENT_SECRET",
                "SENTINEL_DCR_ID"
            ]
        );
        assert!(!p.to_string().contains("azure-secret"));
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
    fn the_docs_document_every_setting_with_its_default() {
        let readme = include_str!("../../docs/configuration.md");
        for s in SETTINGS {
            let row = format!("| `{}` | {} |", s.name, s.shown_default());
            assert!(
                readme.contains(&row),
                "docs/configuration.md lacks the configuration row for {}: {row}",
                s.name
            );
        }
    }

    /// The default in the documented row, set explicitly, gives the same configuration as
    /// leaving the variable unset: the documented default is the one the code uses.
    #[test]
    fn the_readme_defaults_are_the_ones_the_code_uses() {
        let mut base = old_script_env();
        base.set("ZOOM_WEBHOOK_SECRET_TOKEN", "whsecret");
        base.set("RELAY_HOSTNAME", "relay-test");
        for (k, v) in sentinel_vars() {
            base.set(k, v);
        }
        let unset = format!("{:?}", Config::from_env(&base).unwrap());
        let readme = include_str!("../../docs/configuration.md");
        let mut checked = 0;
        for s in SETTINGS.iter().filter(|s| s.default.is_some()) {
            let prefix = format!("| `{}` | ", s.name);
            let line = readme
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("docs/configuration.md has no row for {}", s.name));
            let cell = line[prefix.len()..].split(" |").next().unwrap();
            // "127.0.0.1:8080, or 0.0.0.0:8443 with TLS": the first value is the default.
            let value = cell.split(", or ").next().unwrap();
            let mut env = base.clone();
            env.set(s.name, value);
            let set = Config::from_env(&env)
                .unwrap_or_else(|p| panic!("documented default of {} is refused: {p}", s.name));
            assert_eq!(
                format!("{set:?}"),
                unset,
                "{} = {value:?} (docs/configuration.md) differs from leaving it unset",
                s.name
            );
            checked += 1;
        }
        assert!(checked >= 25, "only {checked} defaults checked");
    }
}
