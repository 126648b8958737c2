//! A KMS v2 plugin for trying `--encryption-provider-config` with `kms` by hand:
//! AES-256-GCM under a fixed key (never for production).
//! `cargo run -p keelson-apiserver --example kms_plugin -- /run/keelson-kms.sock [key-id]`

use keelson_apiserver::encryption::kms_plugin::TestKms;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let socket = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: kms_plugin <socket path> [key id]"))?;
    let key_id = args.next().unwrap_or_else(|| "key-1".into());
    TestKms::new(&key_id).serve(socket.as_ref()).await?;
    println!("KMS v2 test plugin on unix://{socket} (key id {key_id})");
    keelson_apiserver::shutdown_signal().await;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
