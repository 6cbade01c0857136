//! XGBoost and LightGBM fixtures against the libraries' own predict() (tests/fixtures/trees,
//! written by make_fixtures.py): binary, multi-class and regression, with missing values,
//! LightGBM categorical splits and zero-as-missing.

#[path = "../../../../tests/support/expected.rs"]
mod expected;

use expected::{Expected, as_f64, fixtures, number};
use inferd_backend_trees::TreeBackend;
use inferd_core::{Backend, ModelConfig};

fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("trees"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_tree_fixture_matches_its_library() {
    let names = names();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names {
        let dir = fixtures().join(format!("trees/{name}/1"));
        let model = TreeBackend
            .load(&dir, &ModelConfig::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = Expected::of(&name);
        for batch in [8, 1, 3] {
            let input = expected.inputs["input"].rows(batch);
            let output = &model.infer(vec![input]).unwrap()[0];
            let want = &expected.outputs["predictions"];
            assert_eq!(output.shape()[0], batch, "{name}");
            assert_eq!(output.shape()[1..], want.shape[1..], "{name}");
            let want: Vec<f64> = want.data[..output.len()].iter().map(number).collect();
            for (i, (g, w)) in as_f64(output).iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 + 1e-6 * w.abs(),
                    "{name}[{i}] batch {batch}: {g} != {w}"
                );
            }
        }
    }
}

#[test]
fn the_fixtures_exercise_categorical_and_zero_missing_splits() {
    let text = |name: &str| {
        std::fs::read_to_string(fixtures().join(format!("trees/{name}/1/model.txt"))).unwrap()
    };
    assert!(
        text("lgb_binary")
            .lines()
            .any(|l| l.starts_with("num_cat=") && l != "num_cat=0")
    );
    // decision_type bits 2-3 = 1: zero is the missing value.
    assert!(text("lgb_regression").lines().any(|l| {
        l.strip_prefix("decision_type=").is_some_and(|v| {
            v.split(' ')
                .any(|d| d.parse::<u8>().is_ok_and(|d| (d >> 2) & 3 == 1))
        })
    }));
}

#[test]
fn unsupported_models_are_refused_with_a_reason() {
    let dir = std::env::temp_dir().join(format!("inferd-trees-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let xgb = std::fs::read_to_string(fixtures().join("trees/xgb_binary/1/model.json")).unwrap();
    std::fs::write(
        dir.join("model.json"),
        xgb.replace("binary:logistic", "rank:pairwise"),
    )
    .unwrap();
    let err = TreeBackend
        .load(&dir, &ModelConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("objective 'rank:pairwise' is not supported"),
        "{err}"
    );
    let looped = xgb.replacen("\"left_children\":[1,", "\"left_children\":[0,", 1);
    assert_ne!(looped, xgb);
    std::fs::write(dir.join("model.json"), looped).unwrap();
    let err = TreeBackend
        .load(&dir, &ModelConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("reached twice"), "{err}");
    std::fs::write(dir.join("model.json"), "{\"not\": 1}").unwrap();
    let err = TreeBackend
        .load(&dir, &ModelConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not an XGBoost JSON model"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
