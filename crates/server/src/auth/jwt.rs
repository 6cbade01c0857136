//! JWT bearer tokens checked against an identity provider's JWKS: RS/PS/ES signatures only
//! (never `none` or shared-secret HMAC), keys cached by `kid` and re-fetched when a token
//! names one not seen yet (at most every [`REFETCH_EVERY`]), issuer, audience and time claims
//! with a leeway for clock skew.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use super::keys::Identity;
use super::quota::Rate;
use super::scope::Scopes;

/// Unknown `kid`s trigger a JWKS fetch no more often than this.
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);

const ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub jwks_url: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Claim holding the scopes; `scope` (space-separated) then `scp` (list) when unset.
    pub scope_claim: Option<String>,
    /// Claim holding a request rate (requests per second) for quotas.
    pub rate_claim: String,
    pub leeway: Duration,
}

struct Cached {
    keys: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    fetched: Option<Instant>,
}

pub struct Jwt {
    settings: JwtSettings,
    client: reqwest::Client,
    cache: RwLock<Cached>,
    /// One fetch at a time; others wait for its result.
    fetching: Mutex<()>,
}

/// Why a token is refused (401); never contains the token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JwtError(pub String);

impl Jwt {
    pub fn new(settings: JwtSettings) -> Result<Jwt, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("JWKS client: {e}"))?;
        Ok(Jwt {
            settings,
            client,
            cache: RwLock::new(Cached {
                keys: HashMap::new(),
                fetched: None,
            }),
            fetching: Mutex::new(()),
        })
    }

    /// Fetches the key set; the previous keys stay when it fails.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _one = self.fetching.lock().await;
        let fetched = async {
            let answer = self
                .client
                .get(&self.settings.jwks_url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !answer.status().is_success() {
                return Err(format!("status {}", answer.status()));
            }
            let body = answer.bytes().await.map_err(|e| e.to_string())?;
            serde_json::from_slice::<JwkSet>(&body).map_err(|e| format!("not a JWKS: {e}"))
        }
        .await;
        let mut cache = self.cache.write().await;
        cache.fetched = Some(Instant::now());
        let set = fetched.map_err(|e| format!("JWKS {}: {e}", self.settings.jwks_url))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (key, alg));
            }
        }
        cache.keys = keys;
        Ok(cache.keys.len())
    }

    async fn key(&self, kid: &str) -> Option<(DecodingKey, Option<Algorithm>)> {
        if let Some(k) = self.cache.read().await.keys.get(kid) {
            return Some(k.clone());
        }
        let due = {
            let cache = self.cache.read().await;
            cache.fetched.is_none_or(|at| at.elapsed() >= REFETCH_EVERY)
        };
        if due && let Err(e) = self.refresh().await {
            tracing::warn!("{e}");
        }
        self.cache.read().await.keys.get(kid).cloned()
    }

    /// Verifies `token` and returns who it stands for.
    pub async fn check(&self, token: &str) -> Result<Identity, JwtError> {
        let bad = |why: &str| JwtError(format!("invalid token: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(&e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(bad(&format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| bad("no kid in its header"))?;
        let (key, alg) = self
            .key(&kid)
            .await
            .ok_or_else(|| bad(&format!("no key '{kid}' in the JWKS")))?;
        if alg.is_some_and(|a| a != header.alg) {
            return Err(bad("its algorithm is not its key's"));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        match &self.settings.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| bad(&e.to_string()))?;
        let claims = data.claims;
        let id = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no sub claim"))?
            .to_string();
        let scopes = scopes_of(&claims, self.settings.scope_claim.as_deref());
        let rate = claims
            .get(&self.settings.rate_claim)
            .and_then(Value::as_f64)
            .and_then(|r| Rate::new(r, None).ok());
        Ok(Identity { id, scopes, rate })
    }
}

fn scopes_of(claims: &Map<String, Value>, claim: Option<&str>) -> Scopes {
    let names: Vec<&str> = match claim {
        Some(c) => vec![c],
        None => vec!["scope", "scp"],
    };
    for name in names {
        match claims.get(name) {
            Some(Value::String(s)) => return Scopes::from_claim(s.split(' ')),
            Some(Value::Array(items)) => {
                return Scopes::from_claim(items.iter().filter_map(Value::as_str));
            }
            _ => {}
        }
    }
    Scopes::default()
}
