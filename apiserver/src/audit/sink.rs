//! Where audit lines go: stdout (`--audit-log-path=-`) or a file rotated as lumberjack
//! (kube-apiserver's log writer) rotates it: when a line would take the file past
//! `--audit-log-maxsize` MB (100 MB when 0), it is renamed to
//! `<name>-<UTC time, 2006-01-02T15-04-05.000>.<ext>` and a new file is started; then
//! backups beyond `--audit-log-maxbackup` (0: all kept) and older than
//! `--audit-log-maxage` days (0: no limit) are removed.
//!
//! Requests never write: they queue the line, and one dedicated thread writes (buffered,
//! flushed whenever the queue runs empty). The queue is bounded ([`QUEUE_LINES`]); when
//! it is full the request waits for room, as Kubernetes' default `blocking` mode does, so
//! no event is ever dropped and a disk that cannot keep up slows requests down instead
//! of losing the trail.

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::time::Duration;

/// Lines that may wait for the writer before requests wait for it.
pub const QUEUE_LINES: usize = 10_000;
const MEGABYTE: u64 = 1024 * 1024;
/// lumberjack's default when `--audit-log-maxsize` is 0.
const DEFAULT_MAX_MB: u64 = 100;
/// lumberjack's backup time format, in chrono's spelling.
const BACKUP_TIME: &str = "%Y-%m-%dT%H-%M-%S%.3f";

/// The `--audit-log-*` flags.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// `-` for stdout.
    pub path: String,
    pub max_age_days: u64,
    pub max_backups: usize,
    pub max_size_mb: u64,
}

/// The writing end, cheap to clone.
#[derive(Clone)]
pub struct Sink {
    queue: SyncSender<Vec<u8>>,
}

impl Sink {
    /// Open the log (creating its directory, appending to an existing file) and start
    /// the writer thread.
    pub fn open(opts: &LogOptions) -> anyhow::Result<Sink> {
        let out: Box<dyn Output> = if opts.path == "-" {
            Box::new(Stdout(std::io::stdout()))
        } else {
            Box::new(RotatingFile::open(opts)?)
        };
        let (queue, lines) = sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(lines, out))
            .context("starting the audit log writer")?;
        Ok(Sink { queue })
    }

    /// Queue one line; waits while the queue is full.
    pub fn write(&self, line: Vec<u8>) {
        if self.queue.send(line).is_err() {
            tracing::error!("the audit log writer has stopped; event lost");
        }
    }
}

trait Output: Send {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}

struct Stdout(std::io::Stdout);

impl Output for Stdout {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.0.lock().write_all(line)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().flush()
    }
}

