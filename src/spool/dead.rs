//! The dead-letter area: what the relay could not deliver and will not retry by itself.
//!
//! Two kinds of entries live here, each under a key `kind byte | id (u64 BE)`:
//! - **event**: one event LogScale refused (a 400 or another non-retryable 4xx, isolated by
//!   bisecting the batch), with the response text as the reason. `relay spool dead retry`
//!   puts it back into the spool as a new record.
//! - **block**: a spool block that failed its checksum or did not decode, kept byte for byte
//!   with the reason, so that nothing is silently discarded and the shipper never sticks.
//!
//! Entry value: `version u8 | kind u8 | at_ms u64 | seq u64 | received_ms u64 |
//! source u8 | flags u8 | reason_len u32 | reason | payload` (LE).

use super::record::SourceKind;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

const ENTRY_VERSION: u8 = 1;
const ENTRY_HEADER_LEN: usize = 1 + 1 + 8 + 8 + 8 + 1 + 1 + 4;

/// Which kind of dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadKind {
    /// One event that LogScale refused.
    Event,
    /// A spool block that could not be decoded.
    Block,
}

impl DeadKind {
    fn tag(self) -> u8 {
        match self {
            DeadKind::Event => b'e',
            DeadKind::Block => b'b',
        }
    }
    fn from_tag(t: u8) -> Option<DeadKind> {
        match t {
            b'e' => Some(DeadKind::Event),
            b'b' => Some(DeadKind::Block),
            _ => None,
        }
    }
}

/// Names a dead letter: `event:SEQ` or `block:FIRST_SEQ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeadId {
    pub kind_tag: u8,
    pub seq: u64,
}

impl DeadId {
    pub fn new(kind: DeadKind, seq: u64) -> DeadId {
        DeadId {
            kind_tag: kind.tag(),
            seq,
        }
    }
    pub fn kind(&self) -> Option<DeadKind> {
        DeadKind::from_tag(self.kind_tag)
    }
    pub fn key(&self) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = self.kind_tag;
        k[1..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }
    pub fn from_key(key: &[u8]) -> Option<DeadId> {
        if key.len() != 9 {
            return None;
        }
        DeadKind::from_tag(key[0])?;
        Some(DeadId {
            kind_tag: key[0],
            seq: u64::from_be_bytes(key[1..].try_into().ok()?),
        })
    }
}

impl fmt::Display for DeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind() {
            Some(DeadKind::Event) => "event",
            Some(DeadKind::Block) => "block",
            None => "unknown",
        };
        write!(f, "{kind}:{}", self.seq)
    }
}

impl FromStr for DeadId {
    type Err = String;
    fn from_str(s: &str) -> Result<DeadId, String> {
        let (kind, seq) = s
            .split_once(':')
            .ok_or_else(|| format!("expected `event:SEQ` or `block:SEQ`, got {s:?}"))?;
        let kind = match kind {
            "event" => DeadKind::Event,
            "block" => DeadKind::Block,
            _ => return Err(format!("expected `event:SEQ` or `block:SEQ`, got {s:?}")),
        };
        let seq = seq
            .parse()
            .map_err(|_| format!("{seq:?} is not a sequence number"))?;
        Ok(DeadId::new(kind, seq))
    }
}

impl Serialize for DeadId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeadId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DeadId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One dead letter with its payload (the event as received, or the raw block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: DeadId,
    pub kind: DeadKind,
    pub at_ms: u64,
    pub received_ms: u64,
    pub source: Option<SourceKind>,
    pub flags: u8,
    pub reason: String,
    pub payload: Bytes,
}

/// A dead letter without its payload, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadSummary {
    pub id: DeadId,
    pub kind: DeadKind,
    pub at_ms: u64,
    pub received_ms: u64,
    pub source: Option<SourceKind>,
    pub bytes: usize,
    pub reason: String,
    /// The destinations that refused the event (for entries of one that names them; a
    /// retry sends it to these only). Empty: every destination (and corrupt blocks).
    #[serde(default)]
    pub destinations: Vec<String>,
}

