//! The operator socket: `relay.sock` in the spool directory, a Unix socket of mode 0600
//! owned by the relay's user; every connection's peer is also checked (SO_PEERCRED): the
//! relay's own user id and root are served, anyone else is refused. `relay spool ...`
//! finds it next to the spool it was pointed at.
//!
//! | route                                    | what                                   |
//! |------------------------------------------|----------------------------------------|
//! | `GET /spool/inspect`                     | [`InspectReport`] as JSON              |
//! | `GET /spool/peek?n=&from=`               | pending records as [`PeekRecord`]s     |
//! | `GET /spool/export?from=&to=&raw=`       | pending records as NDJSON (streamed)   |
//! | `GET /spool/dead`                        | the dead-letter list                   |
//! | `GET /spool/dead/show?id=`               | one dead letter as [`DeadDetail`]      |
//! | `POST /spool/dead/retry?ids=`, `.../purge?ids=` | `ids=all` or a comma list       |
//!
//! [`InspectReport`]: super::InspectReport
//! [`PeekRecord`]: super::PeekRecord
//! [`DeadDetail`]: super::DeadDetail

use super::report::{export, parse_ids, peek_record, DeadDetail};
use super::AdminState;
use crate::net::server::{self, RespBody};
use crate::ship::hec::Encoder;
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// A blocking spool call's result as a JSON response.
fn answer<T: serde::Serialize, E: std::fmt::Display>(
    result: Option<Result<T, E>>,
) -> Response<RespBody> {
    match result {
        Some(Ok(v)) => server::json(StatusCode::OK, &v),
        Some(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "the operation panicked"),
    }
}

async fn handle(st: AdminState, req: Request<Incoming>) -> Response<RespBody> {
    let q = query(&req);
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let spool = st.spool.clone();
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/spool/inspect") => match blocking(move || st.inspect()).await {
            Some(r) => server::json(StatusCode::OK, &r),
            None => error(StatusCode::INTERNAL_SERVER_ERROR, "inspect failed"),
        },
        (Method::GET, "/spool/peek") => {
            let n = num("n").unwrap_or(10) as usize;
            let from = num("from").unwrap_or(0);
            answer(
                blocking(move || {
                    spool
                        .pending(from, n, None)
                        .map(|recs| recs.iter().map(peek_record).collect::<Vec<_>>())
                })
                .await,
            )
        }
        (Method::GET, "/spool/export") => {
            let (from, to) = (num("from").unwrap_or(0), num("to"));
            let raw = q.get("raw").is_some_and(|v| v == "1" || v == "true");
            let (mut tx, body) =
                http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
            let hec = st.hec.clone();
            tokio::task::spawn_blocking(move || {
                let mut encoder = (!raw).then(|| Encoder::new(hec));
                let handle = tokio::runtime::Handle::current();
                let _ = export(&spool, encoder.as_mut(), from, to, |chunk, _| {
                    handle.block_on(tx.send_data(Bytes::from(chunk))).is_ok()
                });
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/x-ndjson")
                .body(body.boxed())
                .expect("valid response")
        }
        (Method::GET, "/spool/dead") => answer(blocking(move || spool.dead_list()).await),
        (Method::GET, "/spool/dead/show") => {
            let id: DeadId = match q.get("id").map(|s| s.parse()) {
                Some(Ok(id)) => id,
                Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
                None => return error(StatusCode::BAD_REQUEST, "id= is required"),
            };
            match blocking(move || spool.dead_get(id)).await {
                Some(Ok(Some(d))) => server::json(StatusCode::OK, &DeadDetail::from(&d)),
                Some(Ok(None)) => error(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
                Some(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
                None => error(StatusCode::INTERNAL_SERVER_ERROR, "lookup failed"),
            }
        }
        (Method::POST, path @ ("/spool/dead/retry" | "/spool/dead/purge")) => {
            let ids = match parse_ids(q.get("ids").map(String::as_str).unwrap_or("")) {
                Ok(ids) => ids,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            let retry = path.ends_with("retry");
            answer(
                blocking(move || {
                    if retry {
                        spool.dead_retry(ids.as_deref())
                    } else {
                        spool.dead_purge(ids.as_deref())
                    }
                })
                .await,
            )
        }
        _ => error(StatusCode::NOT_FOUND, "no such operator route"),
    }
}
