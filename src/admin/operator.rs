//! The operator socket: `relay.sock` in the spool directory, a Unix socket of mode 0600
//! owned by the relay's user; every connection's peer is also checked (SO_PEERCRED): the
//! relay's own user id and root are served, anyone else is refused. `relay spool ...`
//! finds it next to the spool it was pointed at.
//!
//! The routes are in [`super::routes`]; each is answered by [`AdminState`]'s
//! [`SpoolView`] implementation, the same code `relay spool` runs on a stopped spool.

use super::routes;
use super::view::{DeadAction, ExportRange, OperatorError, SpoolView};
use super::AdminState;
use crate::net::server::{self, RespBody};
use crate::spool::DeadId;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

/// The socket's file name in the spool directory.
pub const SOCKET_FILE: &str = "relay.sock";

/// Where the operator socket of the spool in `spool_dir` is.
pub fn socket_path(spool_dir: &Path) -> PathBuf {
    spool_dir.join(SOCKET_FILE)
}

/// Binds the socket in `spool_dir` with mode 0600. A file left there by a relay that
/// died is replaced (the caller holds the spool, so no live relay owns it).
pub fn bind(spool_dir: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(spool_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, path))
}

/// Serves the operator API until `shutdown`, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    state: AdminState,
    shutdown: CancellationToken,
) {
    // SAFETY: geteuid has no preconditions.
    let own_uid = unsafe { libc::geteuid() };
    server::serve_unix(
        listener,
        move |uid| uid == own_uid || uid == 0,
        shutdown,
        move |req| {
            let st = state.clone();
            async move { handle(st, req).await }
        },
    )
    .await;
    let _ = std::fs::remove_file(&path);
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response<RespBody> {
    server::json(status, &serde_json::json!({"error": msg.to_string()}))
}

/// The HTTP answer of an operation's result.
fn answer<T: serde::Serialize>(result: Result<T, OperatorError>) -> Response<RespBody> {
    match result {
        Ok(v) => server::json(StatusCode::OK, &v),
        Err(e @ OperatorError::NotFound(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e @ OperatorError::BadRequest(_)) => error(StatusCode::BAD_REQUEST, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn handle(st: AdminState, req: Request<Incoming>) -> Response<RespBody> {
    let q = query(&req);
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "1" || v == "true");
    let unredacted = flag("unredacted");
    let sink = match q.get("sink").map(|s| (s, crate::spool::sink_name(s))) {
        None => None,
        Some((_, Some(name))) => Some(name),
        Some((s, None)) => return error(StatusCode::BAD_REQUEST, format!("no destination {s:?}")),
    };
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, routes::INSPECT) => answer(st.inspect().await),
        (Method::GET, routes::PEEK) => {
            let n = num("n").unwrap_or(10) as usize;
            answer(st.peek(num("from").unwrap_or(0), n, sink, unredacted).await)
        }
        (Method::GET, routes::EXPORT) => {
            let range = ExportRange {
                from: num("from").unwrap_or(0),
                to: num("to"),
                raw: flag("raw"),
                sink,
                unredacted,
            };
            // A destination that is not configured is an error before the stream starts.
            if let Err(e) = st.check_sink(sink) {
                return error(StatusCode::BAD_REQUEST, e);
            }
            let (mut tx, body) =
                http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
            tokio::task::spawn_blocking(move || {
                let handle = tokio::runtime::Handle::current();
                let mut sink = |chunk: &[u8], _| {
                    handle
                        .block_on(tx.send_data(Bytes::copy_from_slice(chunk)))
                        .is_ok()
                };
                let _ = st.export_blocking(range, &mut sink);
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/x-ndjson")
                .body(body.boxed())
                .expect("valid response")
        }
        (Method::GET, routes::DEAD_LIST) => answer(st.dead_list(sink).await),
        (Method::GET, routes::DEAD_SHOW) => match q.get("id").map(|s| s.parse::<DeadId>()) {
            Some(Ok(id)) => answer(st.dead_show(id, unredacted).await),
            Some(Err(e)) => error(StatusCode::BAD_REQUEST, e),
            None => error(StatusCode::BAD_REQUEST, "id= is required"),
        },
        (Method::POST, path @ (routes::DEAD_RETRY | routes::DEAD_PURGE)) => {
            let ids = match routes::parse_ids(q.get("ids").map(String::as_str).unwrap_or("")) {
                Ok(ids) => ids,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            let action = if path == routes::DEAD_RETRY {
                DeadAction::Retry
            } else {
                DeadAction::Purge
            };
            answer(st.dead_act(action, ids, sink).await)
        }
        _ => error(StatusCode::NOT_FOUND, "no such operator route"),
    }
}