impl DeadLetter {
    pub fn summary(&self) -> DeadSummary {
        DeadSummary {
            id: self.id,
            kind: self.kind,
            at_ms: self.at_ms,
            received_ms: self.received_ms,
            source: self.source,
            bytes: self.payload.len(),
            reason: self.reason.clone(),
            destinations: super::record::targets_of(self.flags)
                .unwrap_or_default()
                .into_iter()
                .map(str::to_string)
                .collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let reason = self.reason.as_bytes();
        let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + reason.len() + self.payload.len());
        out.push(ENTRY_VERSION);
        out.push(self.kind.tag());
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.extend_from_slice(&self.id.seq.to_le_bytes());
        out.extend_from_slice(&self.received_ms.to_le_bytes());
        out.push(self.source.map_or(0, SourceKind::as_u8));
        out.push(self.flags);
        out.extend_from_slice(&(reason.len() as u32).to_le_bytes());
        out.extend_from_slice(reason);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes an entry; `None` if it is not one (the dead area is never trusted blindly).
    pub fn decode(bytes: &[u8]) -> Option<DeadLetter> {
        if bytes.len() < ENTRY_HEADER_LEN || bytes[0] != ENTRY_VERSION {
            return None;
        }
        let kind = DeadKind::from_tag(bytes[1])?;
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let reason_len = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes")) as usize;
        let reason_end = ENTRY_HEADER_LEN
            .checked_add(reason_len)
            .filter(|&e| e <= bytes.len())?;
        Some(DeadLetter {
            id: DeadId::new(kind, u64_at(10)),
            kind,
            at_ms: u64_at(2),
            received_ms: u64_at(18),
            source: SourceKind::from_u8(bytes[26]),
            flags: bytes[27],
            reason: String::from_utf8_lossy(&bytes[ENTRY_HEADER_LEN..reason_end]).into_owned(),
            payload: Bytes::copy_from_slice(&bytes[reason_end..]),
        })
    }
}

use super::generation::{seq_of, Gen};
use super::record::{flags, sink_bit};
use super::{NewRecord, Record, Spool, SpoolError, MAX_GROUP_RECORDS};
use crate::metrics::label;
use crate::time::now_ms;

/// The dead-letter area's operations: moving refused events and undecodable blocks in,
/// listing, showing, retrying and purging them.
impl Spool {
    /// Moves an undecodable block into the dead-letter area, bytes and reason, and out of
    /// its generation.
    pub(super) fn dead_letter_block(
        &self,
        gen: &Gen,
        k: &[u8],
        v: &[u8],
        reason: String,
    ) -> Result<(), SpoolError> {
        let i = &self.inner;
        let seq = seq_of(k).unwrap_or(0);
        let entry = DeadLetter {
            id: DeadId::new(DeadKind::Block, seq),
            kind: DeadKind::Block,
            at_ms: now_ms(),
            received_ms: 0,
            source: None,
            flags: 0,
            reason: reason.clone(),
            payload: bytes::Bytes::copy_from_slice(v),
        };
        let result = i
            .dead
            .insert(entry.id.key(), entry.encode())
            .map_err(|e| self.db_err(e))
            .and_then(|_| self.sync_state(true))
            .and_then(|_| gen.remove_raw(k).map_err(|e| self.db_err(e)));
        {
            let mut st = self.state();
            if let Some(m) = st.blocks.remove(&seq) {
                st.stored_bytes -= u64::from(m.stored_len);
            }
            st.dead_blocks += 1;
        }
        i.metrics
            .events_dead_lettered
            .get_or_create(&label("reason", "corrupt_block"))
            .inc();
        tracing::error!(
            block = seq,
            bytes = v.len(),
            %reason,
            "corrupt spool block moved to the dead-letter area (see `relay spool dead list`); shipping goes on with the next block"
        );
        result
    }

