//! Generates the gRPC service from ../../proto without a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../../proto";
    println!("cargo:rerun-if-changed={proto_dir}");
    let files = protox::compile(["grpc_service.proto"], [proto_dir])?;
    tonic_prost_build::configure()
        // The client serves `inferd batch --url grpc://...`; its transport is ours (hyper h2).
        .build_client(true)
        .build_transport(false)
        // Tensor bytes decode into refcounted slices of the message, and answers are encoded
        // from the backend's own buffers.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(files)?;
    Ok(())
}
