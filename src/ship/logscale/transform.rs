//! The old script's two changes to QSS events, which LogScale's `zoom_qss` parser and the
//! package's dashboards rely on. Applied while writing the event, on the simd-json tape.
//!
//! - Event name containing `_qos`, and `payload.object.participant.qos` an array of objects
//!   each with a string `type`: it becomes an object keyed by `type`, each value the item's
//!   `details` object with the item's `date_time` added when it has one. On a repeated
//!   type the last item wins, at the position where the type first appeared (as a Python
//!   dict assignment does).
//! - Event name containing `_data`, and `payload.object.participant.data` a non-empty
//!   array: it becomes its first element.
//!
//! Everything else is written as it came: `phone.call_qos` (its qos is under
//! `payload.object.call_qos`), `session.*` (under `payload.object.user`), unknown names,
//! arrays with odd items. Nothing is refused for its shape.

use crate::ship::json::{get, key_at, skip, str_at, write_key, write_object_with, write_value};
use simd_json::Node;

/// The path to the participant object.
const PATH: [&str; 3] = ["payload", "object", "participant"];

/// Which transforms an event name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Transforms {
    pub qos: bool,
    pub data: bool,
}

impl Transforms {
    pub(crate) fn for_event(name: &str) -> Transforms {
        Transforms {
            qos: name.contains("_qos"),
            data: name.contains("_data"),
        }
    }
}

/// A value the transforms replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// `qos` array → object keyed by type.
    Qos,
    /// `data` array → its first element.
    Data,
}

/// The values of the content at node 0 that the transforms replace: the node index of
/// each value, and how. At most one of each kind.
pub(crate) fn rewrites(nodes: &[Node<'_>], t: Transforms) -> Vec<(usize, Rewrite)> {
    let mut out = Vec::new();
    if t == Transforms::default() {
        return out;
    }
    let participant = get(nodes, 0, PATH[0])
        .and_then(|p| get(nodes, p, PATH[1]))
        .and_then(|o| get(nodes, o, PATH[2]));
    let Some(part) = participant else { return out };
    if t.qos {
        if let Some(v) = get(nodes, part, "qos").filter(|&v| qos_is_transformable(nodes, v)) {
            out.push((v, Rewrite::Qos));
        }
    }
    if t.data {
        if let Some(v) = get(nodes, part, "data")
            .filter(|&v| matches!(nodes[v], Node::Array { len, .. } if len > 0))
        {
            out.push((v, Rewrite::Data));
        }
    }
    out
}

/// Writes the replacement of the value at `i`.
pub(crate) fn write_rewrite(out: &mut Vec<u8>, nodes: &[Node<'_>], i: usize, how: Rewrite) {
    match how {
        Rewrite::Qos => {
            write_qos_object(out, nodes, i);
        }
        Rewrite::Data => {
            write_first_element(out, nodes, i);
        }
    }
}

/// Writes the content value at `i` with the transforms applied; returns the index past it.
pub(crate) fn write_content(
    out: &mut Vec<u8>,
    nodes: &[Node<'_>],
    i: usize,
    t: Transforms,
) -> usize {
    if t == Transforms::default() {
        return write_value(out, nodes, i);
    }
    write_object_on_path(out, nodes, i, 0, t)
}

/// Writes the object at `i`, where `depth` components of [`PATH`] have matched so far.
fn write_object_on_path(
    out: &mut Vec<u8>,
    nodes: &[Node<'_>],
    i: usize,
    depth: usize,
    t: Transforms,
) -> usize {
    write_object_with(out, nodes, i, |out, key, j| {
        if depth < PATH.len() && key == PATH[depth] {
            write_object_on_path(out, nodes, j, depth + 1, t)
        } else if depth == PATH.len() && t.qos && key == "qos" && qos_is_transformable(nodes, j) {
            write_qos_object(out, nodes, j)
        } else if depth == PATH.len() && t.data && key == "data" {
            write_first_element(out, nodes, j)
        } else {
            write_value(out, nodes, j)
        }
    })
}

/// An array whose items are all objects with a string `type`.
fn qos_is_transformable(nodes: &[Node<'_>], i: usize) -> bool {
    let Node::Array { len, .. } = nodes[i] else {
        return false;
    };
    let mut j = i + 1;
    for _ in 0..len {
        if !matches!(nodes[j], Node::Object { .. }) {
            return false;
        }
        if get(nodes, j, "type")
            .and_then(|t| str_at(nodes, t))
            .is_none()
        {
            return false;
        }
        j = skip(nodes, j);
    }
    true
}

fn write_qos_object(out: &mut Vec<u8>, nodes: &[Node<'_>], i: usize) -> usize {
    let Node::Array { len, .. } = nodes[i] else {
        unreachable!("checked by qos_is_transformable")
    };
    // (type, index of the item that wins): first position, last value.
    let mut entries: Vec<(&str, usize)> = Vec::with_capacity(len);
    let mut j = i + 1;
    for _ in 0..len {
        let ty = get(nodes, j, "type")
            .and_then(|t| str_at(nodes, t))
            .unwrap_or("");
        match entries.iter_mut().find(|(t, _)| *t == ty) {
            Some(e) => e.1 = j,
            None => entries.push((ty, j)),
        }
        j = skip(nodes, j);
    }
    out.push(b'{');
    for (n, (ty, item)) in entries.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        crate::ship::json::write_str(out, ty);
        out.push(b':');
        write_details(out, nodes, *item);
    }
    out.push(b'}');
    j
}

/// The item's `details` with the item's `date_time` set in it.
fn write_details(out: &mut Vec<u8>, nodes: &[Node<'_>], item: usize) {
    let date_time = get(nodes, item, "date_time");
    let details = get(nodes, item, "details");
    match (details, date_time) {
        (Some(d), _) if !matches!(nodes[d], Node::Object { .. }) => {
            // Not an object: nothing to add the date to; keep it as it is.
            write_value(out, nodes, d);
        }
        (Some(d), dt) => {
            let Node::Object { len, .. } = nodes[d] else {
                unreachable!()
            };
            out.push(b'{');
            let mut j = d + 1;
            let mut wrote_date = false;
            for n in 0..len {
                if n > 0 {
                    out.push(b',');
                }
                let key = key_at(nodes, j);
                j = write_key(out, nodes, j);
                match dt {
                    Some(dt) if key == "date_time" => {
                        write_value(out, nodes, dt);
                        wrote_date = true;
                        j = skip(nodes, j);
                    }
                    _ => j = write_value(out, nodes, j),
                }
            }
            if let (Some(dt), false) = (dt, wrote_date) {
                if len > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"date_time\":");
                write_value(out, nodes, dt);
            }
            out.push(b'}');
        }
        (None, Some(dt)) => {
            out.extend_from_slice(b"{\"date_time\":");
            write_value(out, nodes, dt);
            out.push(b'}');
        }
        (None, None) => out.extend_from_slice(b"{}"),
    }
}

fn write_first_element(out: &mut Vec<u8>, nodes: &[Node<'_>], i: usize) -> usize {
    match nodes[i] {
        Node::Array { len, .. } if len > 0 => {
            write_value(out, nodes, i + 1);
            skip(nodes, i)
        }
        _ => write_value(out, nodes, i),
    }
}
