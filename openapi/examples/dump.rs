//! Writes the documents for `kinds::ALL` into a directory, for inspection and for
//! external validators: `cargo run -p keelson-openapi --example dump -- /tmp/openapi`.

use std::time::Instant;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "openapi-out".into());
    let start = Instant::now();
    let docs = keelson_openapi::OpenApi::build(keelson_resources::kinds::ALL);
    let took = start.elapsed();
    std::fs::create_dir_all(format!("{dir}/v3"))?;
    std::fs::write(format!("{dir}/v2.json"), docs.v2_json())?;
    std::fs::write(format!("{dir}/v2.pb"), docs.v2_protobuf())?;
    std::fs::write(format!("{dir}/v3.json"), docs.v3_index_json())?;
    let mut v3_total = 0;
    for path in docs.v3_paths() {
        let doc = docs.v3_group_version_json(path).expect("listed");
        v3_total += doc.len();
        std::fs::write(format!("{dir}/v3/{}.json", path.replace('/', "__")), doc)?;
    }
    println!(
        "built in {took:?}; v2 {} bytes JSON, {} bytes protobuf; {} v3 documents, {v3_total} bytes",
        docs.v2_json().len(),
        docs.v2_protobuf().len(),
        docs.v3_paths().count(),
    );
    Ok(())
}
