//! High availability: two (or more) relays, one leader, elected in etcd.
//!
//! Zoom does not resend a WebSocket event that happened while no connection was open, so
//! one relay is a single point of failure. With `RELAY_HA_ETCD_ENDPOINTS` set, relays
//! campaign for one key in etcd, `/<RELAY_HA_NAME>/leader`, created only if absent and
//! attached to the campaigner's lease (etcd's own election recipe; [`etcd`] speaks etcd's
//! v3 API). The holder is the leader while it keeps its lease alive:
//!
//! - **cold** standby (`RELAY_HA_STANDBY=cold`, the default, for relays that share
//!   subscription URLs): only the leader opens Zoom connections; on takeover the new
//!   leader connects, and events emitted in between are lost (the lease time, at most).
//! - **hot** standby (for relays with subscriptions of their own): every relay receives and
//!   spools every event; the leader ships them and publishes how far its deliveries have
//!   gone (`/<name>/delivered`, a receive time); a follower ships none of them, forgets
//!   those the leader has delivered, and on takeover ships what it holds beyond that mark
//!   ([`crate::role`]). A leader that dies, even with its disk, loses nothing.
//!
//! Webhooks are never elected: every relay answers and ships the webhooks it receives.
//!
//! **Fencing.** The lease is renewed every third of its TTL; a relay counts as leader only
//! until the last renewal *sent* plus the TTL less a margin (a quarter of the TTL, at
//! least 1 s), so it stops acting as leader before the lease can expire on the server,
//! whether or not its election task got to run (a process resumed after a pause longer
//! than the lease finds itself a follower at once, and reconnects nothing).
//!
//! **Without quorum** no lease can be renewed: the leader steps down within the TTL and no
//! relay leads until etcd is back. Hot standby loses nothing meanwhile (every relay keeps
//! receiving and spooling; webhooks keep flowing); cold standby loses what Zoom emits while
//! no relay is connected.

pub mod etcd;

use crate::metrics::Metrics;
use crate::role::Role;
use crate::spool::Spool;
use crate::time::now_ms;
use etcd::{Etcd, EtcdError, LeaseId};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Cold or hot standby (`RELAY_HA_STANDBY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Standby {
    Cold,
    Hot,
}

impl Standby {
    pub fn parse(s: &str) -> Option<Standby> {
        match s {
            "cold" => Some(Standby::Cold),
            "hot" => Some(Standby::Hot),
            _ => None,
        }
    }
}

/// The election's settings (`RELAY_HA_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct HaSettings {
    /// `http(s)://host:port` of the etcd members.
    pub endpoints: Vec<String>,
    /// The election's name: the prefix of its keys.
    pub name: String,
    pub lease_ttl: Duration,
    pub standby: Standby,
}

/// What `inspect` and `relay check` show of the election.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HaReport {
    /// `leader`, `follower`, or `no quorum` (etcd does not answer: nobody leads).
    pub role: String,
    pub standby: Standby,
    /// This relay's name in the election (`RELAY_HOSTNAME`).
    pub me: String,
    /// The leader's name, as last read.
    pub leader: Option<String>,
    pub lease_ttl_secs: u64,
    /// When this relay last became leader.
    pub last_takeover_ms: Option<u64>,
    /// Hot standby, as a follower: the leader's delivered mark.
    pub delivered_mark_ms: Option<u64>,
    /// When etcd last answered.
    pub etcd_ok_ms: Option<u64>,
}

