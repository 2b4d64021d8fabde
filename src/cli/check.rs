//! `relay check`: every external dependency, checked once, with what to fix for each ✗.
//! Spools nothing.

use super::{load, Global};
use crate::admin::{InspectReport, OperatorClient};
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::net::proxy::Proxy;
use crate::net::tls;
use crate::ship::{HecClient, Sentinel};
use crate::source::settings::ZoomWsSettings;
use crate::source::zoom_dial::Dialer;
use crate::source::zoom_token::TokenSource;
use crate::spool::{Spool, SpoolError, SpoolStats};
use std::process::ExitCode;
use std::sync::Arc;

struct Checklist {
    failed: usize,
}

impl Checklist {
    fn pass(&mut self, what: &str, detail: &str) {
        println!(
            "✓ {what}{}",
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        );
    }
    fn fail(&mut self, what: &str, problem: &str, fix: &str) {
        self.failed += 1;
        println!("✗ {what}: {problem}");
        println!("    fix: {fix}");
    }
    /// Something to know that does not fail the check.
    fn note(&mut self, what: &str, detail: &str) {
        println!("! {what}: {detail}");
    }
    fn skip(&mut self, what: &str, why: &str) {
        println!("- {what}: {why}");
    }
}

pub(super) async fn check(global: &Global) -> ExitCode {
    let mut c = Checklist { failed: 0 };
    let (env, config) = match load(global) {
        Ok(v) => v,
        Err(code) => {
            println!("✗ configuration: see the problems above");
            return code;
        }
    };
    let set = crate::config::settings::report(env.iter());
    match config.require_for_run() {
        Ok(()) => c.pass(
            "configuration",
            &format!("all variables valid; {} set, the rest default", set.len()),
        ),
        Err(p) => {
            for problem in &p.0 {
                c.fail(
                    "configuration",
                    &problem.to_string(),
                    &format!("set {} (see docs/configuration.md)", problem.var),
                );
            }
        }
    }

    for line in &set {
        println!("    {line}");
    }

    // Spool directory, and the disk it is on (asked of the running relay if it holds it).
    let dir = &config.spool.dir;
    // Whether a relay runs on this spool (it holds the directory).
    let mut running = false;
    match Spool::open(&config.spool, Arc::new(Metrics::new())) {
        Ok(spool) => {
            let probe = dir.join(".relay-check");
            match std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe)) {
                Ok(()) => check_spool_disk(&mut c, &spool.stats(), "is writable"),
                Err(e) => c.fail(
                    "spool directory",
                    &format!("{} is not writable: {e}", dir.display()),
                    "give the relay's user write access, or set RELAY_SPOOL_DIR",
                ),
            }
        }
        Err(SpoolError::InUse(_)) => {
            running = true;
            let socket = crate::admin::operator::socket_path(dir);
            match OperatorClient::new(&socket)
                .get::<InspectReport>("/spool/inspect")
                .await
            {
                Ok(r) => check_spool_disk(&mut c, &r.spool, "is held by the running relay"),
                Err(e) => c.pass(
                    "spool directory",
                    &format!(
                        "{} is held by the running relay (its state could not be read: {e})",
                        dir.display()
                    ),
                ),
            }
        }
        Err(e) => c.fail(
            "spool directory",
            &e.to_string(),
            "create the directory with write access for the relay's user, or set RELAY_SPOOL_DIR",
        ),
    }

    let proxy = Proxy::new(&config.proxy);
    let route = |url: &str| {
        url.parse::<hyper::Uri>()
            .map(|u| proxy.route(&u).to_string())
            .unwrap_or_else(|_| "direct".into())
    };
    let http = match HttpClient::with_proxy(config.ca_file.as_deref(), proxy.clone()) {
        Ok(h) => h,
        Err(e) => {
            c.fail("TLS", &e.to_string(), "fix RELAY_CA_FILE");
            return ExitCode::FAILURE;
        }
    };

    // Zoom: token, then the WebSocket.
    match &config.zoom_ws {
        None => c.skip("Zoom WebSocket", "not configured (ZOOM_WSS_URL unset)"),
        Some(zoom) => {
            let tokens = TokenSource::new(http.clone(), zoom.clone(), Arc::new(Metrics::new()));
            match tokens.fetch_once().await {
                Err(e) => {
                    c.fail("Zoom token", &format!("{e} ({})", route(&zoom.oauth_url)), "check ZOOM_ACCOUNT_ID, ZOOM_CLIENT_ID, ZOOM_CLIENT_SECRET (and ZOOM_OAUTH_URL if set), and HTTPS_PROXY/NO_PROXY if a proxy is in the way");
                    c.skip("Zoom WebSocket", "needs a token");
                }
                Ok(token) => {
                    c.pass(
                        "Zoom token",
                        &format!("issued by {} ({})", zoom.oauth_url, route(&zoom.oauth_url)),
                    );
                    let tls_cfg =
                        match tls::client_config(config.ca_file.as_deref(), &[b"http/1.1"]) {
                            Ok(t) => Arc::new(t),
                            Err(e) => {
                                c.fail("TLS", &e.to_string(), "fix RELAY_CA_FILE");
                                return ExitCode::FAILURE;
                            }
                        };
                    for url in &zoom.wss_urls {
                        let what =
                            format!("Zoom WebSocket ({})", ZoomWsSettings::subscription_of(url));
                        let dialer =
                            Dialer::new(zoom.clone(), url.clone(), tls_cfg.clone(), proxy.clone());
                        let via = dialer.route();
                        match dialer.probe(&token).await {
                            Ok(url) => c.pass(&what, &format!("build_connection succeeded at {url} ({via}; Zoom allows one connection per subscription: a running relay reconnects at once)")),
                            Err(e) => c.fail(&what, &format!("{e} ({via})"), "check ZOOM_WSS_URL (each subscription's endpoint with ?subscriptionId=...), that the app has the QSS scopes, and HTTPS_PROXY/NO_PROXY if a proxy is in the way"),
                        }
                    }
                }
            }
        }
    }

    // LogScale.
    match &config.logscale {
        None => c.skip("LogScale", "not configured"),
        Some(ls) => match HecClient::new(
            http.clone(),
            &ls.base_url,
            &ls.token,
            ls.compression,
            config.ship.request_timeout,
        ) {
            Err(e) => c.fail(
                "LogScale",
                &e.to_string(),
                "fix LOGSCALE_HOST / LOGSCALE_INGEST_TOKEN",
            ),
            Ok(client) => {
                let via = route(&ls.base_url);
                match client.health().await {
                    Ok((200..=299, _)) => c.pass("LogScale HEC", &format!("{} answers healthy ({via})", ls.base_url)),
                    Ok((code @ (401 | 403), body)) => c.fail("LogScale HEC", &format!("HTTP {code}: the ingest token is refused ({body})"), "set LOGSCALE_INGEST_TOKEN to an ingest token of the repository"),
                    Ok((code, body)) => c.fail("LogScale HEC", &format!("HTTP {code} from {}/api/v1/ingest/hec/health ({via}): {body}", ls.base_url), "check LOGSCALE_HOST (host[:port] or https://host) and that LogScale is up"),
                    Err(e) => c.fail("LogScale HEC", &format!("cannot reach {} ({via}): {e}", ls.base_url), "check LOGSCALE_HOST, DNS, firewalls, HTTPS_PROXY/NO_PROXY (RELAY_CA_FILE for a private CA)"),
                }
            }
        },
    }

    // Microsoft Sentinel: the token; the role on the DCR shows at the first delivery.
    match &config.sentinel {
        None => c.skip(
            "Microsoft Sentinel",
            "not configured (SENTINEL_ENDPOINT unset)",
        ),
        Some(se) => match Sentinel::new(
            http.clone(),
            se.clone(),
            "check",
            config.redact.clone(),
            config.ship.request_timeout,
        ) {
            Err(e) => c.fail(
                "Microsoft Sentinel",
                &e.to_string(),
                "fix SENTINEL_ENDPOINT, SENTINEL_DCR_ID, SENTINEL_STREAM",
            ),
            Ok(dest) => {
                match dest.check_token().await {
                    Ok(()) => c.pass("Microsoft Entra ID token", &format!("the app {} gets a token for the Logs Ingestion API ({})", se.client_id, route(&se.authority_host))),
                    Err(f) if f.refused => c.fail("Microsoft Entra ID token", &f.message, "set AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET to the app registration's values (a new client secret if it expired)"),
                    Err(f) => c.fail("Microsoft Entra ID token", &f.message, "check AZURE_AUTHORITY_HOST, DNS, firewalls, HTTPS_PROXY/NO_PROXY"),
                }
                c.pass("Logs Ingestion endpoint", &format!("{} ({}); the app's Monitoring Metrics Publisher role on {} is checked by the first delivery: `relay spool inspect` says if it is missing", dest.url(), route(&se.endpoint), se.dcr_id));
            }
        },
    }

    // The election.
    match &config.ha {
        None => c.skip(
            "election",
            "not configured (RELAY_HA_ETCD_ENDPOINTS unset: this relay acts alone)",
        ),
        Some(ha) => check_election(&mut c, ha, &http, &config.hostname, running).await,
    }

    // Webhook endpoint.
    match &config.webhook {
        None => c.skip(
            "webhook endpoint",
            "not configured (ZOOM_WEBHOOK_SECRET_TOKEN unset)",
        ),
        Some(wh) => {
            if let Some((cert, key)) = &wh.tls {
                match tls::server_config(cert, key) {
                    Ok(_) => c.pass("webhook TLS", &format!("{} loads", cert.display())),
                    Err(e) => c.fail(
                        "webhook TLS",
                        &e,
                        "fix RELAY_WEBHOOK_TLS_CERT / RELAY_WEBHOOK_TLS_KEY (PEM)",
                    ),
                }
            }
            match tokio::net::TcpListener::bind(wh.addr).await {
                Ok(_) => c.pass(
                    "webhook endpoint",
                    &format!("{} is free to listen on", wh.addr),
                ),
                Err(e) => c.skip(
                    "webhook endpoint",
                    &format!(
                        "cannot listen on {} ({e}): fine if the running relay holds it",
                        wh.addr
                    ),
                ),
            }
        }
    }

    if c.failed == 0 {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("{} check(s) failed", c.failed);
        ExitCode::FAILURE
    }
}

