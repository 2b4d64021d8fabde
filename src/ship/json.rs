//! Writing JSON straight into the request buffer: string escaping and a writer for
//! simd-json tapes.
//!
//! A tape is simd-json's flat parse result: one [`Node`] per value, objects and arrays
//! carrying the number of nodes beneath them. Walking it and writing as we go keeps the
//! encoder free of per-event trees and maps; the only allocations are the buffers the
//! encoder reuses.

use simd_json::{Node, StaticNode};

/// Which bytes need escaping inside a JSON string.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Writes `s` as a JSON string (with quotes).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if esc == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes a scalar.
pub(crate) fn write_static(out: &mut Vec<u8>, v: &StaticNode) {
    match v {
        StaticNode::I64(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        StaticNode::U64(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        StaticNode::F64(f) if f.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes())
        }
        StaticNode::F64(_) | StaticNode::Null => out.extend_from_slice(b"null"),
        StaticNode::Bool(true) => out.extend_from_slice(b"true"),
        StaticNode::Bool(false) => out.extend_from_slice(b"false"),
    }
}

/// The index just past the value starting at `i`.
pub(crate) fn skip(nodes: &[Node<'_>], i: usize) -> usize {
    match nodes[i] {
        Node::Object { count, .. } | Node::Array { count, .. } => i + count + 1,
        _ => i + 1,
    }
}

/// Writes the value starting at `i`; returns the index just past it.
pub(crate) fn write_value(out: &mut Vec<u8>, nodes: &[Node<'_>], i: usize) -> usize {
    match nodes[i] {
        Node::String(s) => {
            write_str(out, s);
            i + 1
        }
        Node::Static(ref v) => {
            write_static(out, v);
            i + 1
        }
        Node::Array { len, .. } => {
            out.push(b'[');
            let mut j = i + 1;
            for n in 0..len {
                if n > 0 {
                    out.push(b',');
                }
                j = write_value(out, nodes, j);
            }
            out.push(b']');
            j
        }
        Node::Object { .. } => {
            write_object_with(out, nodes, i, |out, _, j| write_value(out, nodes, j))
        }
    }
}

/// Writes the object at `i`, each member's value by `value(out, key, index)`, which returns
/// the index just past the value; returns the index just past the object. Anything but an
/// object is written as it is.
pub(crate) fn write_object_with(
    out: &mut Vec<u8>,
    nodes: &[Node<'_>],
    i: usize,
    mut value: impl FnMut(&mut Vec<u8>, &str, usize) -> usize,
) -> usize {
    let Node::Object { len, .. } = nodes[i] else {
        return write_value(out, nodes, i);
    };
    out.push(b'{');
    let mut j = i + 1;
    for n in 0..len {
        if n > 0 {
            out.push(b',');
        }
        let key = key_at(nodes, j);
        j = write_key(out, nodes, j);
        j = value(out, key, j);
    }
    out.push(b'}');
    j
}

/// Writes the object key at `i` followed by `:`; returns `i + 1`.
pub(crate) fn write_key(out: &mut Vec<u8>, nodes: &[Node<'_>], i: usize) -> usize {
    if let Node::String(k) = nodes[i] {
        write_str(out, k);
    } else {
        // simd-json only produces string keys; keep the output valid regardless.
        out.extend_from_slice(b"\"\"");
    }
    out.push(b':');
    i + 1
}

/// The string key at `i`, if it is one.
pub(crate) fn key_at<'a>(nodes: &[Node<'a>], i: usize) -> &'a str {
    match nodes[i] {
        Node::String(k) => k,
        _ => "",
    }
}

/// Looks up `key` in the object starting at `i`; returns the value's index.
pub(crate) fn get(nodes: &[Node<'_>], i: usize, key: &str) -> Option<usize> {
    let Node::Object { len, .. } = nodes[i] else {
        return None;
    };
    let mut j = i + 1;
    for _ in 0..len {
        let k = key_at(nodes, j);
        j += 1;
        if k == key {
            return Some(j);
        }
        j = skip(nodes, j);
    }
    None
}

/// The string at `i`, if it is one.
pub(crate) fn str_at<'a>(nodes: &[Node<'a>], i: usize) -> Option<&'a str> {
    match nodes[i] {
        Node::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(json: &str) -> String {
        let mut input = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut input).unwrap();
        let mut out = Vec::new();
        let end = write_value(&mut out, &tape.0, 0);
        assert_eq!(end, tape.0.len());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tape_writer_reproduces_json() {
        let cases = [
            r#"{"a":[1,-2,3.5,true,false,null,{}],"b":{"c":"d\"e\\f\n\u0001é"},"e":[]}"#,
            r#""just a string""#,
            r#"[[[]],{"x":{"y":[{"z":18446744073709551615}]}}]"#,
        ];
        for c in cases {
            let out = round_trip(c);
            let a: serde_json::Value = serde_json::from_str(c).unwrap();
            let b: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(a, b, "{out}");
        }
    }

    #[test]
    fn every_control_character_is_escaped() {
        let s: String = (0u8..0x80).map(char::from).collect();
        let mut out = Vec::new();
        write_str(&mut out, &s);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, s);
    }
}
