//! How the router applies traffic policies (the values are `inferd_core::TrafficPolicy`):
//! version aliases, weighted splits (sticky or random), shadow copies.

use std::collections::BTreeMap;

pub use inferd_core::{ArmTarget, ShadowArm, SplitArm, TrafficPolicy};

/// The alias unversioned requests go to when no split is set.
pub const PRODUCTION: &str = "production";

/// A version alias: `[a-z][a-z0-9_-]*`, and never a number.
pub fn check_alias(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let good = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if good {
        Ok(())
    } else {
        Err(format!(
            "alias '{name}' is not valid: it must match [a-z][a-z0-9_-]* (e.g. production, canary-2)"
        ))
    }
}

/// A point in [0, 1) for a sticky key: FNV-1a, so every replica and build agrees.
pub fn key_point(key: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Mixed further: FNV's low bits are weak for short keys.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The arm that `point` (in [0, 1)) falls in, over the arms that can serve (`serving[i]`),
/// their weights renormalised. Cumulative in the given order: an arm whose weight grows at the
/// end of the list only gains points, never loses them.
pub fn pick(weights: &[f64], serving: &[bool], point: f64) -> Option<usize> {
    let total: f64 = weights
        .iter()
        .zip(serving)
        .filter(|(_, s)| **s)
        .map(|(w, _)| *w)
        .sum();
    if total <= 0.0 {
        return None;
    }
    let mut at = 0.0;
    let mut last = None;
    for (i, (w, s)) in weights.iter().zip(serving).enumerate() {
        if !*s || *w <= 0.0 {
            continue;
        }
        at += w / total;
        last = Some(i);
        if point < at {
            return Some(i);
        }
    }
    last
}

/// Aliases of one model: name -> version.
pub type Aliases = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_names_not_numbers() {
        assert!(check_alias("production").is_ok());
        assert!(check_alias("canary-2_b").is_ok());
        for bad in ["", "3", "Prod", "-x", "a b", "é"] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_split_lands_within_its_weights() {
        let (mut canary, n) = (0, 100_000);
        for i in 0..n {
            let key = format!("request-{i}");
            if pick(&[0.9, 0.1], &[true, true], key_point(&key)) == Some(1) {
                canary += 1;
            }
        }
        let share = canary as f64 / n as f64;
        assert!((share - 0.1).abs() < 0.005, "{share}");
    }

    #[test]
    fn raising_the_last_arm_only_moves_keys_into_it() {
        for i in 0..5000 {
            let p = key_point(&format!("user-{i}"));
            let before = pick(&[0.9, 0.1], &[true, true], p);
            let after = pick(&[0.7, 0.3], &[true, true], p);
            if before == Some(1) {
                assert_eq!(after, Some(1), "key {i} left the canary");
            }
        }
    }

    #[test]
    fn arms_that_cannot_serve_give_their_share_to_the_others() {
        assert_eq!(pick(&[0.5, 0.5], &[false, true], 0.1), Some(1));
        assert_eq!(pick(&[0.5, 0.5], &[false, false], 0.1), None);
        assert_eq!(pick(&[0.0, 1.0], &[true, true], 0.0), Some(1));
    }
}
