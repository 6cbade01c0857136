//! The part of a V1 path after `/v1/models/`: `m`, `m/versions/3`, `m/labels/prod`, each
//! optionally followed by `/metadata` or `:predict` (TF Serving's verbs follow a colon).

use crate::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Status,
    Metadata,
    Predict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Path {
    pub model: String,
    /// A version number or a label (alias); `None`: the router chooses.
    pub version: Option<String>,
    pub action: Action,
}

impl V1Path {
    pub fn parse(rest: &str) -> Result<V1Path, ApiError> {
        let bad = || {
            ApiError::new(
                inferd_runtime::ErrorKind::NotFound,
                format!(
                    "no V1 route /v1/models/{rest}: use /v1/models/<model>[/versions/<n>|/labels/<label>]\
                 [:predict|/metadata]"
                ),
            )
        };
        let (rest, verb) = match rest.rsplit_once(':') {
            Some((head, "predict")) => (head, Some(Action::Predict)),
            Some((_, verb)) => {
                return Err(ApiError::bad_request(format!(
                    "V1 verb ':{verb}' is not served here; only :predict (classify and regress \
                     are TF Serving's for TensorFlow signatures)"
                )));
            }
            None => (rest, None),
        };
        let (rest, action) = match (verb, rest.strip_suffix("/metadata")) {
            (Some(verb), None) => (rest, verb),
            (None, Some(head)) => (head, Action::Metadata),
            (None, None) => (rest, Action::Status),
            (Some(_), Some(_)) => return Err(bad()),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (model, version) = match parts[..] {
            [model] => (model, None),
            [model, "versions", v] => {
                if v.parse::<u64>().is_err() {
                    return Err(ApiError::bad_request(format!(
                        "version '{v}' is not a number; use /labels/{v} for a label"
                    )));
                }
                (model, Some(v))
            }
            [model, "labels", label] => (model, Some(label)),
            _ => return Err(bad()),
        };
        if model.is_empty() || version.is_some_and(str::is_empty) {
            return Err(bad());
        }
        Ok(V1Path {
            model: model.to_string(),
            version: version.map(str::to_string),
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(model: &str, version: Option<&str>, action: Action) -> V1Path {
        V1Path {
            model: model.into(),
            version: version.map(Into::into),
            action,
        }
    }

    #[test]
    fn tf_serving_paths() {
        assert_eq!(
            V1Path::parse("iris:predict").unwrap(),
            path("iris", None, Action::Predict)
        );
        assert_eq!(
            V1Path::parse("iris/versions/2:predict").unwrap(),
            path("iris", Some("2"), Action::Predict)
        );
        assert_eq!(
            V1Path::parse("iris/labels/production:predict").unwrap(),
            path("iris", Some("production"), Action::Predict)
        );
        assert_eq!(
            V1Path::parse("iris/versions/2/metadata").unwrap(),
            path("iris", Some("2"), Action::Metadata)
        );
        assert_eq!(
            V1Path::parse("iris").unwrap(),
            path("iris", None, Action::Status)
        );
        assert!(V1Path::parse("iris:classify").is_err());
        assert!(V1Path::parse("iris/versions/x:predict").is_err());
        assert!(V1Path::parse("iris/what/1").is_err());
        assert!(V1Path::parse(":predict").is_err());
    }
}
