//! JSON pointers (RFC 6901) removed from payloads before they are written.

use serde_json::Value;

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
}
