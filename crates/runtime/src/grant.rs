//! Which models a caller may run: name patterns from its credentials' scopes. The front end
//! authenticates; the router checks the grant once the model is known (gRPC names the model
//! inside the message), before anything is queued.

/// Model name patterns: `*` matches any run of characters, everything else itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelGrant {
    patterns: Vec<String>,
}

impl ModelGrant {
    /// Every model.
    pub fn all() -> ModelGrant {
        ModelGrant {
            patterns: vec!["*".to_string()],
        }
    }

    pub fn new(patterns: Vec<String>) -> ModelGrant {
        ModelGrant { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn allows(&self, model: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| glob(p.as_bytes(), model.as_bytes()))
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// `*`-only glob, iterative with one backtrack point (linear in practice, never exponential).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        let g = ModelGrant::new(vec!["iris*".into(), "fraud-?".into(), "a*b*c".into()]);
        assert!(g.allows("iris") && g.allows("iris_logreg"));
        assert!(!g.allows("mlp") && !g.allows("xiris"));
        assert!(
            g.allows("fraud-?") && !g.allows("fraud-1"),
            "? is a plain character"
        );
        assert!(g.allows("abc") && g.allows("aXbYc") && !g.allows("aXbYcZ"));
        assert!(ModelGrant::all().allows("anything") && !ModelGrant::default().allows("x"));
        let long = "a".repeat(10_000);
        assert!(!ModelGrant::new(vec!["*a*a*a*a*b".into()]).allows(&long));
    }
}
