//! The TCP admin endpoint (`RELAY_ADMIN_ADDR`): `/metrics`, `/healthz`, `/readyz`, and
//! nothing else. The spool's routes live on the operator socket ([`super::operator`]).
//!
//! Browsers are kept out even when it listens on 127.0.0.1: a request with an `Origin`
//! header (every cross-site fetch or form post carries one) is refused, and so is a `Host`
//! that is neither an IP address, `localhost`, nor listed in `RELAY_ADMIN_ALLOWED_HOSTS`
//! (a DNS-rebinding page sends its own domain name there).

use super::AdminState;
use crate::net::server::{self, RespBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the endpoint until `shutdown`. `allowed_hosts`: host names accepted in `Host`
/// besides IP addresses and `localhost`.
pub(crate) async fn serve(
    listener: TcpListener,
    state: AdminState,
    allowed_hosts: Vec<String>,
    shutdown: CancellationToken,
) {
    let allowed = Arc::new(allowed_hosts);
    server::serve(listener, None, shutdown, move |req| {
        let (st, allowed) = (state.clone(), allowed.clone());
        async move { handle(&st, &allowed, req) }
    })
    .await;
}

/// Whether `host` (a `Host` header: name or address, with or without a port) names this
/// machine by address, as `localhost`, or as one of `allowed`.
pub(crate) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.parse::<hyper::http::uri::Authority>() {
        Ok(a) => a.host().to_string(),
        Err(_) => return false,
    };
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok()
        || bare.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(bare))
}

fn forbidden(why: &str) -> Response<RespBody> {
    server::text(StatusCode::FORBIDDEN, format!("{why}\n"))
}

fn handle(st: &AdminState, allowed: &[String], req: Request<Incoming>) -> Response<RespBody> {
    if req.headers().contains_key(hyper::header::ORIGIN) {
        return forbidden("requests from web pages are refused (Origin header)");
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if let Some(h) = host {
        if !host_allowed(&h, allowed) {
            return forbidden(
                "unknown Host: use an IP address or localhost, or add the name to RELAY_ADMIN_ALLOWED_HOSTS",
            );
        }
    }
    if req.method() != Method::GET {
        return server::text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => {
            st.refresh_gauges();
            server::full(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                st.metrics.render(),
            )
        }
        "/healthz" => server::text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if st.ready.load(Ordering::SeqCst) {
                server::text(StatusCode::OK, "ready\n")
            } else {
                server::text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
            }
        }
        _ => server::text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz (the spool's state is on the operator socket: `relay spool inspect`)\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts_by_address_localhost_or_listed_are_allowed() {
        let listed = vec!["relay.internal".to_string()];
        for ok in [
            "127.0.0.1:9464",
            "127.0.0.1",
            "[::1]:9464",
            "localhost:9464",
            "LOCALHOST",
            "10.1.2.3:9464",
            "relay.internal:9464",
        ] {
            assert!(host_allowed(ok, &listed), "{ok}");
        }
        for bad in ["evil.example:9464", "127.0.0.1.evil.example", "", "a b"] {
            assert!(!host_allowed(bad, &listed), "{bad}");
        }
    }
}
