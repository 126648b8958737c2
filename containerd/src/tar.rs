//! Just enough of the tar format: a deterministic ustar writer for the images this
//! crate builds, and an index of the regular files in an archive for import (ustar,
//! GNU long names and pax `path` records, as docker, skopeo and umoci write them).

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};

/// Every entry's modification time: fixed, so an image's digest is the same every run.
pub(crate) const MTIME: u64 = 946_684_800; // 2000-01-01T00:00:00Z

/// An entry to write.
pub(crate) enum Entry<'a> {
    Dir {
        path: &'a str,
        mode: u32,
    },
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    Symlink {
        path: &'a str,
        target: &'a str,
    },
}

/// Writes ustar entries owned by root with fixed times.
pub(crate) struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    pub(crate) fn new(out: W) -> Self {
        Writer { out }
    }

    pub(crate) fn append(&mut self, entry: Entry<'_>) -> anyhow::Result<()> {
        let (path, mode, size, kind, link) = match &entry {
            Entry::Dir { path, mode } => (
                format!("{}/", path.trim_end_matches('/')),
                *mode,
                0,
                b'5',
                "",
            ),
            Entry::File { path, mode, data } => {
                (path.to_string(), *mode, data.len() as u64, b'0', "")
            }
            Entry::Symlink { path, target } => (path.to_string(), 0o777, 0, b'2', *target),
        };
        let mut h = [0u8; 512];
        let (prefix, name) = split_path(&path)?;
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], mode as u64);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], MTIME);
        h[156] = kind;
        if link.len() > 100 {
            bail!("symlink target too long: {link}");
        }
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        octal(&mut h[148..155], sum as u64);
        h[155] = b' ';
        self.out.write_all(&h)?;
        if let Entry::File { data, .. } = entry {
            self.out.write_all(data)?;
            let pad = (512 - data.len() % 512) % 512;
            self.out.write_all(&vec![0u8; pad])?;
        }
        Ok(())
    }

    /// The two zero blocks that end an archive.
    pub(crate) fn finish(mut self) -> anyhow::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        Ok(self.out)
    }
}

/// A path as ustar's (prefix, name) fields.
fn split_path(path: &str) -> anyhow::Result<(&str, &str)> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    for (i, _) in path.match_indices('/') {
        let (prefix, name) = (&path[..i], &path[i + 1..]);
        if prefix.len() <= 155 && name.len() <= 100 && !name.is_empty() {
            return Ok((prefix, name));
        }
    }
    bail!("path too long for ustar: {path}")
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

/// Where a regular file's bytes sit in an archive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub offset: u64,
    pub size: u64,
}

/// The regular files of an uncompressed tar archive by normalised path (no leading
/// `./` or `/`), reading only the headers.
pub(crate) fn index<R: Read + Seek>(r: &mut R) -> anyhow::Result<HashMap<String, Span>> {
    let mut files = HashMap::new();
    let mut pos = 0u64;
    let mut long_name: Option<String> = None;
    loop {
        let mut h = [0u8; 512];
        r.seek(SeekFrom::Start(pos))?;
        if read_full(r, &mut h)? < 512 {
            break; // a truncated trailer is tolerated, as tar does
        }
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let stored: u32 = parse_number(&h[148..156]).context("bad checksum field")? as u32;
        let mut check = h;
        check[148..156].copy_from_slice(b"        ");
        if check.iter().map(|b| *b as u32).sum::<u32>() != stored {
            bail!("not a tar archive (header checksum mismatch at offset {pos})");
        }
        let size = parse_number(&h[124..136]).context("bad size field")?;
        let data = pos + 512;
        let next = data + size.div_ceil(512) * 512;
        let kind = h[156];
        match kind {
            b'L' => {
                long_name = Some(read_text(r, data, size)?.trim_end_matches('\0').to_string());
            }
            b'x' => {
                let text = read_text(r, data, size)?;
                if let Some(p) = pax_path(&text) {
                    long_name = Some(p);
                }
            }
            b'g' => {}
            _ => {
                let name = long_name.take().unwrap_or_else(|| {
                    let prefix = cstr(&h[345..500]);
                    let name = cstr(&h[..100]);
                    if prefix.is_empty() || &h[257..262] != b"ustar" {
                        name
                    } else {
                        format!("{prefix}/{name}")
                    }
                });
                if kind == b'0' || kind == 0 {
                    files.insert(normalise(&name), Span { offset: data, size });
                }
            }
        }
        pos = next;
    }
    Ok(files)
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_text<R: Read + Seek>(r: &mut R, offset: u64, size: u64) -> anyhow::Result<String> {
    if size > 1 << 20 {
        bail!("tar metadata record of {size} bytes");
    }
    r.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; size as usize];
    r.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The `path` of a pax extended header ("<len> path=<value>\n" records).
fn pax_path(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (_, kv) = line.split_once(' ')?;
        kv.strip_prefix("path=").map(str::to_string)
    })
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Octal (NUL/space padded) or GNU base-256 numbers.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(*b as u64)?;
        }
        return Some(v);
    }
    let s = String::from_utf8_lossy(field);
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

pub(crate) fn normalise(path: &str) -> String {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    p.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_it_indexes() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(60));
        let mut w = Writer::new(Vec::new());
        w.append(Entry::Dir {
            path: "etc",
            mode: 0o755,
        })
        .unwrap();
        w.append(Entry::File {
            path: "etc/passwd",
            mode: 0o644,
            data: b"root\n",
        })
        .unwrap();
        w.append(Entry::Symlink {
            path: "bin/sh",
            target: "busybox",
        })
        .unwrap();
        w.append(Entry::File {
            path: &long,
            mode: 0o644,
            data: &[7u8; 600],
        })
        .unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let mut cur = std::io::Cursor::new(bytes.clone());
        let files = index(&mut cur).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        let span = files["etc/passwd"];
        assert_eq!(
            &bytes[span.offset as usize..(span.offset + span.size) as usize],
            b"root\n"
        );
        assert_eq!(files[&long].size, 600);
    }

    #[test]
    fn rejects_garbage() {
        let mut cur = std::io::Cursor::new(vec![1u8; 2048]);
        assert!(index(&mut cur).is_err());
        let mut empty = std::io::Cursor::new(Vec::new());
        assert!(index(&mut empty).unwrap().is_empty());
    }

    #[test]
    fn reads_pax_and_gnu_names() {
        assert_eq!(
            pax_path("30 path=a/very/long/name\n"),
            Some("a/very/long/name".into())
        );
        assert_eq!(parse_number(b"0000644\0"), Some(0o644));
        assert_eq!(
            parse_number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(normalise("./blobs/sha256/x"), "blobs/sha256/x");
    }
}
