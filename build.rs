//! Compiles the project's protobuf files without a system `protoc`: protox
//! parses them in pure Rust and tonic-prost-build generates the code.
//!
//! - `proto/kserve/grpc_predict_v2.proto`: the KServe v2 / Open Inference
//!   Protocol gRPC API, decoded by `sidewatch::protocol`. Its `bytes` fields
//!   become `bytes::Bytes`, so decoding a copied body shares its buffer.
//! - `proto/testing/echo.proto`: a service for the proxy's own tests.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/kserve/grpc_predict_v2.proto",
        "proto/testing/echo.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".inference")
        .compile_fds(descriptors)?;
    Ok(())
}