/// The spool check from the spool's figures (read directly, or from the running relay):
/// a disk below the free-space floor fails it, with the fix.
fn check_spool_disk(c: &mut Checklist, stats: &SpoolStats, state: &str) {
    let free = stats.disk_free_bytes;
    if stats.disk_full || free.is_some_and(|f| f < stats.min_free_bytes) {
        c.fail(
            "spool disk",
            &format!(
                "disk full: {} free on the file system of {}, RELAY_SPOOL_MIN_FREE_BYTES is {}; the relay drops or refuses events",
                super::format::bytes(free.unwrap_or(0)),
                stats.spool_dir,
                super::format::bytes(stats.min_free_bytes)
            ),
            "free space on that file system, move RELAY_SPOOL_DIR to a larger disk, or set RELAY_SPOOL_MAX_BYTES below what it holds",
        );
    } else if let Some(holdable) = stats
        .holdable_bytes
        .filter(|h| *h < crate::spool::MIN_USEFUL_BYTES)
    {
        c.fail(
            "spool disk",
            &format!(
                "too small to be useful: the spool can hold {} on the file system of {} ({} in all, {} free, floor {}); at ~130 bytes per stored QSS event that is under a minute at 2,000 events/s",
                super::format::bytes(holdable),
                stats.spool_dir,
                super::format::bytes(stats.fs_bytes.unwrap_or(0)),
                super::format::bytes(free.unwrap_or(0)),
                super::format::bytes(stats.min_free_bytes)
            ),
            &format!(
                "give RELAY_SPOOL_DIR a file system with at least {} free (a larger volume, or free space on this one)",
                super::format::bytes(crate::spool::MIN_USEFUL_BYTES + stats.min_free_bytes)
            ),
        );
    } else {
        c.pass(
            "spool directory",
            &format!(
                "{} {state} ({} pending, {} free on its file system{})",
                stats.spool_dir,
                stats.pending_events,
                free.map_or("unknown".into(), super::format::bytes),
                stats.holdable_bytes.map_or(String::new(), |h| format!(
                    "; it can hold {}",
                    super::format::bytes(h)
                ))
            ),
        );
    }
    if let Some(note) = &stats.floor_adjusted {
        c.pass("spool floor", note);
    }
    if let Some(f) = &stats.last_failure {
        c.note(
            "spool storage",
            &format!(
                "the last storage failure was at {}: {}; if that is recent, check the disk (dmesg, SMART)",
                super::format::when(f.at_ms),
                f.reason
            ),
        );
    }
}