/// The relay's part in the election, shared by the election task (which writes it) and the
/// sources and shippers (which read it through [`Role`]).
pub struct Leadership {
    settings: HaSettings,
    /// `RELAY_HOSTNAME`.
    name: String,
    /// `name` and a random instance id: what the leader key holds.
    me: String,
    /// Set while this relay holds the leader key: until when it may act as leader.
    valid_until: Mutex<Option<Instant>>,
    leader: Mutex<Option<String>>,
    mark: AtomicU64,
    last_takeover_ms: AtomicU64,
    etcd_ok_ms: AtomicU64,
    lease: AtomicI64,
    changes: watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

/// Why the election could not start.
#[derive(Debug, thiserror::Error)]
pub enum HaStartError {
    #[error("cannot reach etcd at {endpoints} ({source}): check RELAY_HA_ETCD_ENDPOINTS and that a majority of the etcd members run (unset RELAY_HA_ETCD_ENDPOINTS to run without an election)")]
    Unreachable {
        endpoints: String,
        #[source]
        source: EtcdError,
    },
    #[error("another running relay is registered as {name:?} in the election {election:?}: set RELAY_HOSTNAME to a name of its own on each relay")]
    DuplicateName { name: String, election: String },
}

impl Leadership {
    fn key(&self, what: &str) -> String {
        key(&self.settings.name, what)
    }

    fn ttl_secs(&self) -> u64 {
        self.settings.lease_ttl.as_secs().max(2)
    }

    /// The margin kept before the lease could expire on the server.
    fn margin(&self) -> Duration {
        (self.settings.lease_ttl / 4).max(Duration::from_secs(1))
    }

    fn bump(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    fn set_leader(&self, leader: Option<String>) {
        let mut cur = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if *cur != leader {
            *cur = leader;
            drop(cur);
            self.bump();
        }
    }

    /// Holds the leader key, valid until `until`.
    fn lead_until(&self, until: Instant) {
        let mut v = self.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        let was = v.is_some();
        *v = Some(until);
        drop(v);
        if !was {
            self.last_takeover_ms.store(now_ms(), Ordering::Relaxed);
            self.metrics.ha_leader.set(1);
            tracing::info!(name = %self.name, standby = ?self.settings.standby, "this relay is the leader now");
            self.set_leader(Some(self.me.clone()));
            self.bump();
        }
    }

    fn step_down(&self, why: &str) {
        let was = self
            .valid_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some();
        if was {
            self.metrics.ha_leader.set(0);
            tracing::warn!(name = %self.name, %why, "this relay is no longer the leader");
            self.bump();
        }
    }

    /// The election's state for `inspect` and `relay check`.
    pub fn report(&self) -> HaReport {
        let ok = self.etcd_ok_ms.load(Ordering::Relaxed);
        let quorum =
            ok > 0 && now_ms().saturating_sub(ok) < self.settings.lease_ttl.as_millis() as u64;
        let at = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|v| *v > 0);
        HaReport {
            role: if self.is_leader() {
                "leader"
            } else if quorum {
                "follower"
            } else {
                "no quorum"
            }
            .into(),
            standby: self.settings.standby,
            me: self.name.clone(),
            leader: self
                .leader
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_deref()
                .map(|l| l.split('/').next().unwrap_or(l).to_string()),
            lease_ttl_secs: self.ttl_secs(),
            last_takeover_ms: at(&self.last_takeover_ms),
            delivered_mark_ms: at(&self.mark).filter(|_| self.settings.standby == Standby::Hot),
            etcd_ok_ms: at(&self.etcd_ok_ms),
        }
    }

    pub fn standby(&self) -> Standby {
        self.settings.standby
    }
}

impl Role for Leadership {
    fn is_leader(&self) -> bool {
        self.valid_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }

