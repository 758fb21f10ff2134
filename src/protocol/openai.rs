//! OpenAI-compatible APIs: `/v1/chat/completions`, `/v1/completions`
//! (plain JSON or server-sent events) and `/v1/embeddings`
//! ([`embeddings`]).
//!
//! Chat and completions give one observation per exchange whose features
//! are [`FEATURES`]:
//!
//! - `prompt_chars`: characters of the prompt (every message's text content
//!   for chat, every prompt string for completions; missing for prompts
//!   sent as token ids);
//! - `messages`: chat messages, or prompts for completions;
//! - `prompt_tokens`, `completion_tokens`: the response's `usage`;
//! - `completion_chars`: characters generated, over all choices.
//!
//! The prediction carries `prompt_tokens`, `completion_tokens`,
//! `finish_reason` (of the first choice; for streams, the last one any
//! chunk reported) and, for streams, `time_to_first_token`: seconds from
//! sending upstream to the first response body bytes (the first event).
//! A stream's usage comes from its usage chunk (`stream_options:
//! {include_usage: true}`); without one `completion_tokens` counts the
//! chunks that carried content (servers send about one token per chunk) and
//! `prompt_tokens` is unknown. A response is read as a stream when its
//! content type is `text/event-stream`, or it has none and the request
//! asked for `stream: true`. The version is the response's `model`.

mod embeddings;
mod sse;

use serde_json::Value;

use super::error::{DecodeError, Part};
use super::table::Table;
use super::{Answer, Parts, body};
use crate::mirror::Exchange;
use crate::observation::{FeatureValue, Prediction};

/// The features of a chat or completions observation, in order.
pub const FEATURES: [&str; 5] = [
    "prompt_chars",
    "messages",
    "prompt_tokens",
    "completion_tokens",
    "completion_chars",
];

/// The OpenAI endpoints decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

/// What the response said about the generation.
#[derive(Debug, Default)]
struct Generated {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    completion_chars: usize,
    finish_reason: Option<String>,
    model: Option<String>,
    time_to_first_token: Option<f64>,
}

/// The endpoint a path names, if any.
pub(crate) fn endpoint(path: &str) -> Option<Endpoint> {
    if path.ends_with("/v1/chat/completions") {
        Some(Endpoint::Chat)
    } else if path.ends_with("/v1/completions") {
        Some(Endpoint::Completions)
    } else if path.ends_with("/v1/embeddings") {
        Some(Endpoint::Embeddings)
    } else {
        None
    }
}

/// Decodes an OpenAI exchange.
pub(crate) fn decode(exchange: &Exchange) -> Result<Parts, DecodeError> {
    let path = exchange.request.uri.path();
    let endpoint = endpoint(path).ok_or_else(|| DecodeError::NotInference {
        path: path.to_owned(),
    })?;
    if endpoint == Endpoint::Embeddings {
        return embeddings::decode(exchange);
    }
    let request: Value = body::json(Part::Request, body::request(exchange)?)?;
    let (prompt_chars, messages) = match endpoint {
        Endpoint::Chat => chat_prompt(required(&request, "messages")?)?,
        _ => completion_prompt(required(&request, "prompt")?),
    };
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let generated = response(exchange, stream);
    let number = |x: Option<f64>| x.map_or(FeatureValue::Missing, FeatureValue::Number);
    let g = generated.as_ref().ok().and_then(Option::as_ref);
    let row = vec![
        number(prompt_chars.map(|c| c as f64)),
        number(Some(messages as f64)),
        number(g.and_then(|g| g.prompt_tokens).map(f64::from)),
        number(g.and_then(|g| g.completion_tokens).map(f64::from)),
        number(g.map(|g| g.completion_chars as f64)),
    ];
    let names = FEATURES.iter().map(|f| (*f).to_owned()).collect();
    Ok(Parts {
        table: Table::named(names, vec![row]),
        version: None,
        answer: generated.map(|g| {
            g.map(|g| Answer {
                predictions: vec![Some(Prediction {
                    prompt_tokens: g.prompt_tokens,
                    completion_tokens: g.completion_tokens,
                    finish_reason: g.finish_reason.map(Into::into),
                    time_to_first_token: g.time_to_first_token,
                    ..Prediction::default()
                })],
                version: g.model,
            })
        }),
    })
}

fn required<'a>(request: &'a Value, field: &str) -> Result<&'a Value, DecodeError> {
    request.get(field).ok_or_else(|| DecodeError::MissingField {
        part: Part::Request,
        field: field.to_owned(),
    })
}

