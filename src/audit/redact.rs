//! JSON pointers (RFC 6901) removed from payloads before they are written.

use serde_json::Value;

use super::config::Payloads;
use super::record::Payload;

/// Removes what each pointer in `pointers` names from `value`. A pointer
/// that names nothing is ignored; `""` (the whole document) replaces it
/// with `null`.
pub fn redact(value: &mut Value, pointers: &[String]) {
    for pointer in pointers {
        if pointer.is_empty() {
            *value = Value::Null;
            continue;
        }
        let Some((parent, last)) = pointer.rsplit_once('/') else {
            continue;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        match value.pointer_mut(parent) {
            Some(Value::Object(map)) => {
                map.remove(&last);
            }
            Some(Value::Array(items)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < items.len()
                {
                    items.remove(i);
                }
            }
            _ => {}
        }
    }
}

/// The payload an entry keeps under `policy`: the bodies that parse as
/// JSON, each with `pointers` removed, or `None` when the policy (or the
/// exchange not being flagged under `flagged`) keeps nothing.
pub fn payload(
    policy: Payloads,
    flagged: bool,
    request: &[u8],
    response: &[u8],
    pointers: &[String],
) -> Option<Payload> {
    let keep = match policy {
        Payloads::None => false,
        Payloads::Flagged => flagged,
        Payloads::All => true,
    };
    if !keep {
        return None;
    }
    let body = |bytes: &[u8]| {
        serde_json::from_slice::<Value>(bytes).ok().map(|mut v| {
            redact(&mut v, pointers);
            v
        })
    };
    Some(Payload {
        request: body(request),
        response: body(response),
    })
}

/// Whether `pointer` is a valid JSON pointer (empty or starting with `/`,
/// `~` only as `~0` or `~1`).
pub fn valid_pointer(pointer: &str) -> bool {
    (pointer.is_empty() || pointer.starts_with('/'))
        && pointer
            .split('~')
            .skip(1)
            .all(|rest| rest.starts_with('0') || rest.starts_with('1'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_named_members_and_elements_only() {
        let mut v = json!({"inputs": [{"data": [1, 2], "name": "x"}], "a/b": 1, "keep": 2});
        redact(
            &mut v,
            &[
                "/inputs/0/data".into(),
                "/a~1b".into(),
                "/missing/deep".into(),
            ],
        );
        assert_eq!(v, json!({"inputs": [{"name": "x"}], "keep": 2}));
        let mut arr = json!([1, 2, 3]);
        redact(&mut arr, &["/1".into()]);
        assert_eq!(arr, json!([1, 3]));
        assert!(valid_pointer("/a~0b/c"));
        assert!(!valid_pointer("a/b"));
        assert!(!valid_pointer("/a~2"));
    }

    #[test]
    fn payload_follows_policy_and_redacts_before_keeping() {
        let req = br#"{"inputs":[{"data":[5.1,3.5],"name":"x"}]}"#;
        let pointers = vec!["/inputs/0/data".to_string()];
        assert_eq!(payload(Payloads::None, true, req, b"{}", &pointers), None);
        assert_eq!(
            payload(Payloads::Flagged, false, req, b"{}", &pointers),
            None
        );
        let kept = payload(Payloads::Flagged, true, req, b"not json", &pointers).unwrap();
        assert_eq!(kept.request, Some(json!({"inputs": [{"name": "x"}]})));
        assert_eq!(kept.response, None);
        assert!(payload(Payloads::All, false, req, b"{}", &pointers).is_some());
    }
}
