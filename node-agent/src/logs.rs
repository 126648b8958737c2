//! Container logs, read from the files containerd writes in the CRI log format
//! (`<RFC3339Nano> <stdout|stderr> <P|F> <text>`: `P` lines continue on the next),
//! with the options of `kubectl logs`: `tailLines`, `sinceSeconds`/`sinceTime`,
//! `limitBytes`, `timestamps`, `follow` (until the container stops).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// `kubectl logs` options, as the kubelet's `/containerLogs` takes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<i64>,
    pub timestamps: bool,
}

impl LogOptions {
    /// From the query string (`sinceSeconds` becomes a time).
    pub fn from_query(q: &[(String, String)]) -> Result<LogOptions, String> {
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let flag = |k: &str| get(k).is_some_and(|v| v == "true" || v == "1");
        let num = |k: &str| -> Result<Option<i64>, String> {
            get(k)
                .map(|v| v.parse::<i64>().map_err(|_| format!("invalid {k}: {v:?}")))
                .transpose()
        };
        let mut since = None;
        if let Some(s) = num("sinceSeconds")? {
            if s <= 0 {
                return Err("sinceSeconds must be greater than 0".into());
            }
            since = Some(crate::pods::status::now() - std::time::Duration::from_secs(s as u64));
        }
        if let Some(t) = get("sinceTime") {
            since = Some(
                t.parse::<Timestamp>()
                    .map_err(|e| format!("invalid sinceTime {t:?}: {e}"))?,
            );
        }
        Ok(LogOptions {
            follow: flag("follow"),
            tail_lines: num("tailLines")?,
            since,
            limit_bytes: num("limitBytes")?,
            timestamps: flag("timestamps"),
        })
    }
}

/// One parsed line (a `P` line's text joins the next line's).
#[derive(Debug, Clone, PartialEq)]
struct Line {
    time: Option<Timestamp>,
    raw_time: String,
    text: Vec<u8>,
}

