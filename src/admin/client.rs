//! Clients of the admin surfaces: [`OperatorClient`] speaks HTTP/1.1 over the operator
//! socket (the `relay spool ...` commands while the daemon runs; it is a
//! [`super::SpoolView`]), [`ready`] asks the TCP endpoint's `/readyz` (`relay health`,
//! container health checks).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::report::{DeadDetail, InspectReport, PeekRecord};
use super::routes;
use super::view::{DeadAction, ExportRange, ExportSink, OperatorError, SpoolView};
use crate::spool::{DeadId, DeadSummary};

/// The operator API of a running relay, through its socket.
pub struct OperatorClient {
    socket: PathBuf,
}

impl OperatorClient {
    pub fn new(socket: &Path) -> OperatorClient {
        OperatorClient {
            socket: socket.to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and returns the response with its body still to read.
    async fn request(
        &self,
        method: Method,
        path_and_query: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, OperatorError> {
        let unreachable = |e: std::io::Error| {
            let hint = match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    " (run the command as the relay's user or as root)"
                }
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    " (is the relay running, and is it this version?)"
                }
                _ => "",
            };
            OperatorError::Unreachable(format!(
                "cannot reach the relay's operator socket {}: {e}{hint}",
                self.socket.display()
            ))
        };
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::UnixStream::connect(&self.socket),
        )
        .await
        .map_err(|_| unreachable(std::io::ErrorKind::TimedOut.into()))?
        .map_err(unreachable)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| OperatorError::Unreachable(e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", "relay")
            .body(Empty::<Bytes>::new())
            .map_err(|e| OperatorError::Server(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| {
            OperatorError::Unreachable(format!("the relay closed the connection: {e}"))
        })?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            s => {
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let message = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
                Err(if s == StatusCode::NOT_FOUND {
                    OperatorError::NotFound(message)
                } else if s == StatusCode::BAD_REQUEST {
                    OperatorError::BadRequest(message)
                } else {
                    OperatorError::Server(format!("HTTP {}: {message}", s.as_u16()))
                })
            }
        }
    }

    async fn json<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<T, OperatorError> {
        let call = async {
            let resp = self.request(method, path_and_query).await?;
            let body = resp.into_body().collect().await.map_err(|e| {
                OperatorError::Unreachable(format!("the answer was cut short: {e}"))
            })?;
            serde_json::from_slice(&body.to_bytes())
                .map_err(|e| OperatorError::Server(format!("unexpected answer: {e}")))
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| OperatorError::Unreachable(format!("no answer within {timeout:?}")))?
    }

    /// GET a JSON document.
    pub async fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, OperatorError> {
        self.json(Method::GET, path, Duration::from_secs(30)).await
    }

    /// POST, expecting JSON back.
    pub async fn post<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, OperatorError> {
        self.json(Method::POST, path, Duration::from_secs(300))
            .await
    }

    /// Streams an NDJSON answer (`/spool/export`) into `sink`; returns the lines written.
    pub async fn stream(
        &self,
        path: &str,
        sink: &mut ExportSink<'_>,
    ) -> Result<u64, OperatorError> {
        let mut body = self.request(Method::GET, path).await?.into_body();
        let mut lines = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                OperatorError::Unreachable(format!("the export was cut short: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                let n = data.iter().filter(|&&b| b == b'\n').count() as u64;
                lines += n;
                if !sink(&data, n) {
                    break;
                }
            }
        }
        Ok(lines)
    }
}

/// Whether the relay at `addr` says ready on `/readyz`.
pub(crate) async fn ready(addr: std::net::SocketAddr) -> Result<bool, String> {
    let http = crate::net::http::HttpClient::new(None).map_err(|e| e.to_string())?;
    let req = Request::builder()
        .uri(format!("http://{addr}/readyz"))
        .body(crate::net::http::Body::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let reply = http
        .send(req, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply.status.is_success())
}

impl SpoolView for OperatorClient {
    async fn inspect(&self) -> Result<InspectReport, OperatorError> {
        self.get(routes::INSPECT).await
    }

    async fn peek(
        &self,
        from: u64,
        n: usize,
        sink: Option<&'static str>,
        unredacted: bool,
    ) -> Result<Vec<PeekRecord>, OperatorError> {
        self.get(&routes::peek(from, n, sink, unredacted)).await
    }

    async fn export(
        &self,
        range: ExportRange,
        sink: &mut ExportSink<'_>,
    ) -> Result<u64, OperatorError> {
        self.stream(&routes::export(range), sink).await
    }

    async fn dead_list(
        &self,
        sink: Option<&'static str>,
    ) -> Result<Vec<DeadSummary>, OperatorError> {
        self.get(&routes::dead_list(sink)).await
    }

    async fn dead_show(&self, id: DeadId, unredacted: bool) -> Result<DeadDetail, OperatorError> {
        self.get(&routes::dead_show(id, unredacted)).await
    }

    async fn dead_act(
        &self,
        action: DeadAction,
        ids: Option<Vec<DeadId>>,
        sink: Option<&'static str>,
    ) -> Result<Vec<DeadId>, OperatorError> {
        self.post(&routes::dead_act(action, ids.as_deref(), sink))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon that cannot be asked is never mistaken for "no such dead letter".
    #[tokio::test]
    async fn an_unreachable_daemon_is_not_a_missing_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let client = OperatorClient::new(&dir.path().join("relay.sock"));
        let id: DeadId = "event:1".parse().unwrap();
        match client.dead_show(id, false).await {
            Err(OperatorError::Unreachable(m)) => assert!(m.contains("relay.sock"), "{m}"),
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }
}
