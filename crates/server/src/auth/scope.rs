//! API groups (Triton's, plus inferd's own) and the scopes that grant them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use inferd_runtime::ModelGrant;

/// What an endpoint belongs to; a scope names one (DESIGN.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Health,
    Metadata,
    Inference,
    SharedMemory,
    ModelConfig,
    ModelRepository,
    Statistics,
    Trace,
    Logging,
    Traffic,
    Audit,
    /// Every group.
    Admin,
}

impl Group {
    pub const ALL: [Group; 12] = [
        Group::Health,
        Group::Metadata,
        Group::Inference,
        Group::SharedMemory,
        Group::ModelConfig,
        Group::ModelRepository,
        Group::Statistics,
        Group::Trace,
        Group::Logging,
        Group::Traffic,
        Group::Audit,
        Group::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Health => "health",
            Group::Metadata => "metadata",
            Group::Inference => "inference",
            Group::SharedMemory => "shared-memory",
            Group::ModelConfig => "model-config",
            Group::ModelRepository => "model-repository",
            Group::Statistics => "statistics",
            Group::Trace => "trace",
            Group::Logging => "logging",
            Group::Traffic => "traffic",
            Group::Audit => "audit",
            Group::Admin => "admin",
        }
    }

    /// Groups whose scope may be limited to model name patterns.
    pub fn per_model(self) -> bool {
        matches!(self, Group::Inference | Group::Metadata)
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Group {
    type Err = String;
    fn from_str(s: &str) -> Result<Group, String> {
        Group::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Group::ALL.iter().map(|g| g.as_str()).collect();
                format!("unknown scope '{s}' (one of {})", names.join(", "))
            })
    }
}

/// What a principal may do: whole groups, and model patterns for inference and metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    groups: BTreeSet<Group>,
    inference: Vec<String>,
    metadata: Vec<String>,
}

impl Scopes {
    /// Parses scopes like `inference:fraud-*`, `metadata`, `admin`; unknown ones are an error
    /// (a typo must not silently grant nothing).
    pub fn parse<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        let mut out = Scopes::default();
        for scope in scopes {
            let scope = scope.trim();
            if scope.is_empty() {
                continue;
            }
            let (name, pattern) = match scope.split_once(':') {
                Some((name, pattern)) => (name, Some(pattern)),
                None => (scope, None),
            };
            let group: Group = name.parse()?;
            match (pattern, group) {
                (None, g) => {
                    out.groups.insert(g);
                }
                (Some(p), Group::Inference) if !p.is_empty() => out.inference.push(p.to_string()),
                (Some(p), Group::Metadata) if !p.is_empty() => out.metadata.push(p.to_string()),
                (Some(_), g) => {
                    return Err(format!(
                        "scope '{scope}': only inference and metadata take a model pattern, not {g}"
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Scopes from an OAuth `scope` claim: space-separated. Unknown entries are ignored here, as
    /// an identity provider issues scopes for other services too.
    pub fn from_claim<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Scopes {
        let known = scopes.into_iter().filter(|s| {
            let name = s.split_once(':').map_or(*s, |(n, _)| n);
            name.parse::<Group>().is_ok()
        });
        Scopes::parse(known).unwrap_or_default()
    }

    /// Whether the whole group is granted, whatever model.
    pub fn has(&self, group: Group) -> bool {
        self.groups.contains(&Group::Admin) || self.groups.contains(&group)
    }

    /// Whether any part of the group is granted (some models at least).
    pub fn touches(&self, group: Group) -> bool {
        self.has(group)
            || match group {
                Group::Inference => !self.inference.is_empty(),
                Group::Metadata => !self.metadata.is_empty(),
                _ => false,
            }
    }

    /// The models of a per-model group this principal may reach.
    pub fn grant(&self, group: Group) -> ModelGrant {
        if self.has(group) {
            return ModelGrant::all();
        }
        match group {
            Group::Inference => ModelGrant::new(self.inference.clone()),
            Group::Metadata => ModelGrant::new(self.metadata.clone()),
            _ => ModelGrant::default(),
        }
    }

    pub fn allows(&self, group: Group, model: Option<&str>) -> bool {
        match model {
            Some(m) if group.per_model() => self.grant(group).allows(m),
            _ => self.has(group),
        }
    }

    /// The scopes as written, for the key file.
    pub fn to_strings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.groups.iter().map(|g| g.to_string()).collect();
        out.extend(self.inference.iter().map(|p| format!("inference:{p}")));
        out.extend(self.metadata.iter().map(|p| format!("metadata:{p}")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_patterns_limit_inference_and_metadata_only() {
        let s = Scopes::parse(["inference:iris*", "metadata", "statistics"]).unwrap();
        assert!(s.allows(Group::Inference, Some("iris_logreg")));
        assert!(!s.allows(Group::Inference, Some("mlp")));
        assert!(s.touches(Group::Inference) && !s.has(Group::Inference));
        assert!(s.allows(Group::Metadata, Some("mlp")));
        assert!(!s.allows(Group::ModelRepository, None) && !s.allows(Group::Logging, None));
        assert!(Scopes::parse(["logging:x"]).is_err());
        assert!(
            Scopes::parse(["inferenc"])
                .unwrap_err()
                .contains("unknown scope")
        );
        let admin = Scopes::parse(["admin"]).unwrap();
        assert!(Group::ALL.iter().all(|g| admin.allows(*g, Some("any"))));
        let claim = Scopes::from_claim("openid inference:fraud-* profile".split(' '));
        assert!(claim.allows(Group::Inference, Some("fraud-1")) && !claim.touches(Group::Metadata));
    }
}