/// Characters of text and number of messages.
fn chat_prompt(messages: &Value) -> Result<(Option<usize>, usize), DecodeError> {
    let messages = messages
        .as_array()
        .ok_or_else(|| DecodeError::InvalidField {
            part: Part::Request,
            field: "messages".to_owned(),
            detail: "expected a list".to_owned(),
        })?;
    let chars = messages
        .iter()
        .map(|m| match m.get("content") {
            Some(Value::String(text)) => text.chars().count(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(|t| t.chars().count())
                .sum(),
            _ => 0,
        })
        .sum();
    Ok((Some(chars), messages.len()))
}

/// Characters of text (unknown for token ids) and number of prompts.
fn completion_prompt(prompt: &Value) -> (Option<usize>, usize) {
    match prompt {
        Value::String(text) => (Some(text.chars().count()), 1),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let chars = items
                .iter()
                .filter_map(Value::as_str)
                .map(|t| t.chars().count())
                .sum();
            (Some(chars), items.len())
        }
        Value::Array(items) if items.iter().all(Value::is_array) => (None, items.len()),
        _ => (None, 1),
    }
}

fn response(exchange: &Exchange, stream: bool) -> Result<Option<Generated>, DecodeError> {
    let (Some(body), Some(head)) = (body::response(exchange)?, &exchange.response) else {
        return Ok(None);
    };
    let content_type = body::content_type(&head.headers);
    let is_stream = match content_type {
        Some(ct) => ct.trim_start().starts_with("text/event-stream"),
        None => stream,
    };
    if !is_stream {
        return Ok(Some(json_response(&body::json(Part::Response, body)?)));
    }
    let mut generated = stream_response(body)?;
    let timings = &exchange.timings.stages;
    generated.time_to_first_token = timings
        .first_body_byte
        .zip(timings.upstream_sent)
        .and_then(|(first, sent)| first.checked_duration_since(sent))
        .map(|d| d.as_secs_f64());
    Ok(Some(generated))
}

fn json_response(response: &Value) -> Generated {
    let choices = response.get("choices").and_then(Value::as_array);
    let mut generated = Generated {
        model: text(response.get("model")),
        finish_reason: text(
            choices
                .and_then(|c| c.first())
                .and_then(|c| c.get("finish_reason")),
        ),
        completion_chars: choices.map_or(0, |c| c.iter().map(choice_chars).sum()),
        ..Generated::default()
    };
    if let Some(usage) = response.get("usage") {
        read_usage(usage, &mut generated);
    }
    generated
}

fn stream_response(body: &[u8]) -> Result<Generated, DecodeError> {
    let text_body = String::from_utf8_lossy(body);
    let mut generated = Generated::default();
    let mut content_chunks: u32 = 0;
    for data in sse::data_events(&text_body) {
        let data = data.trim();
        if data == "[DONE]" {
            break;
        }
        if data.is_empty() {
            continue;
        }
        let chunk: Value = body::json(Part::Response, data.as_bytes())?;
        if let Some(model) = text(chunk.get("model")) {
            generated.model = Some(model);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            read_usage(usage, &mut generated);
        }
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let chars = choice_chars(choice);
            if chars > 0 {
                content_chunks = content_chunks.saturating_add(1);
                generated.completion_chars += chars;
            }
            if let Some(reason) = text(choice.get("finish_reason")) {
                generated.finish_reason = Some(reason);
            }
        }
    }
    if generated.completion_tokens.is_none() {
        generated.completion_tokens = Some(content_chunks);
    }
    Ok(generated)
}

/// Characters a choice carries: chat `message.content` or `delta.content`,
/// completions `text`.
fn choice_chars(choice: &Value) -> usize {
    ["/message/content", "/delta/content", "/text"]
        .iter()
        .find_map(|p| choice.pointer(p).and_then(Value::as_str))
        .map_or(0, |t| t.chars().count())
}

fn read_usage(usage: &Value, generated: &mut Generated) {
    let count = |field: &str| {
        usage
            .get(field)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    generated.prompt_tokens = count("prompt_tokens").or(generated.prompt_tokens);
    generated.completion_tokens = count("completion_tokens").or(generated.completion_tokens);
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_path() {
        assert_eq!(endpoint("/v1/chat/completions"), Some(Endpoint::Chat));
        assert_eq!(
            endpoint("/openai/v1/completions"),
            Some(Endpoint::Completions)
        );
        assert_eq!(endpoint("/v1/embeddings"), Some(Endpoint::Embeddings));
        assert_eq!(endpoint("/v1/models"), None);
    }

    #[test]
    fn streams_without_usage_count_content_chunks() {
        let body = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\" there\"},\"finish_reason\":null}]}\n\n\
            data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
            data: [DONE]\n\n";
        let g = stream_response(body).expect("a valid stream");
        assert_eq!(g.completion_tokens, Some(2));
        assert_eq!(g.prompt_tokens, None);
        assert_eq!(g.completion_chars, 8);
        assert_eq!(g.finish_reason.as_deref(), Some("stop"));
        let bad = stream_response(b"data: {oops\n\n").map_err(|e| e.kind());
        assert_eq!(bad.err(), Some("malformed_json"));
    }
}
