//! Request paths reduced to the few routes the inference protocols define,
//! so span names stay low-cardinality whatever clients send.

use http::Method;

/// A request path reduced to a low-cardinality route.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// An HTTP route template, e.g. `/v2/models/{model}/infer`.
    Http(&'static str),
    /// A gRPC `service/method`.
    Grpc(String),
}

/// `http.request.method`: the standard methods, else `_OTHER` (so a client
/// cannot mint span names).
pub(super) fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The route of a path, when it is one the inference protocols define:
/// model names and versions become `{model}` and `{version}`, so span names
/// stay few whatever clients send.
pub(super) fn route_of(path: &str, grpc: bool) -> Option<Route> {
    if grpc {
        let rpc = path.strip_prefix('/')?;
        let (service, method) = rpc.split_once('/')?;
        let ident = |s: &str| {
            !s.is_empty()
                && s.len() <= 100
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        return (ident(service) && ident(method) && !method.contains('.'))
            .then(|| Route::Grpc(rpc.to_owned()));
    }
    const FIXED: &[&str] = &[
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/repository/index",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
    ];
    if let Some(fixed) = FIXED.iter().find(|f| **f == path) {
        return Some(Route::Http(fixed));
    }
    if let Some(rest) = path.strip_prefix("/v2/models/") {
        let segments: Vec<&str> = rest.split('/').collect();
        let template = match segments.as_slice() {
            [m] if !m.is_empty() => "/v2/models/{model}",
            [m, "infer"] if !m.is_empty() => "/v2/models/{model}/infer",
            [m, "ready"] if !m.is_empty() => "/v2/models/{model}/ready",
            [m, "generate"] if !m.is_empty() => "/v2/models/{model}/generate",
            [m, "generate_stream"] if !m.is_empty() => "/v2/models/{model}/generate_stream",
            [m, "versions", v] if !m.is_empty() && !v.is_empty() => {
                "/v2/models/{model}/versions/{version}"
            }
            [m, "versions", v, "infer"] if !m.is_empty() && !v.is_empty() => {
                "/v2/models/{model}/versions/{version}/infer"
            }
            [m, "versions", v, "ready"] if !m.is_empty() && !v.is_empty() => {
                "/v2/models/{model}/versions/{version}/ready"
            }
            _ => return None,
        };
        return Some(Route::Http(template));
    }
    let rest = path.strip_prefix("/v1/models/")?;
    let (target, verb) = match rest.split_once(':') {
        Some((target, verb)) => (target, Some(verb)),
        None => (rest, None),
    };
    let versioned = match target.split('/').collect::<Vec<_>>().as_slice() {
        [m] if !m.is_empty() => false,
        [m, "versions", v] if !m.is_empty() && !v.is_empty() => true,
        _ => return None,
    };
    let template = match (versioned, verb) {
        (false, None) => "/v1/models/{model}",
        (false, Some("predict")) => "/v1/models/{model}:predict",
        (false, Some("classify")) => "/v1/models/{model}:classify",
        (false, Some("regress")) => "/v1/models/{model}:regress",
        (false, Some("explain")) => "/v1/models/{model}:explain",
        (true, None) => "/v1/models/{model}/versions/{version}",
        (true, Some("predict")) => "/v1/models/{model}/versions/{version}:predict",
        (true, Some("classify")) => "/v1/models/{model}/versions/{version}:classify",
        (true, Some("regress")) => "/v1/models/{model}/versions/{version}:regress",
        _ => return None,
    };
    Some(Route::Http(template))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_template_model_names_and_versions() {
        let http = |p| route_of(p, false);
        assert_eq!(
            http("/v2/models/iris/infer"),
            Some(Route::Http("/v2/models/{model}/infer"))
        );
        assert_eq!(
            http("/v2/models/iris/versions/3/infer"),
            Some(Route::Http("/v2/models/{model}/versions/{version}/infer"))
        );
        assert_eq!(
            http("/v1/models/iris:predict"),
            Some(Route::Http("/v1/models/{model}:predict"))
        );
        assert_eq!(
            http("/v1/models/iris/versions/2:classify"),
            Some(Route::Http(
                "/v1/models/{model}/versions/{version}:classify"
            ))
        );
        assert_eq!(
            http("/v1/chat/completions"),
            Some(Route::Http("/v1/chat/completions"))
        );
        assert_eq!(http("/v2/models//infer"), None);
        assert_eq!(http("/v2/models/iris/anything"), None);
        assert_eq!(http("/v1/models/iris:steal"), None);
        assert_eq!(http("/random/user/path"), None);
    }

    #[test]
    fn grpc_routes_are_service_and_method() {
        assert_eq!(
            route_of("/inference.GRPCInferenceService/ModelInfer", true),
            Some(Route::Grpc(
                "inference.GRPCInferenceService/ModelInfer".into()
            ))
        );
        assert_eq!(route_of("/no-method", true), None);
        assert_eq!(route_of("/a/b/c", true), None);
    }

    #[test]
    fn unknown_methods_do_not_name_spans() {
        assert_eq!(method_name(&Method::POST), "POST");
        let made_up = Method::from_bytes(b"STEAL").expect("a valid token");
        assert_eq!(method_name(&made_up), "_OTHER");
    }
}