fn write_lines(lines: Receiver<Vec<u8>>, mut out: Box<dyn Output>) {
    let mut failing = false;
    loop {
        let line = match lines.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Empty) => {
                // Idle: what is written is on disk before we wait for more.
                if let Err(e) = out.flush() {
                    tracing::error!(error = %e, "flushing the audit log");
                }
                match lines.recv() {
                    Ok(line) => line,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        };
        match out.write_line(&line) {
            Ok(()) => failing = false,
            Err(e) => {
                // Once per run of failures, not once per line.
                if !failing {
                    tracing::error!(error = %e, "writing the audit log");
                }
                failing = true;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// lumberjack's `Logger`.
pub struct RotatingFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_size: u64,
    max_backups: usize,
    max_age: Option<chrono::Duration>,
}

impl RotatingFile {
    pub fn open(opts: &LogOptions) -> anyhow::Result<RotatingFile> {
        let path = PathBuf::from(&opts.path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        let max_size = if opts.max_size_mb == 0 {
            DEFAULT_MAX_MB
        } else {
            opts.max_size_mb
        } * MEGABYTE;
        Ok(RotatingFile {
            path,
            file: BufWriter::with_capacity(64 * 1024, file),
            size,
            max_size,
            max_backups: opts.max_backups,
            max_age: (opts.max_age_days > 0)
                .then(|| chrono::Duration::days(opts.max_age_days as i64)),
        })
    }

    /// With a maximum size in bytes (tests).
    #[cfg(test)]
    fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_size = max;
        self
    }

    /// Move the current file aside and start a new one, then prune backups.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        // Two rotations in one millisecond must not share a backup name.
        let mut at = Utc::now();
        let mut backup = backup_name(&self.path, at);
        while backup.exists() {
            at += chrono::Duration::milliseconds(1);
            backup = backup_name(&self.path, at);
        }
        std::fs::rename(&self.path, &backup)?;
        let file = open_append(&self.path).map_err(std::io::Error::other)?;
        self.file = BufWriter::with_capacity(64 * 1024, file);
        self.size = 0;
        self.prune(Utc::now());
        Ok(())
    }

    /// lumberjack's `millRunOnce` without compression: newest `max_backups` kept, and
    /// none older than `max_age`.
    fn prune(&self, now: DateTime<Utc>) {
        let mut backups = backups(&self.path);
        backups.sort_by_key(|b| std::cmp::Reverse(b.1));
        let mut remove = Vec::new();
        if self.max_backups > 0 && backups.len() > self.max_backups {
            remove.extend(backups.split_off(self.max_backups));
        }
        if let Some(age) = self.max_age {
            let cutoff = now - age;
            let (old, _): (Vec<_>, Vec<_>) = backups.into_iter().partition(|b| b.1 < cutoff);
            remove.extend(old);
        }
        for (path, _) in remove {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing an old audit log");
            }
        }
    }
}

impl Output for RotatingFile {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64;
        // A line larger than the limit gets a file of its own (lumberjack refuses it;
        // an audit trail with a hole is worse than one oversized file).
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening the audit log {}", path.display()))
}

/// `audit.log` → `audit-2024-05-01T10-20-30.123.log`, next to it.
fn backup_name(path: &Path, at: DateTime<Utc>) -> PathBuf {
    let (prefix, ext) = split_name(path);
    path.with_file_name(format!("{prefix}-{}{ext}", at.format(BACKUP_TIME)))
}

/// The file name before and from its extension (`.log`, or "").
fn split_name(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match path.extension() {
        Some(ext) => {
            let ext = format!(".{}", ext.to_string_lossy());
            (name[..name.len() - ext.len()].to_string(), ext)
        }
        None => (name, String::new()),
    }
}

/// The backups of `path` with the time their names carry.
fn backups(path: &Path) -> Vec<(PathBuf, DateTime<Utc>)> {
    let (prefix, ext) = split_name(path);
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stamp = name
                .strip_prefix(&format!("{prefix}-"))?
                .strip_suffix(ext.as_str())?;
            let t = NaiveDateTime::parse_from_str(stamp, BACKUP_TIME).ok()?;
            Some((e.path(), t.and_utc()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, backups: usize, age: u64) -> LogOptions {
        LogOptions {
            path: dir.join("audit.log").display().to_string(),
            max_age_days: age,
            max_backups: backups,
            max_size_mb: 1,
        }
    }

    #[test]
    fn backup_names_are_lumberjacks() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T10:20:30.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            backup_name(Path::new("/var/log/audit.log"), at),
            PathBuf::from("/var/log/audit-2024-05-01T10-20-30.123.log")
        );
        assert_eq!(
            backup_name(Path::new("/var/log/audit"), at),
            PathBuf::from("/var/log/audit-2024-05-01T10-20-30.123")
        );
    }

    #[test]
    fn rotation_by_size_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(&opts(dir.path(), 2, 0))
            .unwrap()
            .with_max_bytes(100);
        let line = [b'x'; 39];
        for _ in 0..12 {
            f.write_line(&line).unwrap();
        }
        f.flush().unwrap();
        // Two lines a file (a third would pass 100 bytes): 6 files made, 2 backups kept.
        let found = backups(&dir.path().join("audit.log"));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            std::fs::metadata(dir.path().join("audit.log"))
                .unwrap()
                .len(),
            78
        );
        for (p, _) in &found {
            assert_eq!(std::fs::metadata(p).unwrap().len(), 78);
        }
    }

    #[test]
    fn appends_to_an_existing_file_and_prunes_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "old\n").unwrap();
        let stale = backup_name(&path, Utc::now() - chrono::Duration::days(3));
        let fresh = backup_name(&path, Utc::now() - chrono::Duration::hours(1));
        std::fs::write(&stale, "").unwrap();
        std::fs::write(&fresh, "").unwrap();
        std::fs::write(dir.path().join("other-2024-01-01T00-00-00.000.log"), "").unwrap();
        let mut f = RotatingFile::open(&opts(dir.path(), 0, 2))
            .unwrap()
            .with_max_bytes(8);
        f.write_line(b"new\n").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\nnew\n");
        f.write_line(b"next\n").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "next\n");
        assert!(!stale.exists() && fresh.exists());
        assert!(dir
            .path()
            .join("other-2024-01-01T00-00-00.000.log")
            .exists());
        assert_eq!(backups(&path).len(), 2);
    }

    #[test]
    fn an_oversized_line_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(&opts(dir.path(), 0, 0))
            .unwrap()
            .with_max_bytes(10);
        f.write_line(b"ab\n").unwrap();
        f.write_line(&[b'y'; 20]).unwrap();
        f.write_line(b"cd\n").unwrap();
        f.flush().unwrap();
        assert_eq!(backups(&dir.path().join("audit.log")).len(), 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("audit.log")).unwrap(),
            "cd\n"
        );
    }
}
