//! config.toml, its JSON form and Triton's model-config JSON.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        inferd_server::fuzz::model_config(text);
    }
});
