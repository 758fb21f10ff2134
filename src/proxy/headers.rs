//! Header rewriting between client and upstream: hop-by-hop removal,
//! forwarding headers, request ids and W3C trace context.

use std::net::IpAddr;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

/// The request id header, generated when the client sends none.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C trace context.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// How many fixed hop-by-hop names there are; `TE` takes the next bit.
const FIXED: usize = 7;

/// Hop-by-hop headers (RFC 9110 §7.6.1) that a proxy must not forward.
fn fixed_hop_by_hop() -> [&'static HeaderName; FIXED] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// `TE`'s bit in [`strip_hop_by_hop`]'s set, after the fixed names'.
const TE_BIT: u16 = 1 << FIXED;
const _: () = assert!(FIXED < 15, "the presence set is a u16");

/// Removes hop-by-hop headers, including any named in `Connection`.
///
/// `TE: trailers` survives: gRPC servers require it, and it is the one TE
/// value HTTP/2 allows.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (comparisons, no hashing) finds which of
    // them are present; most messages carry none, or only `Connection`
    // (nginx sends `Connection: keep-alive` on every response), so only
    // those are looked up and removed.
    let hop_by_hop = fixed_hop_by_hop();
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop.iter().position(|h| *h == name) {
            present |= 1 << i;
        } else if name == header::TE {
            present |= TE_BIT;
        }
    }
    if present == 0 {
        return;
    }
    // Connection is first in the list. Its options name more hop-by-hop
    // headers, in every Connection line; `close` and `keep-alive` name
    // none to look up (an empty collect does not allocate), and `TE` is
    // settled below, where `TE: trailers` is kept (RFC 9110 asks a sender
    // of TE to list it in Connection).
    if present & 1 != 0 {
        let named: Vec<HeaderName> = connection_options(headers)
            .filter(|t| {
                !t.eq_ignore_ascii_case(b"close")
                    && !t.eq_ignore_ascii_case(b"keep-alive")
                    && !t.eq_ignore_ascii_case(b"te")
            })
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in hop_by_hop.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
    if present & TE_BIT != 0 {
        let values = headers.get_all(&header::TE);
        let trailers =
            |v: &HeaderValue| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"trailers");
        let only_trailers = values.iter().all(trailers);
        let any_trailers = values.iter().any(trailers);
        if !only_trailers {
            headers.remove(&header::TE);
            if any_trailers {
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
    }
}

/// The comma-separated options of every `Connection` line, trimmed.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(&header::CONNECTION)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Whether the client will close its connection after this request
/// (HTTP/1.0 without keep-alive, or `Connection: close`).
pub fn closes_after(headers: &HeaderMap, version: http::Version) -> bool {
    let has = |token: &[u8]| connection_options(headers).any(|t| t.eq_ignore_ascii_case(token));
    if version == http::Version::HTTP_10 {
        !has(b"keep-alive")
    } else {
        has(b"close")
    }
}

/// Returns the request's id, generating and inserting one if absent.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    let entry = match headers.entry(&X_REQUEST_ID) {
        Entry::Occupied(entry) if !entry.get().is_empty() => return entry.get().clone(),
        entry => entry,
    };
    let uuid = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = HeaderValue::from_bytes(uuid.hyphenated().encode_lower(&mut text).as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    set(entry, id.clone());
    id
}

/// Sets an entry's value, replacing any it had.
fn set(entry: Entry<'_, HeaderValue>, value: HeaderValue) {
    match entry {
        Entry::Vacant(entry) => {
            entry.insert(value);
        }
        Entry::Occupied(mut entry) => {
            entry.insert(value);
        }
    }
}

/// Keeps a valid `traceparent`, or starts a new sampled trace.
pub fn ensure_traceparent(headers: &mut HeaderMap) {
    let entry = match headers.entry(&TRACEPARENT) {
        Entry::Occupied(entry) if is_valid_traceparent(entry.get().as_bytes()) => return,
        entry => entry,
    };
    let mut text = [0u8; 55];
    text[..3].copy_from_slice(b"00-");
    write_hex(&mut text[3..35], &fastrand::u128(1..).to_be_bytes());
    text[35] = b'-';
    write_hex(&mut text[36..52], &fastrand::u64(1..).to_be_bytes());
    text[52..].copy_from_slice(b"-01");
    if let Ok(value) = HeaderValue::from_bytes(&text) {
        set(entry, value);
    }
}

