//! Which configured model a request belongs to, from its path alone, so the
//! `model` label stays bounded to the configured names.

use std::sync::Arc;

use crate::config::{Model, Protocol};

/// Maps request paths to configured models.
#[derive(Debug, Clone)]
pub struct Routes {
    names: Vec<Arc<str>>,
    /// The single model that takes paths naming no model (OpenAI, JSON).
    catch_all: Option<usize>,
}

impl Routes {
    /// Builds routes for the configured models.
    pub fn new(models: &[Model]) -> Self {
        let unnamed: Vec<usize> = models
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m.protocol, Some(Protocol::Openai | Protocol::Json)))
            .map(|(i, _)| i)
            .collect();
        Routes {
            names: models.iter().map(|m| Arc::from(m.name.as_str())).collect(),
            catch_all: (unnamed.len() == 1).then(|| unnamed[0]),
        }
    }

    /// The model index for a path: `/v2/models/{m}/…`, `/v1/models/{m}[:verb]`,
    /// or the one OpenAI/JSON model for other paths.
    pub fn match_path(&self, path: &str) -> Option<usize> {
        let named = path
            .strip_prefix("/v2/models/")
            .or_else(|| path.strip_prefix("/v1/models/"))
            .map(|rest| {
                let end = rest.find(['/', ':']).unwrap_or(rest.len());
                &rest[..end]
            });
        match named {
            Some(name) => self.names.iter().position(|n| **n == *name),
            None if path.starts_with("/v2/") => None,
            None => self.catch_all,
        }
    }

    /// The model's name, shared with exchanges.
    pub fn name(&self, index: usize) -> Option<&Arc<str>> {
        self.names.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, protocol: Option<Protocol>) -> Model {
        Model {
            name: name.into(),
            protocol,
            features: vec![],
            categorical: vec![],
            baseline: None,
            validate: crate::config::Validate::Observe,
            output: None,
            json: None,
        }
    }

    #[test]
    fn paths_name_their_models() {
        let routes = Routes::new(&[model("iris", None), model("llm", Some(Protocol::Openai))]);
        assert_eq!(routes.match_path("/v2/models/iris/infer"), Some(0));
        assert_eq!(
            routes.match_path("/v2/models/iris/versions/2/infer"),
            Some(0)
        );
        assert_eq!(routes.match_path("/v1/models/iris:predict"), Some(0));
        assert_eq!(routes.match_path("/v2/models/other/infer"), None);
        assert_eq!(routes.match_path("/v2/health/ready"), None);
        assert_eq!(routes.match_path("/v1/chat/completions"), Some(1));
    }
}
