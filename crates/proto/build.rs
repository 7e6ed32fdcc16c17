//! Generates the wire types and the agent API service from `proto/` with
//! protox (a pure-Rust .proto compiler), so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/coder/agent/v2/boundary.proto",
        "proto/coder/boundarylogproxy/codec/v1/codec.proto",
        "proto/warden/ack/v1/ack.proto",
        "proto/warden/agentapi/v2/agent.proto",
        "proto/warden/agent/v1/spool.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Hand-written to match the reference encoder's field order; see
        // src/wire/reference_order.rs.
        .extern_path(
            ".coder.agent.v2.BoundaryLog",
            "crate::wire::reference_order::BoundaryLog",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
