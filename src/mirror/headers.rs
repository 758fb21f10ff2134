//! Header copies that own their bytes.
//!
//! Cloning a `HeaderMap` that hyper parsed shares hyper's read buffer: as
//! long as the mirror holds the clone, hyper cannot reuse that buffer for the
//! connection's next request and allocates another, which the mirror thread
//! later frees. One flat copy per head avoids both.

use std::fmt;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

/// Header names and values copied into one buffer, in the order sent.
///
/// Each entry is laid out as name length (u16 LE), value length (u32 LE),
/// name bytes (lowercase, as `http` stores them), value bytes.
/// The tee writes a head's copy into the buffer its body copy follows in,
/// and the mirror worker hands out slices of it: one allocation per head
/// and body, made on the proxy thread, freed on the mirror thread.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderCopy {
    buf: Bytes,
}

const ENTRY_HEADER: usize = 6;

/// Bytes [`write_headers`] writes for `map`: a copy of its own is sized
/// exactly. (The tee guesses instead, as a second pass over every head
/// costs more than the rare reallocation.)
fn written_len(map: &HeaderMap) -> usize {
    map.iter()
        .map(|(name, value)| {
            let (name, value) = bounded(name.as_str().as_bytes(), value.as_bytes());
            ENTRY_HEADER + name.len() + value.len()
        })
        .sum()
}

/// Header names and values are bounded far below these limits by every
/// HTTP parser; saturate rather than corrupt the layout.
fn bounded<'a>(name: &'a [u8], value: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    (
        &name[..name.len().min(usize::from(u16::MAX))],
        &value[..value.len().min(u32::MAX as usize)],
    )
}

/// Appends every header of `map` to `out` in [`HeaderCopy`]'s layout.
pub fn write_headers(map: &HeaderMap, out: &mut BytesMut) {
    for (name, value) in map {
        let (name, value) = bounded(name.as_str().as_bytes(), value.as_bytes());
        let mut lengths = [0u8; ENTRY_HEADER];
        lengths[..2].copy_from_slice(&(name.len() as u16).to_le_bytes());
        lengths[2..].copy_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(&lengths);
        out.extend_from_slice(name);
        out.extend_from_slice(value);
    }
}

// === impl HeaderCopy ===

impl HeaderCopy {
    /// Copies every header of `map` into a buffer of its own.
    pub fn copy_from(map: &HeaderMap) -> Self {
        let mut buf = BytesMut::with_capacity(written_len(map));
        write_headers(map, &mut buf);
        HeaderCopy { buf: buf.freeze() }
    }

    /// A copy from bytes [`write_headers`] wrote.
    pub fn from_written(buf: Bytes) -> Self {
        HeaderCopy { buf }
    }

    /// Every (name, value) pair, repeated names included.
    pub fn iter(&self) -> Entries<'_> {
        Entries { rest: &self.buf }
    }

    /// The first value of the header called `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        // On the raw entries: no UTF-8 check of every name on the way.
        let name = name.as_bytes();
        let mut rest = &self.buf[..];
        while let Some((n, value, next)) = split_entry(rest) {
            if n.eq_ignore_ascii_case(name) {
                return Some(value);
            }
            rest = next;
        }
        None
    }

    /// The first value of `name`, if it is visible ASCII text.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
    }

    /// Bytes of the copy.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Rebuilds a `HeaderMap`, skipping anything `http` would not accept.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in self.iter() {
            if let (Ok(name), Ok(value)) = (
                http::header::HeaderName::from_bytes(name.as_bytes()),
                http::header::HeaderValue::from_bytes(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }
}

impl From<&HeaderMap> for HeaderCopy {
    fn from(map: &HeaderMap) -> Self {
        HeaderCopy::copy_from(map)
    }
}

impl fmt::Debug for HeaderCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(name, value)| (name, String::from_utf8_lossy(value))),
            )
            .finish()
    }
}

/// Iterator over a [`HeaderCopy`].
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, value, rest) = split_entry(self.rest)?;
        self.rest = rest;
        // Built only from `HeaderName`s, which are ASCII.
        Some((std::str::from_utf8(name).unwrap_or(""), value))
    }
}

/// The first entry's name and value, and what follows it.
fn split_entry(buf: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (lengths, rest) = buf.split_at_checked(ENTRY_HEADER)?;
    let name_len = usize::from(u16::from_le_bytes([lengths[0], lengths[1]]));
    let value_len = u32::from_le_bytes([lengths[2], lengths[3], lengths[4], lengths[5]]) as usize;
    let (name, rest) = rest.split_at_checked(name_len)?;
    let (value, rest) = rest.split_at_checked(value_len)?;
    Some((name, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_TYPE, HeaderValue};

    #[test]
    fn copies_every_header_in_order_with_repeats() {
        let mut map = HeaderMap::new();
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        map.append("x-a", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        map.insert("x-empty", HeaderValue::from_static(""));
        let copy = HeaderCopy::copy_from(&map);
        let entries: Vec<_> = copy.iter().collect();
        assert_eq!(
            entries,
            vec![
                ("content-type", &b"application/json"[..]),
                ("x-a", &b"1"[..]),
                ("x-a", &b"2"[..]),
                ("x-empty", &b""[..]),
            ]
        );
        assert_eq!(copy.get("Content-Type"), Some(&b"application/json"[..]));
        assert_eq!(copy.get_str("x-a"), Some("1"));
        assert_eq!(copy.get("missing"), None);
        assert_eq!(copy.to_header_map(), map);
    }

    #[test]
    fn non_text_values_are_bytes_not_str() {
        let mut map = HeaderMap::new();
        map.insert(
            "x-bin",
            HeaderValue::from_bytes(&[0xff, b'a']).expect("obs-text is a valid value"),
        );
        let copy = HeaderCopy::copy_from(&map);
        assert_eq!(copy.get("x-bin"), Some(&[0xff, b'a'][..]));
        assert_eq!(copy.get_str("x-bin"), None);
    }

    #[test]
    fn an_empty_map_copies_to_nothing() {
        let copy = HeaderCopy::copy_from(&HeaderMap::new());
        assert!(copy.is_empty());
        assert_eq!(copy.iter().count(), 0);
    }
}