    /// Moves events the destination `sink` refused to the dead-letter area, marked as
    /// that destination's (a retry sends them to it only; an event two destinations refused
    /// is one entry marked for both). The caller acknowledges them for `sink` afterwards,
    /// like delivered ones.
    pub fn dead_letter_events(
        &self,
        sink: &str,
        events: &[(Record, String)],
    ) -> Result<(), SpoolError> {
        let i = &self.inner;
        for (r, reason) in events {
            let id = DeadId::new(DeadKind::Event, r.seq);
            let earlier = self.dead_get(id)?.map_or(0, |d| d.flags & flags::TARGETS);
            let entry = DeadLetter {
                id,
                kind: DeadKind::Event,
                at_ms: now_ms(),
                received_ms: r.received_ms,
                source: Some(r.kind),
                flags: (r.flags & !flags::TARGETS) | earlier | sink_bit(sink),
                reason: reason.clone(),
                payload: r.payload.clone(),
            };
            let previous = i
                .dead
                .insert(entry.id.key(), entry.encode())
                .map_err(|e| self.db_err(e))?;
            if previous.is_none() {
                self.state().dead_events += 1;
            }
            i.metrics
                .events_dead_lettered
                .get_or_create(&label("reason", "rejected"))
                .inc();
            if let Some(name) = super::sink_name(sink) {
                i.metrics
                    .ship_dead_lettered
                    .get_or_create(&label("sink", name))
                    .inc();
            }
        }
        self.sync_state(true)
    }

    /// Every dead letter, oldest first (without payloads).
    pub fn dead_list(&self) -> Result<Vec<DeadSummary>, SpoolError> {
        let mut out = Vec::new();
        for item in self.inner.dead.iter() {
            let (_, v) = item.map_err(|e| self.db_err(e))?;
            if let Some(d) = DeadLetter::decode(&v) {
                out.push(d.summary());
            }
        }
        out.sort_by_key(|d| (d.at_ms, d.id));
        Ok(out)
    }

    pub fn dead_get(&self, id: DeadId) -> Result<Option<DeadLetter>, SpoolError> {
        let v = self.inner.dead.get(id.key()).map_err(|e| self.db_err(e))?;
        Ok(v.and_then(|v| DeadLetter::decode(&v)))
    }

    /// Puts dead-lettered events back into the spool as new records (new sequence
    /// numbers) and removes them from the dead-letter area. Corrupt blocks cannot be
    /// retried and are skipped. `ids = None` means all. Returns the retried ids.
    ///
    /// With `sink`, only entries that concern that destination are taken, the new records
    /// go to it alone, and an entry another destination also refused stays listed for
    /// that one.
    pub fn dead_retry(
        &self,
        ids: Option<&[DeadId]>,
        sink: Option<&str>,
    ) -> Result<Vec<DeadId>, SpoolError> {
        let events: Vec<DeadLetter> = self
            .dead_select(ids, sink)?
            .into_iter()
            .filter(|d| d.kind == DeadKind::Event)
            .collect();
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<NewRecord> = events
            .iter()
            .map(|d| NewRecord {
                received_ms: d.received_ms,
                kind: d.source.unwrap_or(SourceKind::WebSocket),
                flags: match sink {
                    Some(s) => (d.flags & !flags::TARGETS) | sink_bit(s),
                    None => d.flags,
                },
                payload: d.payload.clone(),
            })
            .collect();
        for chunk in records.chunks(MAX_GROUP_RECORDS) {
            self.commit(chunk)?;
        }
        self.dead_release(&events, sink)?;
        Ok(events.iter().map(|d| d.id).collect())
    }

    /// Deletes dead letters for good. `ids = None` means all. Returns the purged ids.
    /// With `sink`, only that destination lets go of them: an entry another destination
    /// also refused stays listed for that one.
    pub fn dead_purge(
        &self,
        ids: Option<&[DeadId]>,
        sink: Option<&str>,
    ) -> Result<Vec<DeadId>, SpoolError> {
        let entries = self.dead_select(ids, sink)?;
        self.dead_release(&entries, sink)?;
        Ok(entries.iter().map(|d| d.id).collect())
    }

    /// The target bits a dead letter stands for: its own, or (none: every destination)
    /// those of the destinations the spool tracks.
    fn dead_targets(&self, d: &DeadLetter) -> u8 {
        match d.flags & flags::TARGETS {
            0 => self.sinks().iter().fold(0, |bits, s| bits | sink_bit(s)),
            t => t,
        }
    }

