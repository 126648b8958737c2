//! Running `nft`: one transaction per call, fed on stdin (`nft -f -`), so a sync
//! either applies whole or not at all.

use std::process::Stdio;

use anyhow::{bail, Context};
use tokio::io::AsyncWriteExt;

/// Applies one transaction of nft commands.
pub async fn apply(transaction: &str) -> anyhow::Result<()> {
    apply_owned(transaction.to_string()).await
}

/// [`apply`] taking the text by value: a full sync's transaction is megabytes, and
/// handing it to the writer task saves a copy.
pub async fn apply_owned(transaction: String) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running nft (Debian's nftables package)")?;
    let mut stdin = child.stdin.take().context("nft stdin")?;
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(transaction.as_bytes()).await;
        // Dropping stdin closes it: nft reads to the end, then commits.
    });
    let out = child.wait_with_output().await?;
    let _ = writer.await;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "nft -f - failed: {}",
            err.chars().take(2000).collect::<String>()
        );
    }
    Ok(())
}

/// Whether the table exists (cheap: lists table names only).
pub async fn table_exists(family: &str, table: &str) -> anyhow::Result<bool> {
    let out = tokio::process::Command::new("nft")
        .args(["list", "tables", family])
        .output()
        .await
        .context("running nft")?;
    if !out.status.success() {
        bail!("nft list tables: {}", String::from_utf8_lossy(&out.stderr));
    }
    let wanted = format!("table {family} {table}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == wanted))
}

/// Removes a table if it is there (`--cleanup`).
pub async fn delete_table(family: &str, table: &str) -> anyhow::Result<()> {
    apply(&format!(
        "add table {family} {table}\ndelete table {family} {table}\n"
    ))
    .await
}