/// Parse complete lines from `buf`; returns them and how many bytes were consumed.
fn parse(buf: &[u8], pending: &mut Vec<u8>) -> (Vec<Line>, usize) {
    let mut out = Vec::new();
    let mut consumed = 0;
    while let Some(nl) = buf[consumed..].iter().position(|b| *b == b'\n') {
        let line = &buf[consumed..consumed + nl];
        consumed += nl + 1;
        let mut parts = line.splitn(4, |b| *b == b' ');
        let (Some(ts), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let text = parts.next().unwrap_or_default();
        pending.extend_from_slice(text);
        if tag == b"P" {
            continue;
        }
        let raw_time = String::from_utf8_lossy(ts).to_string();
        let mut text = std::mem::take(pending);
        text.push(b'\n');
        out.push(Line {
            time: raw_time.parse().ok(),
            raw_time,
            text,
        });
    }
    (out, consumed)
}

/// The text of `P` lines with no `F` line after them: what a container wrote last without
/// a newline (flushed when the log is read to its end and will not grow).
fn flush_partial(pending: &mut Vec<u8>, last_time: &str) -> Option<Line> {
    if pending.is_empty() {
        return None;
    }
    Some(Line {
        time: last_time.parse().ok(),
        raw_time: last_time.to_string(),
        text: std::mem::take(pending),
    })
}

/// The timestamp of the last line in `buf` (for a flushed partial line).
fn last_timestamp(buf: &[u8]) -> String {
    buf.split(|b| *b == b'\n')
        .rfind(|l| !l.is_empty())
        .and_then(|l| l.split(|b| *b == b' ').next())
        .map(|t| String::from_utf8_lossy(t).to_string())
        .unwrap_or_default()
}

fn render(line: &Line, timestamps: bool) -> Vec<u8> {
    if timestamps {
        let mut v = line.raw_time.clone().into_bytes();
        v.push(b' ');
        v.extend_from_slice(&line.text);
        v
    } else {
        line.text.clone()
    }
}

/// Stream a container's log into `tx` per `opts`. `still_running` is asked while
/// following: once it says no and the file has no more, the stream ends.
pub async fn stream(
    path: PathBuf,
    opts: LogOptions,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    still_running: impl Fn() -> futures::future::BoxFuture<'static, bool>,
) {
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    let mut all = Vec::new();
    if let Err(e) = file.read_to_end(&mut all).await {
        let _ = tx.send(Err(e)).await;
        return;
    }
    let mut pending = Vec::new();
    let (mut lines, consumed) = parse(&all, &mut pending);
    let mut offset = consumed as u64;
    if !opts.follow {
        lines.extend(flush_partial(&mut pending, &last_timestamp(&all)));
    }
    let mut lines: Vec<Line> = lines
        .into_iter()
        .filter(|l| match (&opts.since, &l.time) {
            (Some(since), Some(t)) => t >= since,
            _ => true,
        })
        .collect();
    if let Some(n) = opts.tail_lines {
        let n = n.max(0) as usize;
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    let mut budget = opts.limit_bytes.map(|b| b.max(0) as usize);
    let mut send = |bytes: Vec<u8>| -> Option<Bytes> {
        match budget.as_mut() {
            Some(0) => None,
            Some(b) => {
                let take = bytes.len().min(*b);
                *b -= take;
                Some(Bytes::from(bytes[..take].to_vec()))
            }
            None => Some(Bytes::from(bytes)),
        }
    };
    for l in &lines {
        let Some(chunk) = send(render(l, opts.timestamps)) else {
            return;
        };
        if tx.send(Ok(chunk)).await.is_err() {
            return;
        }
    }
    if !opts.follow {
        return;
    }
    let mut carry: Vec<u8> = all[consumed..].to_vec();
    let mut last_time = last_timestamp(&all[..consumed]);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if tx.is_closed() {
            return;
        }
        let running = still_running().await;
        if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
            return;
        }
        let mut more = Vec::new();
        if file.read_to_end(&mut more).await.is_err() {
            return;
        }
        offset += more.len() as u64;
        carry.extend_from_slice(&more);
        let (mut lines, consumed) = parse(&carry, &mut pending);
        if consumed > 0 {
            last_time = last_timestamp(&carry[..consumed]);
        }
        carry.drain(..consumed);
        let finished = !running && more.is_empty();
        if finished {
            lines.extend(flush_partial(&mut pending, &last_time));
        }
        for l in &lines {
            let Some(chunk) = send(render(l, opts.timestamps)) else {
                return;
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        if finished {
            return;
        }
    }
}

/// The last `max_lines` lines (at most `max_bytes`) of a log, for
/// `FallbackToLogsOnError` termination messages.
pub fn tail_text(path: &std::path::Path, max_lines: usize, max_bytes: usize) -> String {
    let Ok(all) = std::fs::read(path) else {
        return String::new();
    };
    let mut pending = Vec::new();
    let (mut lines, _) = parse(&all, &mut pending);
    lines.extend(flush_partial(&mut pending, &last_timestamp(&all)));
    let start = lines.len().saturating_sub(max_lines);
    let mut text: Vec<u8> = lines[start..].iter().flat_map(|l| l.text.clone()).collect();
    if text.len() > max_bytes {
        text.drain(..text.len() - max_bytes);
    }
    String::from_utf8_lossy(&text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2024-01-01T00:00:01.000000000Z stdout F one\n\
2024-01-01T00:00:02.000000000Z stderr P tw\n\
2024-01-01T00:00:02.500000000Z stderr F o\n\
2024-01-01T00:00:03.000000000Z stdout F three\n";

    async fn collect(opts: LogOptions) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, LOG).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        stream(p, opts, tx, || Box::pin(async { false })).await;
        let mut out = String::new();
        while let Some(Ok(b)) = rx.recv().await {
            out.push_str(&String::from_utf8_lossy(&b));
        }
        out
    }

    #[tokio::test]
    async fn options_shape_the_output() {
        assert_eq!(collect(LogOptions::default()).await, "one\ntwo\nthree\n");
        assert_eq!(
            collect(LogOptions {
                tail_lines: Some(1),
                ..Default::default()
            })
            .await,
            "three\n"
        );
        assert_eq!(
            collect(LogOptions {
                limit_bytes: Some(6),
                ..Default::default()
            })
            .await,
            "one\ntw"
        );
        assert_eq!(
            collect(LogOptions {
                since: Some("2024-01-01T00:00:02.600Z".parse().unwrap()),
                ..Default::default()
            })
            .await,
            "three\n"
        );
        assert!(collect(LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        })
        .await
        .starts_with("2024-01-01T00:00:03.000000000Z three"));
    }

    #[tokio::test]
    async fn a_last_line_without_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(
            &p,
            "2024-01-01T00:00:01Z stdout F a\n2024-01-01T00:00:02Z stdout P DONE\n",
        )
        .unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        stream(p.clone(), LogOptions::default(), tx, || {
            Box::pin(async { false })
        })
        .await;
        let mut out = String::new();
        while let Some(Ok(b)) = rx.recv().await {
            out.push_str(&String::from_utf8_lossy(&b));
        }
        assert_eq!(out, "a\nDONE");
        assert_eq!(tail_text(&p, 80, 2048), "a\nDONE");
        let (tx, mut rx) = mpsc::channel(16);
        let follow = LogOptions {
            follow: true,
            ..Default::default()
        };
        stream(p, follow, tx, || Box::pin(async { false })).await;
        let mut out = String::new();
        while let Some(Ok(b)) = rx.recv().await {
            out.push_str(&String::from_utf8_lossy(&b));
        }
        assert_eq!(
            out, "a\nDONE",
            "follow flushes it once the container has stopped"
        );
    }

    #[test]
    fn query_options() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let o = LogOptions::from_query(&q(&[("follow", "true"), ("tailLines", "5")])).unwrap();
        assert!(o.follow);
        assert_eq!(o.tail_lines, Some(5));
        assert!(LogOptions::from_query(&q(&[("tailLines", "x")])).is_err());
        assert!(LogOptions::from_query(&q(&[("sinceSeconds", "0")])).is_err());
    }
}