    /// Removes `entries` for `sink` (for every destination when `None`): an entry still
    /// held by another destination is rewritten with that one's bit only.
    fn dead_release(&self, entries: &[DeadLetter], sink: Option<&str>) -> Result<(), SpoolError> {
        let mut gone = Vec::new();
        for d in entries {
            let left = match sink {
                Some(s) => self.dead_targets(d) & !sink_bit(s),
                None => 0,
            };
            if left == 0 {
                gone.push(d.id);
                continue;
            }
            let kept = DeadLetter {
                flags: (d.flags & !flags::TARGETS) | left,
                ..d.clone()
            };
            self.inner
                .dead
                .insert(kept.id.key(), kept.encode())
                .map_err(|e| self.db_err(e))?;
        }
        self.dead_remove(&gone)
    }

    /// The entries `ids` (all when `None`) that concern `sink` (any destination when
    /// `None`).
    fn dead_select(
        &self,
        ids: Option<&[DeadId]>,
        sink: Option<&str>,
    ) -> Result<Vec<DeadLetter>, SpoolError> {
        let mut all = self.dead_entries(ids)?;
        if let Some(s) = sink {
            all.retain(|d| self.dead_targets(d) & sink_bit(s) != 0);
        }
        Ok(all)
    }

    fn dead_entries(&self, ids: Option<&[DeadId]>) -> Result<Vec<DeadLetter>, SpoolError> {
        match ids {
            Some(ids) => {
                let mut out = Vec::new();
                for id in ids {
                    if let Some(d) = self.dead_get(*id)? {
                        out.push(d);
                    }
                }
                Ok(out)
            }
            None => {
                let mut out = Vec::new();
                for item in self.inner.dead.iter() {
                    let (_, v) = item.map_err(|e| self.db_err(e))?;
                    out.extend(DeadLetter::decode(&v));
                }
                Ok(out)
            }
        }
    }

    fn dead_remove(&self, ids: &[DeadId]) -> Result<(), SpoolError> {
        for id in ids {
            if self
                .inner
                .dead
                .remove(id.key())
                .map_err(|e| self.db_err(e))?
                .is_some()
            {
                let mut st = self.state();
                match id.kind() {
                    Some(DeadKind::Event) => st.dead_events = st.dead_events.saturating_sub(1),
                    Some(DeadKind::Block) => st.dead_blocks = st.dead_blocks.saturating_sub(1),
                    None => {}
                }
            }
        }
        self.sync_state(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_ids() {
        let d = DeadLetter {
            id: DeadId::new(DeadKind::Event, 42),
            kind: DeadKind::Event,
            at_ms: 5,
            received_ms: 4,
            source: Some(SourceKind::Webhook),
            flags: 1,
            reason: "HTTP 400: bad event".into(),
            payload: Bytes::from_static(b"{\"x\":1}"),
        };
        assert_eq!(DeadLetter::decode(&d.encode()), Some(d.clone()));
        assert_eq!(d.id.to_string(), "event:42");
        assert_eq!(
            "block:7".parse::<DeadId>().unwrap(),
            DeadId::new(DeadKind::Block, 7)
        );
        assert!("evt:7".parse::<DeadId>().is_err());
        assert_eq!(DeadId::from_key(&d.id.key()), Some(d.id));
        // A cut entry: without its whole header and reason it is not an entry; past that
        // the payload (the rest of the value, sled stores it whole) is what is there.
        let full = d.encode();
        let reason_end = ENTRY_HEADER_LEN + d.reason.len();
        for n in 0..full.len() {
            match DeadLetter::decode(&full[..n]) {
                None => assert!(n < reason_end, "a {n}-byte prefix is refused"),
                Some(cut) => {
                    assert!(n >= reason_end, "a {n}-byte prefix decodes");
                    assert_eq!(cut.reason, d.reason);
                    assert_eq!(cut.payload, d.payload.slice(..n - reason_end));
                }
            }
        }
        let mut other_version = full.clone();
        other_version[0] ^= 0xff;
        assert_eq!(DeadLetter::decode(&other_version), None);
    }
}
