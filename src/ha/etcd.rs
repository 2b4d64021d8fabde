//! [`Etcd`]: the etcd v3 calls the election needs (leases, a transaction that creates a key
//! only if it is absent, reads, puts, deletes), through etcd's own JSON gateway
//! (`POST /v3/...`, documented at etcd.io, "gRPC gateway"), over the relay's HTTP client.
//!
//! Why not a gRPC client crate: `etcd-client` and `etcd-rs` generate their code with
//! `protoc` at build time, which a fresh machine does not have (the project's two-command
//! set-up forbids extra system packages). The gateway is the same API, served by every
//! etcd since 3.4; consensus, leases and linearizable transactions are etcd's, not ours.
//!
//! Keys and values are base64 in the gateway's JSON; 64-bit integers come back as strings.
//! Several endpoints: a call tries them in turn, starting with the last that answered.

use crate::net::http::{Body, HttpClient};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An etcd lease id.
pub type LeaseId = i64;

/// Why an etcd call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered (down, unreachable, or without quorum for the call's timeout).
    #[error("no etcd endpoint answered ({0})")]
    Unavailable(String),
    /// An endpoint answered with an error.
    #[error("etcd answered HTTP {status}: {message}")]
    Refused { status: u16, message: String },
}

/// One key as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub value: String,
    pub lease: LeaseId,
    pub create_revision: i64,
}

/// A client of one etcd cluster.
#[derive(Clone)]
pub struct Etcd {
    http: HttpClient,
    endpoints: std::sync::Arc<[String]>,
    /// The endpoint that answered last.
    preferred: std::sync::Arc<AtomicUsize>,
    timeout: Duration,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A gateway integer (a string, or absent for 0).
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

#[derive(Deserialize)]
struct RawKv {
    #[serde(default)]
    value: String,
    #[serde(default)]
    lease: Value,
    #[serde(default)]
    create_revision: Value,
}

impl From<&RawKv> for Kv {
    fn from(k: &RawKv) -> Kv {
        Kv {
            value: unb64(&k.value),
            lease: int(&k.lease),
            create_revision: int(&k.create_revision),
        }
    }
}

impl Etcd {
    /// A client of the cluster at `endpoints` (`http://host:port`), each call bounded by
    /// `timeout` per endpoint.
    pub fn new(http: HttpClient, endpoints: &[String], timeout: Duration) -> Etcd {
        Etcd {
            http,
            endpoints: endpoints.to_vec().into(),
            preferred: Default::default(),
            timeout,
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let url = format!("{}{path}", self.endpoints[idx].trim_end_matches('/'));
            let req = hyper::Request::post(&url)
                .header("content-type", "application/json")
                .body(Body::new(Bytes::from(body.to_string())))
                .map_err(|e| EtcdError::Unavailable(e.to_string()))?;
            match self.http.send(req, self.timeout).await {
                Ok(reply) if reply.status.is_success() => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    // A streaming call (keepalive) answers `{"result": ...}`.
                    let v: Value = serde_json::from_slice(&reply.body)
                        .map_err(|e| EtcdError::Unavailable(format!("{url}: {e}")))?;
                    return Ok(v.get("result").cloned().unwrap_or(v));
                }
                Ok(reply) => {
                    let message = reply.excerpt(300);
                    // Unavailable (no leader, no quorum): another member may do better.
                    if reply.status.as_u16() == 503 || message.contains("Unavailable") {
                        errors.push(format!("{url}: {message}"));
                        continue;
                    }
                    return Err(EtcdError::Refused {
                        status: reply.status.as_u16(),
                        message,
                    });
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        Err(EtcdError::Unavailable(errors.join("; ")))
    }

    /// Whether the cluster answers a linearizable read (it has a quorum).
    pub async fn ping(&self) -> Result<(), EtcdError> {
        self.get("/qss-relay-ping").await.map(|_| ())
    }

    /// A new lease of `ttl` seconds.
    pub async fn grant(&self, ttl: u64) -> Result<LeaseId, EtcdError> {
        let v = self.call("/v3/lease/grant", json!({"TTL": ttl})).await?;
        match int(&v["ID"]) {
            0 => Err(EtcdError::Unavailable(format!("no lease granted: {v}"))),
            id => Ok(id),
        }
    }

    /// Renews `lease`; its remaining TTL in seconds (0: it expired and is gone).
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", json!({"ID": lease.to_string()}))
            .await?;
        Ok(int(&v["TTL"]))
    }

    pub async fn revoke(&self, lease: LeaseId) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({"ID": lease.to_string()}))
            .await
            .map(|_| ())
    }

    /// Creates `key` = `value` attached to `lease` if the key does not exist. Returns
    /// `Ok(None)` when it was created, or the key as it is when it already existed.
    pub async fn create(
        &self,
        key: &str,
        value: &str,
        lease: LeaseId,
    ) -> Result<Option<Kv>, EtcdError> {
        let k = b64(key);
        let v = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": k, "target": "CREATE", "create_revision": "0"}],
                    "success": [{"request_put": {"key": k, "value": b64(value), "lease": lease.to_string()}}],
                    "failure": [{"request_range": {"key": k}}],
                }),
            )
            .await?;
        if v["succeeded"].as_bool() == Some(true) {
            return Ok(None);
        }
        let kvs = &v["responses"][0]["response_range"]["kvs"];
        let existing: Vec<RawKv> = serde_json::from_value(kvs.clone()).unwrap_or_default();
        // Gone between the compare and the read: report it as held by nobody.
        Ok(existing.first().map(Kv::from).or(Some(Kv {
            value: String::new(),
            lease: 0,
            create_revision: 0,
        })))
    }

    /// Puts `key` = `value` if `guard` holds `guard_value` (the leader writing while it is
    /// the leader). Returns whether it did.
    pub async fn put_if(
        &self,
        guard: &str,
        guard_value: &str,
        key: &str,
        value: &str,
    ) -> Result<bool, EtcdError> {
        let v = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": b64(guard), "target": "VALUE", "value": b64(guard_value)}],
                    "success": [{"request_put": {"key": b64(key), "value": b64(value)}}],
                }),
            )
            .await?;
        Ok(v["succeeded"].as_bool() == Some(true))
    }

    /// Deletes `key` if it holds `value`. Returns whether it did.
    pub async fn delete_if(&self, key: &str, value: &str) -> Result<bool, EtcdError> {
        let k = b64(key);
        let v = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{"key": k, "target": "VALUE", "value": b64(value)}],
                    "success": [{"request_delete_range": {"key": k}}],
                }),
            )
            .await?;
        Ok(v["succeeded"].as_bool() == Some(true))
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self.call("/v3/kv/range", json!({"key": b64(key)})).await?;
        let kvs: Vec<RawKv> = serde_json::from_value(v["kvs"].clone()).unwrap_or_default();
        Ok(kvs.first().map(Kv::from))
    }
}