    fn delivered_up_to_ms(&self) -> Option<u64> {
        Some(self.mark.load(Ordering::Relaxed)).filter(|m| *m > 0)
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The key `what` of the election `election`: `leader`, `delivered`, `members/<hostname>`.
fn key(election: &str, what: &str) -> String {
    format!("/{election}/{what}")
}

/// What `relay check` reads of an election without joining it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The leader's `RELAY_HOSTNAME`, if one leads.
    pub leader: Option<String>,
    /// Whether a live relay is registered under `hostname`.
    pub registered: bool,
}

/// Reads the election `settings` describes as `relay check` shows it: who leads, and
/// whether a relay is registered as `hostname`. An error when etcd does not answer.
pub async fn probe(etcd: &Etcd, settings: &HaSettings, hostname: &str) -> Result<Probe, EtcdError> {
    etcd.ping().await?;
    let leader = etcd
        .get(&key(&settings.name, "leader"))
        .await?
        .map(|kv| kv.value.split('/').next().unwrap_or_default().to_string());
    let registered = etcd
        .get(&key(&settings.name, &format!("members/{hostname}")))
        .await?
        .is_some();
    Ok(Probe { leader, registered })
}

/// Connects to etcd (at most 10 s), registers this relay under its name (refusing a name
/// another live relay holds), and starts the election task, which runs until `stop`.
pub async fn start(
    settings: HaSettings,
    name: &str,
    etcd: Etcd,
    spool: Spool,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<(Arc<Leadership>, tokio::task::JoinHandle<()>), HaStartError> {
    let endpoints = settings.endpoints.join(",");
    let unreachable = |source| HaStartError::Unreachable {
        endpoints: endpoints.clone(),
        source,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match etcd.ping().await {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => return Err(unreachable(e)),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let me = format!("{name}/{:08x}", fastrand::u32(..));
    let (changes, _) = watch::channel(0);
    let l = Arc::new(Leadership {
        settings,
        name: name.to_string(),
        me,
        valid_until: Mutex::new(None),
        leader: Mutex::new(None),
        mark: AtomicU64::new(0),
        last_takeover_ms: AtomicU64::new(0),
        etcd_ok_ms: AtomicU64::new(now_ms()),
        lease: AtomicI64::new(0),
        changes,
        metrics,
    });
    metrics_init(&l);
    let lease = l.register(&etcd).await.map_err(|e| match e {
        Register::Etcd(e) => unreachable(e),
        Register::Taken => HaStartError::DuplicateName {
            name: l.name.clone(),
            election: l.settings.name.clone(),
        },
    })?;
    let task = tokio::spawn(l.clone().run(etcd, spool, lease, stop));
    Ok((l, task))
}

fn metrics_init(l: &Leadership) {
    l.metrics.ha_leader.set(0);
}

enum Register {
    Etcd(EtcdError),
    Taken,
}

/// How often a follower looks at the leader key and the delivered mark, and a leader
/// publishes its mark.
const POLL: Duration = Duration::from_millis(500);
const PUBLISH: Duration = Duration::from_secs(1);

impl Leadership {
    /// Grants a lease and puts `/<name>/members/<hostname>` on it. A key left by this
    /// relay's previous process (its lease not renewed any more) is waited out, for at most
    /// the TTL and 2 s; a key that outlives that belongs to another live relay.
    async fn register(&self, etcd: &Etcd) -> Result<LeaseId, Register> {
        let lease = etcd.grant(self.ttl_secs()).await.map_err(Register::Etcd)?;
        let member = self.key(&format!("members/{}", self.name));
        let deadline = Instant::now() + self.settings.lease_ttl + Duration::from_secs(2);
        loop {
            match etcd
                .create(&member, &self.me, lease)
                .await
                .map_err(Register::Etcd)?
            {
                None => break,
                Some(_) if Instant::now() < deadline => {
                    if let Err(e) = etcd.keep_alive(lease).await {
                        return Err(Register::Etcd(e));
                    }
                    tokio::time::sleep(POLL).await;
                }
                Some(_) => {
                    let _ = etcd.revoke(lease).await;
                    return Err(Register::Taken);
                }
            }
        }
        self.lease.store(lease, Ordering::Relaxed);
        Ok(lease)
    }

    /// The election task: keeps the lease alive, campaigns for the leader key while it is
    /// free, publishes (leader) or reads (follower) the delivered mark, and resigns at `stop`.
    async fn run(
        self: Arc<Self>,
        etcd: Etcd,
        spool: Spool,
        mut lease: LeaseId,
        stop: CancellationToken,
    ) {
        let ttl = self.settings.lease_ttl;
        let renew_every = ttl / 3;
        let mut last_renewal_sent = Instant::now();
        let mut next_renewal = Instant::now() + renew_every;
        let mut next_publish = Instant::now();
        let leader_key = self.key("leader");
        let mark_key = self.key("delivered");
        loop {
            if stop.is_cancelled() {
                break;
            }
            // Renew the lease.
            if Instant::now() >= next_renewal {
                let sent = Instant::now();
                next_renewal = sent + renew_every;
                match etcd.keep_alive(lease).await {
                    Ok(left) if left > 0 => {
                        if last_renewal_sent.elapsed() >= ttl {
                            tracing::info!("etcd answers again: the election lease is renewed");
                        }
                        last_renewal_sent = sent;
                        self.etcd_ok_ms.store(now_ms(), Ordering::Relaxed);
                        if self
                            .valid_until
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .is_some()
                        {
                            self.lead_until(sent + ttl - self.margin());
                        }
                    }
                    Ok(_) => {
                        self.step_down("its lease expired (the relay or etcd was unreachable for longer than RELAY_HA_LEASE_TTL_SECS)");
                        lease = match self.regrant(&etcd, &stop).await {
                            Some(l) => l,
                            None => break,
                        };
                        last_renewal_sent = Instant::now();
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot renew the election lease in etcd; retrying");
                        next_renewal = Instant::now() + Duration::from_millis(500).min(renew_every);
                    }
                }
            }
            // The fence: past this, the server may have let the lease go.
            if last_renewal_sent.elapsed() + self.margin() >= ttl {
                self.step_down("the election lease could not be renewed in time (etcd unreachable or without quorum)");
            }
            // Campaign, or follow.
            let leading = self
                .valid_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some();
            if !leading && last_renewal_sent.elapsed() + self.margin() < ttl {
                match etcd.create(&leader_key, &self.me, lease).await {
                    Ok(None) => self.lead_until(last_renewal_sent + ttl - self.margin()),
                    // Still ours: the lease outlived a time without quorum (etcd extends
                    // every lease when it elects a new raft leader), so did the key. Found
                    // by tests/ha.rs `hot_without_quorum_for_20_s_loses_nothing`: without
                    // this, nobody led again after quorum came back.
                    Ok(Some(kv)) if kv.value == self.me && kv.lease == lease => {
                        self.etcd_ok_ms.store(now_ms(), Ordering::Relaxed);
                        self.lead_until(last_renewal_sent + ttl - self.margin());
                    }
                    Ok(Some(kv)) => {
                        self.etcd_ok_ms.store(now_ms(), Ordering::Relaxed);
                        self.set_leader(Some(kv.value).filter(|v| !v.is_empty()));
                    }
                    Err(_) => {}
                }
            }
            if self.settings.standby == Standby::Hot && Instant::now() >= next_publish {
                next_publish = Instant::now() + PUBLISH;
                if self.is_leader() {
                    let mark = spool.delivered_mark_ms().to_string();
                    let _ = etcd.put_if(&leader_key, &self.me, &mark_key, &mark).await;
                } else if let Ok(Some(kv)) = etcd.get(&mark_key).await {
                    let mark: u64 = kv.value.parse().unwrap_or(0);
                    if mark != self.mark.swap(mark, Ordering::Relaxed) {
                        self.bump();
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        // Resign: the follower takes over at once instead of after the TTL.
        self.step_down("shutting down");
        let _ = etcd.delete_if(&leader_key, &self.me).await;
        let _ = etcd.revoke(lease).await;
    }

    /// A new lease after the old one expired, re-registered; `None` at `stop`.
    async fn regrant(&self, etcd: &Etcd, stop: &CancellationToken) -> Option<LeaseId> {
        loop {
            match self.register(etcd).await {
                Ok(l) => return Some(l),
                Err(Register::Taken) => {
                    tracing::error!(name = %self.name, "another relay registered under this relay's name while its lease had expired: set RELAY_HOSTNAME to a name of its own on each relay")
                }
                Err(Register::Etcd(e)) => {
                    tracing::warn!(error = %e, "cannot renew the election lease in etcd; retrying")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
