//! The XGBoost JSON and LightGBM text parsers; a model that parses is evaluated on one row
//! of zeros and one of NaNs (a parsed model must never index out of its arrays).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [
        inferd_backend_trees::parse_xgboost(text),
        inferd_backend_trees::parse_lightgbm(text),
    ] {
        if let Ok(forest) = parsed
            && forest.features() <= 1 << 12
        {
            let _ = forest.predict(&vec![0.0; forest.features()]);
            let _ = forest.predict(&vec![f32::NAN; forest.features()]);
        }
    }
});
