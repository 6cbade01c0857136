//! gRPC ModelInferRequest from arbitrary protobuf bytes, then its conversion.
#![no_main]
libfuzzer_sys::fuzz_target!(|message: &[u8]| {
    inferd_server::fuzz::grpc_request(message);
});
