//! The operator socket's routes, written once: the server in [`super::operator`] matches
//! these paths and the client in [`super::client`] builds its requests from them.
//!
//! | route                                    | what                                   |
//! |------------------------------------------|----------------------------------------|
//! | `GET /spool/inspect`                     | [`InspectReport`] as JSON              |
//! | `GET /spool/peek?n=&from=&sink=`         | pending records as [`PeekRecord`]s     |
//! | `GET /spool/export?from=&to=&raw=&sink=` | pending records as NDJSON (streamed)   |
//! | `GET /spool/dead?sink=`                  | the dead-letter list                   |
//! | `GET /spool/dead/show?id=`               | one dead letter as [`DeadDetail`]      |
//!
//! `unredacted=true` (peek, export, dead show) shows credential header fields as received.
//! | `POST /spool/dead/retry?ids=&sink=`, `.../purge?ids=&sink=` | `ids=all` or a comma list |
//!
//! `sink=NAME` (optional) narrows a route to one destination.
//!
//! [`InspectReport`]: super::InspectReport
//! [`PeekRecord`]: super::PeekRecord
//! [`DeadDetail`]: super::DeadDetail

use super::view::{DeadAction, ExportRange};
use crate::spool::DeadId;

pub(crate) const INSPECT: &str = "/spool/inspect";
pub(crate) const PEEK: &str = "/spool/peek";
pub(crate) const EXPORT: &str = "/spool/export";
pub(crate) const DEAD_LIST: &str = "/spool/dead";
pub(crate) const DEAD_SHOW: &str = "/spool/dead/show";
pub(crate) const DEAD_RETRY: &str = "/spool/dead/retry";
pub(crate) const DEAD_PURGE: &str = "/spool/dead/purge";

/// `&sink=NAME`, or nothing.
fn sink_param(sink: Option<&str>) -> String {
    sink.map(|s| format!("&sink={s}")).unwrap_or_default()
}

/// `&unredacted=true`, or nothing.
fn unredacted_param(unredacted: bool) -> &'static str {
    if unredacted {
        "&unredacted=true"
    } else {
        ""
    }
}

pub(crate) fn peek(from: u64, n: usize, sink: Option<&str>, unredacted: bool) -> String {
    format!(
        "{PEEK}?n={n}&from={from}{}{}",
        sink_param(sink),
        unredacted_param(unredacted)
    )
}

pub(crate) fn export(range: ExportRange) -> String {
    let mut path = format!("{EXPORT}?from={}&raw={}", range.from, range.raw);
    if let Some(t) = range.to {
        path.push_str(&format!("&to={t}"));
    }
    path.push_str(&sink_param(range.sink));
    path.push_str(unredacted_param(range.unredacted));
    path
}

pub(crate) fn dead_list(sink: Option<&str>) -> String {
    match sink {
        Some(s) => format!("{DEAD_LIST}?sink={s}"),
        None => DEAD_LIST.to_string(),
    }
}

pub(crate) fn dead_show(id: DeadId, unredacted: bool) -> String {
    format!("{DEAD_SHOW}?id={id}{}", unredacted_param(unredacted))
}

pub(crate) fn dead_act_path(action: DeadAction) -> &'static str {
    match action {
        DeadAction::Retry => DEAD_RETRY,
        DeadAction::Purge => DEAD_PURGE,
    }
}

/// `ids=all` for every dead letter, or the ids separated by commas.
pub(crate) fn dead_act(action: DeadAction, ids: Option<&[DeadId]>, sink: Option<&str>) -> String {
    let list = match ids {
        None => "all".to_string(),
        Some(ids) => ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    format!("{}?ids={list}{}", dead_act_path(action), sink_param(sink))
}

/// Parses `ids=all` or `ids=event:1,block:2`.
pub(crate) fn parse_ids(s: &str) -> Result<Option<Vec<DeadId>>, String> {
    if s == "all" {
        return Ok(None);
    }
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_client_builds_the_server_parses() {
        let ids: Vec<DeadId> = vec!["event:7".parse().unwrap(), "block:3".parse().unwrap()];
        let path = dead_act(DeadAction::Purge, Some(&ids), None);
        let (route, query) = path.split_once('?').unwrap();
        assert_eq!(route, DEAD_PURGE);
        let list = query.strip_prefix("ids=").unwrap();
        assert_eq!(parse_ids(list).unwrap(), Some(ids.clone()));
        assert_eq!(
            dead_act(DeadAction::Retry, Some(&ids[..1]), Some("sentinel")),
            "/spool/dead/retry?ids=event:7&sink=sentinel"
        );
        assert_eq!(dead_list(Some("logscale")), "/spool/dead?sink=logscale");
        assert_eq!(
            peek(3, 2, Some("sentinel"), false),
            "/spool/peek?n=2&from=3&sink=sentinel"
        );
        assert_eq!(
            peek(3, 2, None, true),
            "/spool/peek?n=2&from=3&unredacted=true"
        );
        assert_eq!(
            dead_show("event:7".parse().unwrap(), true),
            "/spool/dead/show?id=event:7&unredacted=true"
        );
        assert_eq!(parse_ids("all").unwrap(), None);
        assert_eq!(
            export(ExportRange {
                from: 5,
                to: Some(9),
                raw: true,
                sink: None,
                unredacted: false,
            }),
            "/spool/export?from=5&raw=true&to=9"
        );
    }
}
