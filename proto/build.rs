//! Compiles the slicebed.v1 contract with protox (pure Rust), so no system `protoc` is needed.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/slicebed/v1/types.proto",
        "proto/slicebed/v1/slices.proto",
        "proto/slicebed/v1/admin.proto",
        "proto/slicebed/v1/node.proto",
        "proto/slicebed/v1/access.proto",
        "proto/slicebed/v1/images.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("slicebed_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
