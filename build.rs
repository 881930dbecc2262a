//! Compiles `proto/` with protox (a protobuf compiler in Rust), so a fresh
//! machine builds with cargo alone: no `protoc` to install.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos: Vec<PathBuf> =
        std::fs::read_dir("proto/overblik/v1")?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    protos.retain(|p| p.extension().is_some_and(|e| e == "proto"));
    protos.sort();
    let fds = protox::compile(&protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("overblik_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        // For `overblik lookup --json` and tests: print what the wire carries.
        .type_attribute(".overblik.v1", "#[derive(serde::Serialize)]")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
