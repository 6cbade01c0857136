//! Traffic policies as values: config.toml's `[traffic]`, the `/traffic` API and the state
//! store all read and write this shape. How the router applies them lives in the runtime.

use serde::{Deserialize, Serialize};

/// One arm of a split: a version of this model, or another model (a cross-model experiment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitArm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub weight: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowArm {
    pub version: String,
    /// Share of requests copied to the shadow, 0 to 100.
    pub percent: f64,
}

/// A model's traffic policy, as `GET`/`PUT /v2/models/{m}/traffic` and `[traffic]` write it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitArm>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowArm>,
    /// Header (HTTP), metadata key (gRPC) or request parameter whose value pins the arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<String>,
    /// Largest absolute difference of float outputs that still counts as a match when a shadow
    /// is compared (models without a label output); default 1e-5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

/// Where a split arm sends requests, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArmTarget {
    Version(u64),
    Model(String),
}

impl std::fmt::Display for ArmTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArmTarget::Version(v) => write!(f, "version {v}"),
            ArmTarget::Model(m) => write!(f, "model '{m}'"),
        }
    }
}

impl TrafficPolicy {
    pub fn is_empty(&self) -> bool {
        self.split.is_empty() && self.shadow.is_empty()
    }

    /// Checks the shape of the policy (weights, percents, names), before any version is looked
    /// at; the arms resolved, with weights normalised to sum 1, in the given order.
    pub fn arms(&self) -> Result<Vec<(ArmTarget, f64)>, String> {
        let mut arms = Vec::with_capacity(self.split.len());
        for (i, arm) in self.split.iter().enumerate() {
            let target =
                match (&arm.version, &arm.model) {
                    (Some(v), None) => ArmTarget::Version(v.parse::<u64>().map_err(|_| {
                        format!("split[{i}]: version '{v}' is not a version number")
                    })?),
                    (None, Some(m)) if !m.is_empty() => ArmTarget::Model(m.clone()),
                    _ => {
                        return Err(format!(
                            "split[{i}] must name either a \"version\" or a \"model\""
                        ));
                    }
                };
            if !arm.weight.is_finite() || arm.weight < 0.0 {
                return Err(format!(
                    "split[{i}] ({target}) has weight {}; weights are numbers of 0 or more",
                    arm.weight
                ));
            }
            if arms.iter().any(|(t, _)| *t == target) {
                return Err(format!("split names {target} twice"));
            }
            arms.push((target, arm.weight));
        }
        let total: f64 = arms.iter().map(|(_, w)| w).sum();
        if !arms.is_empty() && total <= 0.0 {
            return Err("the split's weights are all zero: give some arm a weight".into());
        }
        // Shares are weight / total: a total past f64's range would make every share 0.
        if !total.is_finite() {
            return Err(format!(
                "the split's weights add up past {}: use smaller numbers (only their ratios count)",
                f64::MAX
            ));
        }
        for (i, s) in self.shadow.iter().enumerate() {
            s.version.parse::<u64>().map_err(|_| {
                format!(
                    "shadow[{i}]: version '{}' is not a version number",
                    s.version
                )
            })?;
            if !(0.0..=100.0).contains(&s.percent) || !s.percent.is_finite() {
                return Err(format!(
                    "shadow[{i}] (version {}) has percent {}; it must be between 0 and 100",
                    s.version, s.percent
                ));
            }
        }
        if let Some(key) = &self.sticky
            && (key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(format!("sticky '{key}' must be a header name"));
        }
        if let Some(t) = self.tolerance
            && (!t.is_finite() || t < 0.0)
        {
            return Err(format!("tolerance {t} must be a number of 0 or more"));
        }
        Ok(arms.into_iter().map(|(t, w)| (t, w / total)).collect())
    }

    /// The shadow versions and the share of requests (0 to 1) each gets.
    pub fn shadows(&self) -> Vec<(u64, f64)> {
        self.shadow
            .iter()
            .filter_map(|s| Some((s.version.parse().ok()?, s.percent / 100.0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Result<Vec<(ArmTarget, f64)>, String> {
        serde_json::from_str::<TrafficPolicy>(json)
            .map_err(|e| e.to_string())?
            .arms()
    }

    #[test]
    fn weights_are_checked_and_normalised() {
        let arms = policy(r#"{"split":[{"version":"1","weight":90},{"version":"2","weight":10}]}"#)
            .unwrap();
        assert_eq!(
            arms,
            [(ArmTarget::Version(1), 0.9), (ArmTarget::Version(2), 0.1)]
        );
        assert!(
            policy(r#"{"split":[{"version":"1","weight":-1}]}"#)
                .unwrap_err()
                .contains("weight -1")
        );
        assert!(
            policy(r#"{"split":[{"version":"1","weight":0}]}"#)
                .unwrap_err()
                .contains("all zero")
        );
        assert!(
            policy(r#"{"split":[{"version":"1","weight":1e308},{"version":"2","weight":1e308}]}"#)
                .unwrap_err()
                .contains("add up past")
        );
        assert!(
            policy(r#"{"split":[{"weight":1}]}"#)
                .unwrap_err()
                .contains("either a \"version\" or a \"model\"")
        );
        assert!(
            policy(r#"{"shadow":[{"version":"3","percent":150}]}"#)
                .unwrap_err()
                .contains("between 0 and 100")
        );
        assert!(
            policy(r#"{"split":[],"bogus":1}"#)
                .unwrap_err()
                .contains("bogus")
        );
        let cross =
            policy(r#"{"split":[{"model":"a","weight":1},{"model":"b","weight":1}]}"#).unwrap();
        assert_eq!(cross[1], (ArmTarget::Model("b".into()), 0.5));
    }
}
