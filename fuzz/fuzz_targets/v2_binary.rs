//! The binary tensor extension: the first two bytes give Inference-Header-Content-Length
//! (past the body too), the rest is the body.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((len, body)) = data.split_first_chunk::<2>() {
        let header_length = u16::from_le_bytes(*len) as usize;
        inferd_server::fuzz::v2_request(body, Some(header_length));
    }
});
