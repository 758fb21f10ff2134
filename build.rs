//! Compiles the project's protobuf files without a system `protoc`: protox
//! parses them in pure Rust and tonic-prost-build generates the code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/testing/echo.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
