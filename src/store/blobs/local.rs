//! The local blob backend: a folder on this machine (or a shared file
//! system).
//!
//! ```text
//! DATA_DIR/quarantine/blobs/ab/ab12…(sha256)   raw message
//! DATA_DIR/tmp/                                 writes in progress
//! ```
//!
//! Every write is temp file, fsync, rename, fsync of the directory, so a
//! crash leaves either no blob or the whole blob, never half a file. All
//! functions here block: call them from the blocking pool.

use super::{StoreError, check_key};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

fn missing_or(e: std::io::Error, sha256: &str, path: &Path) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::Missing(sha256.to_string())
    } else {
        io("reading", path)(e)
    }
}

#[derive(Debug)]
pub struct LocalBlobs {
    root: PathBuf,
    tmp: PathBuf,
    counter: AtomicU64,
}

impl LocalBlobs {
    /// Creates the directories if needed.
    pub fn open(data_dir: &Path) -> Result<LocalBlobs, StoreError> {
        let quarantine = data_dir.join("quarantine");
        let root = quarantine.join("blobs");
        let tmp = data_dir.join("tmp");
        for dir in [root.clone(), tmp.clone()] {
            fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        // The 256 fan-out directories exist (and are durable) before any
        // blob is written, so a blob's rename needs only its own directory
        // synced.
        for i in 0..=255u8 {
            let dir = root.join(format!("{i:02x}"));
            fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        // Writes a crash interrupted. Only old ones: another process on
        // this data directory (`portcullis digest` beside `serve`) may be
        // writing right now.
        if let Ok(entries) = fs::read_dir(&tmp) {
            let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < hour_ago);
                if old {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        for dir in [&root, &quarantine, data_dir] {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing directory", dir))?;
        }
        Ok(LocalBlobs {
            root,
            tmp,
            counter: AtomicU64::new(0),
        })
    }

    /// Stores `raw`, whose sha256 is `sha256`, durably.
    pub fn put(&self, sha256: &str, raw: &[u8]) -> Result<(), StoreError> {
        let path = self.path(sha256)?;
        // Content-addressed: the same message quarantined twice is one
        // blob. An existing blob was fsynced when it was written; one of
        // the wrong size (damaged on disk) is written again.
        let intact = fs::metadata(&path).is_ok_and(|m| m.len() == raw.len() as u64);
        if !intact {
            self.write_atomic(&path, raw)?;
        }
        Ok(())
    }

    /// The bytes stored under `sha256`, checked against it: a blob damaged
    /// on disk is an error, never served as the message.
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(sha256)?;
        let data = fs::read(&path).map_err(|e| missing_or(e, sha256, &path))?;
        if hex::encode(Sha256::digest(&data)) != sha256 {
            return Err(StoreError::Corrupt(sha256.to_string()));
        }
        Ok(data)
    }

    /// The first `max` bytes of a blob, unchecked: for showing, never for
    /// sending (the sha256 covers the whole message).
    pub fn head(&self, sha256: &str, max: usize) -> Result<Vec<u8>, StoreError> {
        use std::io::Read;
        let path = self.path(sha256)?;
        let mut out = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(max as u64).read_to_end(&mut out))
            .map_err(|e| missing_or(e, sha256, &path))?;
        Ok(out)
    }

    /// Removes a blob no record points at any more. Missing is fine.
    pub fn remove(&self, sha256: &str) -> Result<(), StoreError> {
        let path = self.path(sha256)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &path)(e)),
        }
    }

    /// Where the blob for `sha256` lives; refuses anything that is not a
    /// sha256, so no caller can turn an id into a path elsewhere.
    pub fn path(&self, sha256: &str) -> Result<PathBuf, StoreError> {
        check_key(sha256)?;
        Ok(self.root.join(&sha256[..2]).join(sha256))
    }

    /// The folder the blobs are in.
    pub fn root(&self) -> &Path {
        &self.root
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_dedup_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let a = hex::encode(Sha256::digest(b"message one"));
        blobs.put(&a, b"message one").unwrap();
        blobs.put(&a, b"message one").unwrap();
        assert_eq!(blobs.get(&a).unwrap(), b"message one");
        assert_eq!(blobs.head(&a, 7).unwrap(), b"message");
        std::fs::write(blobs.path(&a).unwrap(), b"message 0ne").unwrap();
        assert!(matches!(blobs.get(&a), Err(StoreError::Corrupt(_))));
        blobs.remove(&a).unwrap();
        blobs.remove(&a).unwrap();
        assert!(matches!(blobs.get(&a), Err(StoreError::Missing(_))));
        assert!(matches!(
            blobs.path("../../etc/passwd"),
            Err(StoreError::BadKey(_))
        ));
        blobs.check_writable().unwrap();
    }
}
