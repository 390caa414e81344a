//! The S3-compatible blob backend (object_store's S3 client, signing with
//! ring, TLS by rustls on ring like the rest of the gateway).
//!
//! ```text
//! s3://BUCKET/PREFIX quarantine/blobs/ab/ab12…(sha256)   raw message
//! s3://BUCKET/PREFIX probe/HOST-PID                     readiness probe
//! ```
//!
//! S3 acknowledges a PUT only once the object is stored durably, and
//! objects appear whole or not at all, which is the promise the local
//! backend's fsync-and-rename keeps. Requests are bounded by
//! `quarantine.s3.timeout` including retries: a door waiting on a slow
//! bucket answers tempfail before the MTA gives up on it.

use super::{StoreError, check_key, digest};
use crate::config::S3Config;
use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct S3Blobs {
    store: AmazonS3,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    prefix: String,
    probe: Path,
}

fn object_error(e: object_store::Error, sha256: &str) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::Missing(sha256.to_string()),
        other => StoreError::Object(Box::new(other)),
    }
}

impl S3Blobs {
    /// Builds the client; nothing is contacted until the first request
    /// (`/readyz` makes one). Credentials not in the config come from the
    /// usual AWS environment: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
    /// web identity (EKS), ECS task roles or the instance metadata service.
    pub fn open(cfg: &S3Config) -> Result<S3Blobs, StoreError> {
        crate::publish::tls_provider();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_allow_http(cfg.allow_http)
            .with_virtual_hosted_style_request(cfg.virtual_hosted_style)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(cfg.allow_http)
                    .with_timeout(cfg.timeout)
                    .with_connect_timeout(cfg.timeout.min(Duration::from_secs(5))),
            )
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: cfg.timeout,
                ..RetryConfig::default()
            });
        if let Some(region) = &cfg.region {
            b = b.with_region(region);
        }
        if let Some(endpoint) = &cfg.endpoint {
            b = b.with_endpoint(endpoint);
        }
        if let Some(id) = &cfg.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(file) = &cfg.secret_access_key_file {
            let secret = std::fs::read_to_string(file).map_err(|source| StoreError::Io {
                what: "reading the S3 secret access key",
                path: file.clone(),
                source,
            })?;
            b = b.with_secret_access_key(secret.trim());
        }
        let store = b.build().map_err(|e| StoreError::Object(Box::new(e)))?;
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "node".into());
        let probe = Path::from(format!(
            "{}probe/{}-{}",
            cfg.prefix,
            host.replace('/', "_"),
            std::process::id()
        ));
        Ok(S3Blobs {
            store,
            url: format!("s3://{}/{}", cfg.bucket, cfg.prefix),
            prefix: cfg.prefix.clone(),
            probe,
        })
    }

    pub fn describe(&self) -> String {
        self.url.clone()
    }

    /// The object key of a blob, shaped like the local folder.
    pub fn key(&self, sha256: &str) -> Result<Path, StoreError> {
        check_key(sha256)?;
        Ok(Path::from(format!(
            "{}quarantine/blobs/{}/{}",
            self.prefix,
            &sha256[..2],
            sha256
        )))
    }

    /// Always a PUT, even when the same bytes are stored already: one
    /// request either way, and a HEAD would not prove the stored object
    /// intact (`get` does that, against the sha256).
    pub async fn put(&self, sha256: &str, raw: Arc<[u8]>) -> Result<(), StoreError> {
        let key = self.key(sha256)?;
        // The message's shared bytes go out as they are, not copied.
        let payload = PutPayload::from(Bytes::from_owner(raw));
        self.store
            .put(&key, payload)
            .await
            .map_err(|e| object_error(e, sha256))?;
        Ok(())
    }

    pub async fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let key = self.key(sha256)?;
        let data = self
            .store
            .get(&key)
            .await
            .map_err(|e| object_error(e, sha256))?
            .bytes()
            .await
            .map_err(|e| object_error(e, sha256))?;
        if digest(data.clone()).await? != sha256 {
            return Err(StoreError::Corrupt(sha256.to_string()));
        }
        Ok(Vec::from(data))
    }

    pub async fn head(&self, sha256: &str, max: usize) -> Result<Vec<u8>, StoreError> {
        let key = self.key(sha256)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(0..max as u64)),
            ..GetOptions::default()
        };
        let got = match self.store.get_opts(&key, options).await {
            Ok(got) => got,
            // S3 refuses any range of an empty object.
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::Missing(sha256.to_string()));
            }
            Err(_) => self
                .store
                .get(&key)
                .await
                .map_err(|e| object_error(e, sha256))?,
        };
        let mut data = got
            .bytes()
            .await
            .map_err(|e| object_error(e, sha256))?
            .to_vec();
        data.truncate(max);
        Ok(data)
    }

    pub async fn remove(&self, sha256: &str) -> Result<(), StoreError> {
        let key = self.key(sha256)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_error(e, sha256)),
        }
    }

    /// A small object written and removed: proves the credentials, the
    /// bucket and the network path all work for writing.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let probe = |e| object_error(e, "probe");
        self.store
            .put(&self.probe, PutPayload::from_static(b"ok"))
            .await
            .map_err(probe)?;
        self.store.delete(&self.probe).await.map_err(probe)
    }

    /// The client itself, for tests that look at the bucket directly.
    pub fn object_store(&self) -> &dyn ObjectStore {
        &self.store
    }
}
