//! The JSON Lines audit log: every event, one per line, in `seq` order,
//! appended to a file and rotated by size. It is one more cursor consumer
//! of the events table, and its cursor is the file itself: at start the
//! last complete line says where to go on, so a crash or restart leaves
//! neither a gap nor a duplicate. Lines are `fsync`ed per batch.
//!
//! Each node writes its own log of every event (its own and other nodes'),
//! so any one node's log is a complete record.

use crate::http::Gateway;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AuditLogError + 'a {
    move |source| AuditLogError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The open log file and where it stands.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
    /// The seq of the last line written.
    pub last_seq: i64,
}

impl AuditLog {
    /// Opens (or creates) the log, dropping a torn last line, and reads
    /// the last seq from it or, when it is empty, from the newest rotated
    /// file.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<AuditLog, AuditLogError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io("opening", path))?;
        let (size, last) = tail(&mut file, path, true)?;
        let last_seq = match last {
            Some(s) => s,
            None => rotated(path)
                .last()
                .and_then(|p| {
                    let mut f = File::open(p).ok()?;
                    tail(&mut f, p, false).ok()?.1
                })
                .unwrap_or(0),
        };
        Ok(AuditLog {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            keep,
            last_seq,
        })
    }

    /// Appends events (already in order, each after `last_seq`) and syncs.
    pub fn append(&mut self, lines: &[(i64, String)]) -> Result<(), AuditLogError> {
        let mut buf = Vec::new();
        for (seq, json) in lines {
            if *seq <= self.last_seq {
                continue;
            }
            buf.extend_from_slice(json.as_bytes());
            buf.push(b'\n');
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&buf)
            .map_err(io("writing", &self.path))?;
        self.file.sync_data().map_err(io("syncing", &self.path))?;
        self.size += buf.len() as u64;
        if let Some((seq, _)) = lines.last() {
            self.last_seq = self.last_seq.max(*seq);
        }
        if self.size >= self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// `events.jsonl` becomes `events-<UTC time>-<seq>.jsonl`; the oldest
    /// rotated files beyond `keep` are deleted.
    fn rotate(&mut self) -> Result<(), AuditLogError> {
        let stem = self
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("events");
        // 20261127T123045678Z: sorts by time, no spaces or colons.
        let stamp =
            crate::store::format_rfc3339(crate::store::now_ms()).replace([':', '-', '.'], "");
        let rotated_name = format!("{stem}-{stamp}-{:012}.jsonl", self.last_seq);
        let target = self.path.with_file_name(rotated_name);
        std::fs::rename(&self.path, &target).map_err(io("rotating", &self.path))?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(io("opening", &self.path))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.size = 0;
        let all = rotated(&self.path);
        if all.len() > self.keep {
            for old in &all[..all.len() - self.keep] {
                if let Err(e) = std::fs::remove_file(old) {
                    tracing::warn!(path = %old.display(), error = %e, "old audit log not removed");
                }
            }
        }
        Ok(())
    }
}

/// Rotated files of the log at `path`, oldest first (their names sort by
/// time).
pub fn rotated(path: &Path) -> Vec<PathBuf> {
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("events");
    let prefix = format!("{stem}-");
    let mut out: Vec<PathBuf> = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .into_iter()
    .flatten()
    .flatten()
    .map(|e| e.path())
    .filter(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".jsonl"))
    })
    .collect();
    out.sort();
    out
}

/// The file's size and the seq of its last complete line. With `repair`,
/// a torn last line (a crash mid-write) is cut off.
fn tail(file: &mut File, path: &Path, repair: bool) -> Result<(u64, Option<i64>), AuditLogError> {
    let len = file.metadata().map_err(io("reading", path))?.len();
    if len == 0 {
        return Ok((0, None));
    }
    let window = len.min(4 << 20);
    file.seek(SeekFrom::Start(len - window))
        .map_err(io("reading", path))?;
    let mut buf = Vec::with_capacity(window as usize);
    file.take(window)
        .read_to_end(&mut buf)
        .map_err(io("reading", path))?;
    let mut size = len;
    if buf.last() != Some(&b'\n') {
        let keep = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        size = len - window + keep as u64;
        if repair {
            tracing::warn!(path = %path.display(), "audit log ended in a torn line; cut it off");
            file.set_len(size).map_err(io("repairing", path))?;
        }
        buf.truncate(keep);
    }
    let last = buf
        .split(|&b| b == b'\n')
        .rev()
        .find(|l| !l.is_empty())
        .and_then(|l| {
            #[derive(serde::Deserialize)]
            struct Seq {
                seq: i64,
            }
            serde_json::from_slice::<Seq>(l).ok().map(|s| s.seq)
        });
    Ok((size, last))
}

/// Copies events from the table into the log until `flush` turns true,
/// then catches up once more (with what the writer flushed at shutdown)
/// and returns.
pub async fn run(gw: Arc<Gateway>, path: PathBuf, mut flush: watch::Receiver<bool>) {
    let cfg = gw.live().events.clone();
    let opened = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            AuditLog::open(&path, cfg.audit_log_max_bytes, cfg.audit_log_keep)
        })
        .await
    };
    let mut log = match opened {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "audit log not opened: events are not written to it");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "audit log task failed");
            return;
        }
    };
    tracing::info!(path = %path.display(), after = log.last_seq, "audit log open");
    let mut wake = gw.events.subscribe();
    let mut last_round = false;
    loop {
        let page = match gw.store.db.events_after(log.last_seq, 1000).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "audit log: events not readable");
                if last_round {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let full = page.len() == 1000;
        if !page.is_empty() {
            let lines: Vec<(i64, String)> = page.iter().map(|e| (e.seq, e.json())).collect();
            let result = tokio::task::spawn_blocking(move || {
                let r = log.append(&lines);
                (log, r)
            })
            .await;
            match result {
                Ok((l, r)) => {
                    log = l;
                    if let Err(e) = r {
                        tracing::error!(error = %e, "audit log write failed; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit log task failed");
                    return;
                }
            }
        }
        if full {
            continue;
        }
        if last_round {
            return;
        }
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(super::events::POLL) => {}
            _ = flush.changed() => last_round = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(from: i64, to: i64) -> Vec<(i64, String)> {
        (from..=to)
            .map(|s| {
                (
                    s,
                    format!("{{\"seq\":{s},\"pad\":\"{}\"}}", "x".repeat(100)),
                )
            })
            .collect()
    }

    #[test]
    fn rotates_keeps_and_resumes_after_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/events.jsonl");
        let mut log = AuditLog::open(&path, 4096, 2).unwrap();
        assert_eq!(log.last_seq, 0);
        for chunk in 0..20 {
            log.append(&lines(chunk * 10 + 1, chunk * 10 + 10)).unwrap();
        }
        assert_eq!(log.last_seq, 200);
        let kept = rotated(&path);
        assert_eq!(kept.len(), 2, "{kept:?}");
        // Replays below the cursor are ignored.
        log.append(&lines(150, 200)).unwrap();
        drop(log);
        // A crash in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":201,\"pa").unwrap();
        drop(f);
        let log = AuditLog::open(&path, 4096, 2).unwrap();
        assert_eq!(log.last_seq, 200);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        // Every line of the files still there is whole and in order.
        let mut all = Vec::new();
        for p in rotated(&path).iter().chain([&path]) {
            for l in std::fs::read_to_string(p).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                all.push(v["seq"].as_i64().unwrap());
            }
        }
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
        assert_eq!(*all.last().unwrap(), 200);
    }
}