/// Checks the W3C `traceparent` shape: version-traceid-parentid-flags in
/// lowercase hex, with all-zero ids invalid.
pub fn is_valid_traceparent(value: &[u8]) -> bool {
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |s: &[u8]| s.iter().any(|&c| c != b'0');
    value.len() >= 55
        && value[2] == b'-'
        && value[35] == b'-'
        && value[52] == b'-'
        && hex(&value[..2])
        && &value[..2] != b"ff"
        && hex(&value[3..35])
        && nonzero(&value[3..35])
        && hex(&value[36..52])
        && nonzero(&value[36..52])
        && hex(&value[53..55])
        && (value.len() == 55 || (&value[..2] != b"00" && value[55] == b'-'))
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// Appends the client to `X-Forwarded-For` and the scheme to `X-Forwarded-Proto`.
pub fn append_forwarded(headers: &mut HeaderMap, client: &ForwardedFor, proto: &'static str) {
    append_list(headers, &X_FORWARDED_FOR, &client.0);
    append_list(
        headers,
        &X_FORWARDED_PROTO,
        &HeaderValue::from_static(proto),
    );
}

/// A client address formatted once per connection for `X-Forwarded-For`.
#[derive(Debug, Clone)]
pub struct ForwardedFor(HeaderValue);

impl ForwardedFor {
    /// Formats the client's address.
    pub fn new(client: IpAddr) -> Self {
        ForwardedFor(
            HeaderValue::from_str(&client.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        )
    }
}

fn append_list(headers: &mut HeaderMap, name: &HeaderName, item: &HeaderValue) {
    // One entry lookup (one hash of the name) instead of a get and an insert.
    match headers.entry(name) {
        // The common case, no earlier proxy: the shared value, no allocation.
        Entry::Vacant(entry) => {
            entry.insert(item.clone());
        }
        Entry::Occupied(mut entry) => {
            // Several lines are one comma-separated list (RFC 9110 §5.3),
            // so every earlier hop is kept, in order.
            let mut value = Vec::new();
            for line in entry.iter().map(HeaderValue::as_bytes) {
                if !line.is_empty() {
                    value.extend_from_slice(line);
                    value.extend_from_slice(b", ");
                }
            }
            value.extend_from_slice(item.as_bytes());
            // Replaces every earlier line with the one joined list.
            if let Ok(joined) = HeaderValue::from_bytes(&value) {
                entry.insert(joined);
            }
        }
    }
}

/// True when the request is gRPC (`application/grpc`, `+proto`, `+json`, …).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(&header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The declared body length, if any and well-formed.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(&header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_connection_tokens_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("te", HeaderValue::from_static("gzip"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h.get("x-keep").map(|v| v.as_bytes()), Some(&b"yes"[..]));
    }

    #[test]
    fn each_hop_by_hop_header_alone_and_every_connection_line_count() {
        for name in fixed_hop_by_hop() {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert("x-keep", HeaderValue::from_static("yes"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}: {h:?}");
        }
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("close"));
        h.append(
            "connection",
            HeaderValue::from_static("x-first,  X-Second "),
        );
        h.insert("x-first", HeaderValue::from_static("1"));
        h.insert("x-second", HeaderValue::from_static("2"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn te_trailers_is_kept_for_grpc() {
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key("te"));
        // Listed in Connection, as RFC 9110 asks of a sender of TE.
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("TE"));
        h.insert("te", HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert!(!h.contains_key("connection"));
        // Any other TE line goes; trailers stays, once.
        let mut h = HeaderMap::new();
        h.append("te", HeaderValue::from_static("trailers"));
        h.append("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        let te: Vec<_> = h.get_all("te").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(te, [&b"trailers"[..]]);
        let mut h = HeaderMap::new();
        h.append("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("te"));
    }

    #[test]
    fn request_id_is_kept_or_generated() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        assert_eq!(ensure_request_id(&mut h), "abc");
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 36);
        assert_eq!(h.get("x-request-id"), Some(&id));
        assert_ne!(ensure_request_id(&mut HeaderMap::new()), id);
        // An empty id is replaced, not kept.
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static(""));
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 36);
        assert_eq!(h.get_all("x-request-id").iter().collect::<Vec<_>>(), [&id]);
    }

    #[test]
    fn a_closing_client_is_told_from_a_keep_alive_one() {
        use http::Version;
        let with = |value: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = value {
                h.insert(header::CONNECTION, HeaderValue::from_static(v));
            }
            h
        };
        assert!(!closes_after(&with(None), Version::HTTP_11));
        assert!(closes_after(&with(Some("Close")), Version::HTTP_11));
        assert!(closes_after(&with(Some("te, close")), Version::HTTP_11));
        assert!(!closes_after(&with(Some("keep-alive")), Version::HTTP_11));
        assert!(closes_after(&with(None), Version::HTTP_10));
        assert!(!closes_after(&with(Some("Keep-Alive")), Version::HTTP_10));
        // `close` on a second Connection line counts too.
        let mut h = with(Some("x-foo"));
        h.append(header::CONNECTION, HeaderValue::from_static("close"));
        assert!(closes_after(&h, Version::HTTP_11));
    }

    #[test]
    fn traceparent_is_forwarded_or_generated_valid() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(given));
        ensure_traceparent(&mut h);
        assert_eq!(
            h.get("traceparent").map(|v| v.as_bytes()),
            Some(given.as_bytes())
        );

        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static("garbage"));
        h.append("traceparent", HeaderValue::from_static("more garbage"));
        ensure_traceparent(&mut h);
        assert_eq!(h.get_all("traceparent").iter().count(), 1);
        let made = h
            .get("traceparent")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        assert!(
            is_valid_traceparent(&made),
            "{}",
            String::from_utf8_lossy(&made)
        );
        assert!(!is_valid_traceparent(
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
    }

    #[test]
    fn forwarded_headers_are_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        append_forwarded(
            &mut h,
            &ForwardedFor::new("127.0.0.1".parse().expect("ip")),
            "http",
        );
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"10.0.0.1, 127.0.0.1"[..])
        );
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"http"[..])
        );
    }

    #[test]
    fn every_forwarded_for_line_is_kept_in_order() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static(""));
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("10.0.0.2, 10.0.0.3"),
        );
        append_forwarded(
            &mut h,
            &ForwardedFor::new("127.0.0.1".parse().expect("ip")),
            "http",
        );
        let lines: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(
            lines,
            [&HeaderValue::from_static(
                "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"
            )]
        );
    }
}
