//! sha256 digests in the `sha256:<hex>` form OCI and containerd use.

use ring::digest::{Context, SHA256};
use std::io::Read;

/// The digest of `bytes`.
pub(crate) fn of(bytes: &[u8]) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(bytes);
    finish(ctx)
}

/// The digest and length of everything `r` yields.
pub(crate) fn of_reader(mut r: impl Read) -> std::io::Result<(String, u64)> {
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        total += n as u64;
    }
    Ok((finish(ctx), total))
}

fn finish(ctx: Context) -> String {
    let mut s = String::from("sha256:");
    for b in ctx.finish().as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The hex part of a `sha256:` digest, checked: it names a file in `blobs/sha256/`.
pub(crate) fn hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// The OCI chain ID of a stack of layers (their uncompressed digests, bottom first):
/// the snapshot name containerd commits the unpacked stack under.
pub(crate) fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut it = diff_ids.iter();
    let mut chain = it.next()?.clone();
    for d in it {
        chain = of(format!("{chain} {d}").as_bytes());
    }
    Some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            of(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = of(b"a");
        let b = of(b"b");
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        assert_eq!(
            chain_id(&[a.clone(), b.clone()]),
            Some(of(format!("{a} {b}").as_bytes()))
        );
        assert_eq!(chain_id(&[]), None);
    }

    #[test]
    fn hex_rejects_paths() {
        assert!(hex("sha256:../../etc/passwd").is_none());
        assert!(hex(&of(b"x")).is_some());
        assert!(hex("md5:abc").is_none());
    }
}
