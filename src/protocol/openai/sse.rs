//! Server-sent events, as far as OpenAI-style streams need them: the `data`
//! payload of each event (multi-line data joined with `\n`), in order.
//! Comments and other fields (`event`, `id`, `retry`) are skipped.

/// The `data` payloads of an event stream.
pub(crate) fn data_events(stream: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in stream.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            events.extend(data.take());
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    events.extend(data);
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_and_joined() {
        let stream = ": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line1\ndata:line2\n\ndata: [DONE]";
        assert_eq!(data_events(stream), ["{\"a\":1}", "line1\nline2", "[DONE]"]);
        assert!(data_events("").is_empty());
    }
}
