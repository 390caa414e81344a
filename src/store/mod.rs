//! Durable state. For now the quarantine spool: every quarantined message is
//! on disk, fsynced, before any door answers "quarantined". The review
//! index (SQL) builds on these files.
//!
//! ```text
//! DATA_DIR/quarantine/blobs/ab/ab12…(sha256)   raw message, content-addressed
//! DATA_DIR/quarantine/records/ID.json          envelope, door, report
//! DATA_DIR/tmp/                                 writes in progress
//! ```
//!
//! Every write is temp file, fsync, rename, fsync of the directory, so a
//! crash leaves either the old state or the new one, never half a file.
//! All functions here block: call them from the blocking pool.

use crate::model::{Door, Envelope};
use crate::pipeline::Report;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding a quarantine record: {0}")]
    Encode(#[from] serde_json::Error),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// One quarantined message as written to disk.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub schema: &'static str,
    pub id: &'a str,
    pub received_unix: u64,
    pub door: Door,
    pub envelope: &'a Envelope,
    pub sha256: &'a str,
    pub size: u64,
    pub report: &'a Report,
}

#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    tmp: PathBuf,
    counter: AtomicU64,
}

impl Spool {
    /// Creates the directories if needed.
    pub fn open(data_dir: &Path) -> Result<Spool, StoreError> {
        let root = data_dir.join("quarantine");
        let tmp = data_dir.join("tmp");
        for dir in [root.join("blobs"), root.join("records"), tmp.clone()] {
            fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        // The 256 fan-out directories exist (and are durable) before any
        // blob is written, so a blob's directory entry never outlives a
        // crash less well than its record.
        let blobs = root.join("blobs");
        for i in 0..=255u8 {
            let dir = blobs.join(format!("{i:02x}"));
            fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        for dir in [&blobs, &root, data_dir] {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing directory", dir))?;
        }
        Ok(Spool {
            root,
            tmp,
            counter: AtomicU64::new(0),
        })
    }

    /// Stores a quarantined message; returns its id once both the message
    /// and its record are durable.
    pub fn quarantine(
        &self,
        raw: &[u8],
        envelope: &Envelope,
        door: Door,
        report: &Report,
    ) -> Result<String, StoreError> {
        let sha256 = hex::encode(Sha256::digest(raw));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!(
            "{}-{}-{}",
            now.as_millis(),
            &sha256[..16],
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let blob = self.blob_path(&sha256);
        // Content-addressed: the same message quarantined twice is one blob.
        if !blob.exists() {
            self.write_atomic(&blob, raw)?;
        }
        let record = Record {
            schema: "portcullis.quarantine.v1",
            id: &id,
            received_unix: now.as_secs(),
            door,
            envelope,
            sha256: &sha256,
            size: raw.len() as u64,
            report,
        };
        let json = serde_json::to_vec_pretty(&record)?;
        self.write_atomic(&self.root.join("records").join(format!("{id}.json")), &json)?;
        Ok(id)
    }

    /// The raw bytes of a stored message.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("blobs")
            .join(sha256.get(..2).unwrap_or("xx"))
            .join(sha256)
    }

    pub fn record_path(&self, id: &str) -> PathBuf {
        self.root.join("records").join(format!("{id}.json"))
    }

    /// For `/readyz`: can we still write durably?
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let probe = self.tmp.join(format!(
            ".probe-{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = File::create(&probe).map_err(io("creating", &probe))?;
        f.write_all(b"ok").map_err(io("writing", &probe))?;
        f.sync_all().map_err(io("syncing", &probe))?;
        fs::remove_file(&probe).map_err(io("removing", &probe))
    }

    fn write_atomic(&self, dest: &Path, data: &[u8]) -> Result<(), StoreError> {
        let tmp = self.tmp.join(format!(
            "{}.{}.{}",
            dest.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
            f.write_all(data).map_err(io("writing", &tmp))?;
            f.sync_all().map_err(io("syncing", &tmp))?;
            fs::rename(&tmp, dest).map_err(io("renaming into place", dest))?;
            let dir = dest.parent().unwrap_or(Path::new("."));
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing directory", dir))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}
