//! The gateway's signing secret and the keys derived from it. One secret
//! (a file, 0600) signs release links, release stamps, UI sessions and CSRF
//! tokens; each use gets its own key so a value signed for one purpose is
//! never valid for another.
//!
//! Rotation: the current secret signs; previous secrets
//! (`release.previous_secret_files`) only verify, so links already in
//! recipients' mailboxes keep working until they expire.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("secret file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("secret file {0}: needs at least 32 bytes")]
    Short(String),
    #[error("no randomness from the OS: {0}")]
    Random(String),
}

#[derive(Clone)]
pub struct Keys {
    pub link: [u8; 32],
    pub stamp: [u8; 32],
    pub session: [u8; 32],
    pub csrf: [u8; 32],
    /// Keys of previous secrets, newest first: they verify, never sign.
    pub previous: Vec<Keys>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<secret>)")
    }
}

impl Keys {
    pub fn from_secret(secret: &[u8]) -> Keys {
        let derive = |label: &str| -> [u8; 32] { mac(secret, &[label.as_bytes()]) };
        Keys {
            link: derive("portcullis release link v1"),
            stamp: derive("portcullis release stamp v1"),
            session: derive("portcullis ui session v1"),
            csrf: derive("portcullis ui csrf v1"),
            previous: Vec::new(),
        }
    }

    /// The current keys, then each previous secret's: what a signature
    /// may have been made with.
    pub fn generations(&self) -> impl Iterator<Item = &Keys> {
        std::iter::once(self).chain(self.previous.iter())
    }

    /// Adds the secret in `path` as a previous one (verify only). It must
    /// exist: a rotation that lost the old secret should not start
    /// silently.
    pub fn add_previous(&mut self, path: &Path) -> Result<(), KeyError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: shown.clone(),
            source,
        })?;
        if bytes.len() < 32 {
            return Err(KeyError::Short(shown));
        }
        self.previous.push(Keys::from_secret(&bytes));
        Ok(())
    }

    /// Reads the secret file, creating it (32 random bytes, mode 0600)
    /// when it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Keys, KeyError> {
        let shown = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                if bytes.len() < 32 {
                    return Err(KeyError::Short(shown));
                }
                Ok(Keys::from_secret(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
                let io = |source| KeyError::Io {
                    path: shown.clone(),
                    source,
                };
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut f) => {
                        f.write_all(&secret).map_err(io)?;
                        f.sync_all().map_err(io)?;
                        Ok(Keys::from_secret(&secret))
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Keys::load_or_create(path)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(source) => Err(KeyError::Io {
                path: shown,
                source,
            }),
        }
    }
}

/// HMAC-SHA256 over the parts, each length-prefixed so no two different
/// part lists sign the same bytes.
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time comparison of a presented MAC with the expected one.
pub fn verify(key: &[u8], parts: &[&[u8]], presented: &[u8]) -> bool {
    let expected = mac(key, parts);
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
