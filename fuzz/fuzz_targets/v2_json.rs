//! The V2 REST JSON decoder (no binary extension).
#![no_main]
libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    inferd_server::fuzz::v2_request(body, None);
});