/// The election: etcd answers (a quorum), who leads, and whether this relay's name is
/// free or held by this host's running relay (a name held while no relay runs here is a
/// second relay with the same `RELAY_HOSTNAME`).
async fn check_election(
    c: &mut Checklist,
    ha: &crate::ha::HaSettings,
    http: &HttpClient,
    hostname: &str,
    running: bool,
) {
    let etcd = crate::ha::etcd::Etcd::new(
        http.clone(),
        &ha.endpoints,
        std::time::Duration::from_secs(2),
    );
    match crate::ha::probe(&etcd, ha, hostname).await {
        Err(e) => c.fail(
            "etcd",
            &e.to_string(),
            "check RELAY_HA_ETCD_ENDPOINTS (http://host:2379 of each member) and that a majority of the etcd members run",
        ),
        Ok(p) if p.registered && !running => c.fail(
            "election",
            &format!("a relay is registered as {hostname:?} in the election {:?}, but none runs on this spool", ha.name),
            "another host uses the same name: set RELAY_HOSTNAME to a name of its own on each relay (or wait for the lease of a relay just stopped here to expire)",
        ),
        Ok(p) => c.pass(
            "election",
            &format!(
                "etcd answers at {}; election {:?}, {} standby, lease {} s; leader: {}; this relay ({hostname}) {}",
                ha.endpoints.join(","),
                ha.name,
                match ha.standby {
                    crate::ha::Standby::Cold => "cold",
                    crate::ha::Standby::Hot => "hot",
                },
                ha.lease_ttl.as_secs(),
                p.leader.as_deref().unwrap_or("none"),
                if running { "runs" } else { "is not running" }
            ),
        ),
    }
}
