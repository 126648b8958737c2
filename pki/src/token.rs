//! Kubernetes' static token file (`--token-auth-file`).
//!
//! CSV, one token per record: `token,user,uid[,"group1,group2,..."]`. As in Kubernetes, extra
//! columns after the groups are ignored, leading spaces of fields are trimmed, and a token
//! that appears twice keeps its last record (with a warning). Blank lines and lines whose
//! first non-blank character is `#` are skipped.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use subtle::ConstantTimeEq;

use crate::Identity;

/// One record of a token file.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub token: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &"<redacted>")
            .field("user", &self.user)
            .field("uid", &self.uid)
            .field("groups", &self.groups)
            .finish()
    }
}

/// The parsed contents of a static token file.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    path: Option<PathBuf>,
    entries: Vec<TokenEntry>,
}

impl TokenFile {
    /// Reads and parses a token file. Errors name the file and the line.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?;
        let mut tf =
            Self::parse(&text).with_context(|| format!("token file {}", path.display()))?;
        tf.path = Some(path.to_path_buf());
        Ok(tf)
    }

    /// Parses token file contents.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut entries: Vec<TokenEntry> = Vec::new();
        for (line, fields) in parse_csv(text)? {
            if fields.len() < 3 {
                bail!(
                    "line {line}: expected at least 3 columns (token, user name, user uid), found {}",
                    fields.len()
                );
            }
            let token = fields[0].clone();
            if token.is_empty() {
                bail!("line {line}: empty token");
            }
            if fields[1].is_empty() {
                bail!("line {line}: empty user name");
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let entry = TokenEntry {
                token,
                user: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
            };
            if let Some(i) = entries.iter().position(|e| e.token == entry.token) {
                tracing::warn!("token file line {line}: duplicate token, the last record wins");
                entries.remove(i);
            }
            entries.push(entry);
        }
        Ok(Self {
            path: None,
            entries,
        })
    }

    /// The file this was loaded from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn entries(&self) -> &[TokenEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity a bearer token authenticates as, if any.
    pub fn lookup(&self, token: &str) -> Option<Identity> {
        self.lookup_entry(token).map(|e| Identity {
            user: e.user.clone(),
            groups: e.groups.clone(),
        })
    }

    /// The record of a bearer token. Every token is compared in constant time, and all of them
    /// are compared whatever matches, so timing reveals neither which token nor how many
    /// leading bytes matched.
    pub fn lookup_entry(&self, token: &str) -> Option<&TokenEntry> {
        if token.is_empty() {
            return None;
        }
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.token.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(e);
            }
        }
        found
    }
}

/// A minimal RFC 4180 reader (as Go's encoding/csv with `TrimLeadingSpace`): returns each
/// record with the line it starts on.
fn parse_csv(text: &str) -> anyhow::Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        let start_line = line;
        // Skip blank and comment lines.
        let rest: String = text_until_newline(&mut chars.clone());
        if rest.trim().is_empty() || rest.trim_start().starts_with('#') {
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            line += 1;
            continue;
        }
        let mut fields = Vec::new();
        loop {
            // Leading spaces of a field are trimmed.
            while matches!(chars.peek(), Some(' ' | '\t')) {
                chars.next();
            }
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let quote_line = line;
                loop {
                    match chars.next() {
                        None => bail!("line {quote_line}: unterminated quoted field"),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                // After the closing quote: only a separator, end of line or trailing spaces.
                while matches!(chars.peek(), Some(' ' | '\t' | '\r')) {
                    chars.next();
                }
                match chars.peek() {
                    None | Some(',' | '\n') => {}
                    Some(c) => bail!("line {line}: unexpected {c:?} after a closing quote"),
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '\n' {
                        break;
                    }
                    if c == '"' {
                        bail!("line {line}: bare \" in an unquoted field (quote the whole field)");
                    }
                    field.push(c);
                    chars.next();
                }
                if field.ends_with('\r') {
                    field.pop();
                }
                field = field.trim_end().to_string();
            }
            fields.push(field);
            match chars.next() {
                Some(',') => continue,
                Some('\n') => {
                    line += 1;
                    break;
                }
                None => break,
                Some(c) => unreachable!("field ended on {c:?}"),
            }
        }
        records.push((start_line, fields));
    }
    Ok(records)
}

fn text_until_newline(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    chars.take_while(|&c| c != '\n').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records() {
        let tf = TokenFile::parse(
            "# static tokens\n\
             \n\
             abc123,alice,1001\r\n\
             def456,bob,1002,\"system:masters,devs\"\n\
             \x20 ghi789, carol ,1003,\"  g1 , ,g2\",ignored\n\
             \"quoted,tok\",\"dave \"\"d\"\"\",1004,single\n\
             multi,erin,1005,\"a,\nb\"\n\
             last,frank,1006,",
        )
        .unwrap();
        let get = |t: &str| tf.lookup_entry(t).cloned().unwrap();
        assert_eq!(tf.len(), 6);
        assert_eq!(
            get("abc123"),
            TokenEntry {
                token: "abc123".into(),
                user: "alice".into(),
                uid: "1001".into(),
                groups: vec![]
            }
        );
        assert_eq!(
            tf.lookup("def456").unwrap(),
            Identity {
                user: "bob".into(),
                groups: vec!["system:masters".into(), "devs".into()]
            }
        );
        assert_eq!(get("ghi789").user, "carol");
        assert_eq!(get("ghi789").groups, ["g1", "g2"]);
        assert_eq!(get("quoted,tok").user, "dave \"d\"");
        assert_eq!(get("quoted,tok").groups, ["single"]);
        assert_eq!(get("multi").groups, ["a", "b"]);
        assert_eq!(get("last").groups, Vec::<String>::new());
        assert!(tf.lookup("abc12").is_none());
        assert!(tf.lookup("abc1234").is_none());
        assert!(tf.lookup("").is_none());
    }

    #[test]
    fn duplicate_token_last_wins() {
        let tf = TokenFile::parse("t,a,1\nt,b,2\n").unwrap();
        assert_eq!(tf.len(), 1);
        assert_eq!(tf.lookup("t").unwrap().user, "b");
    }

    #[test]
    fn bad_lines() {
        let err = |text: &str| format!("{:#}", TokenFile::parse(text).unwrap_err());
        assert!(err("ok,u,1\n\nonly,two\n").contains("line 3: expected at least 3 columns"));
        assert!(err(",user,1\n").contains("line 1: empty token"));
        assert!(err("tok,,1\n").contains("line 1: empty user name"));
        assert!(err("# c\ntok,u,1,\"g1,g2\n").contains("line 2: unterminated quoted field"));
        assert!(err("tok,u,1,\"g\"x\n").contains("line 1: unexpected 'x' after a closing quote"));
        assert!(err("a,b,1\nto\"k,u,1\n").contains("line 2: bare \""));
    }

    #[test]
    fn load_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.csv");
        std::fs::write(&p, "good,u,1\nbad\n").unwrap();
        let msg = format!("{:#}", TokenFile::load(&p).unwrap_err());
        assert!(msg.contains("tokens.csv"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        std::fs::write(&p, "good,u,1,\"x,y\"\n").unwrap();
        let tf = TokenFile::load(&p).unwrap();
        assert_eq!(tf.path(), Some(p.as_path()));
        assert_eq!(tf.lookup("good").unwrap().groups, ["x", "y"]);
        assert!(TokenFile::load(&dir.path().join("missing")).is_err());
    }
}
