//! Raw quarantined messages, content-addressed by sha256, in one of two
//! backends chosen in config:
//!
//! - [`local`]: a folder under `server.data_dir` (the default; one node, or
//!   several on a shared file system);
//! - [`s3`]: an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage…),
//!   so nodes sharing a PostgreSQL index need nothing else in common.
//!
//! Both keep the same promise: `put` returns only once the bytes are
//! durable (fsynced and renamed into place; or a PUT the object store
//! acknowledged), and `get` checks the bytes against their sha256 so a
//! damaged or substituted blob is an error, never served as the message.

pub mod local;
pub mod s3;

use super::StoreError;
use crate::config::S3Config;
use std::path::Path;
use std::sync::Arc;

/// Where quarantined bytes live. Every method may be called from async
/// code; the local backend does its file I/O on the blocking pool.
#[derive(Debug)]
pub enum Blobs {
    Local(Arc<local::LocalBlobs>),
    S3(s3::S3Blobs),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

impl Blobs {
    /// The local folder under `data_dir`, or the bucket when `s3` is set.
    pub async fn open(data_dir: &Path, s3: Option<&S3Config>) -> Result<Blobs, StoreError> {
        match s3 {
            Some(cfg) => Ok(Blobs::S3(s3::S3Blobs::open(cfg)?)),
            None => {
                let dir = data_dir.to_owned();
                let local = blocking(move || local::LocalBlobs::open(&dir)).await?;
                Ok(Blobs::Local(Arc::new(local)))
            }
        }
    }

    /// For logs and `/readyz`: the folder or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match self {
            Blobs::Local(l) => l.root().display().to_string(),
            Blobs::S3(s) => s.describe(),
        }
    }

    /// Stores `raw` durably under `sha256`, which the caller computed
    /// with [`digest`] (it needs the key before the write, to lock it).
    pub async fn put(&self, sha256: &str, raw: Arc<[u8]>) -> Result<(), StoreError> {
        match self {
            Blobs::Local(l) => {
                let (l, sha) = (Arc::clone(l), sha256.to_string());
                blocking(move || l.put(&sha, &raw)).await
            }
            Blobs::S3(s) => s.put(sha256, raw).await,
        }
    }

    /// The bytes stored under `sha256`, checked against it.
    pub async fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Blobs::Local(l) => {
                let (l, sha) = (Arc::clone(l), sha256.to_string());
                blocking(move || l.get(&sha)).await
            }
            Blobs::S3(s) => s.get(sha256).await,
        }
    }

    /// [`Blobs::get`] from a blocking thread (a scan of held mail running
    /// on the blocking pool), which must not await.
    pub fn get_blocking(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Blobs::Local(l) => l.get(sha256),
            Blobs::S3(s) => {
                let handle = tokio::runtime::Handle::try_current().map_err(|e| {
                    StoreError::Task(format!("no runtime for the object store: {e}"))
                })?;
                handle.block_on(s.get(sha256))
            }
        }
    }

    /// The first `max` bytes of a blob, unchecked: for showing, never for
    /// sending (the sha256 covers the whole message).
    pub async fn head(&self, sha256: &str, max: usize) -> Result<Vec<u8>, StoreError> {
        match self {
            Blobs::Local(l) => {
                let (l, sha) = (Arc::clone(l), sha256.to_string());
                blocking(move || l.head(&sha, max)).await
            }
            Blobs::S3(s) => s.head(sha256, max).await,
        }
    }

    /// Removes a blob no record points at any more. Missing is fine.
    pub async fn remove(&self, sha256: &str) -> Result<(), StoreError> {
        match self {
            Blobs::Local(l) => {
                let (l, sha) = (Arc::clone(l), sha256.to_string());
                blocking(move || l.remove(&sha)).await
            }
            Blobs::S3(s) => s.remove(sha256).await,
        }
    }

    /// For `/readyz`: can we still write durably?
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        match self {
            Blobs::Local(l) => {
                let l = Arc::clone(l);
                blocking(move || l.check_writable()).await
            }
            Blobs::S3(s) => s.check_writable().await,
        }
    }
}

/// sha256 (hex) of a whole message, off the async threads (50 MB take
/// ~0.2 s).
pub async fn digest(raw: impl AsRef<[u8]> + Send + 'static) -> Result<String, StoreError> {
    use sha2::{Digest, Sha256};
    tokio::task::spawn_blocking(move || hex::encode(Sha256::digest(raw.as_ref())))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
}

/// Refuses anything that is not a sha256 in hex, so no caller can turn an
/// id into a path or key elsewhere.
pub(crate) fn check_key(sha256: &str) -> Result<(), StoreError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::BadKey(sha256.chars().take(80).collect()));
    }
    Ok(())
}
