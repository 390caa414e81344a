//! The release stamp: a header we put on a message we re-inject, so that
//! when the MTA hands it back to us (the re-injection listener may itself
//! have our milter) it passes instead of being quarantined again.
//!
//! ```text
//! X-Portcullis-Release: v1; id=<quarantine id>; t=<unix time>; sig=<hex>
//! ```
//!
//! The signature covers the id, the time, the recipients it was released
//! to and the sha256 of the message body with line endings normalised.
//! Not the header block: MTAs prepend `Received:` and may rewrite
//! addresses on the way, and the body is what we inspected. A stamp is
//! honoured for `release.stamp_ttl` and only for its recipients, so a
//! recipient who forwards a released message on does not get a pass for it
//! to anyone else.

use super::keys;
use sha2::{Digest, Sha256};

pub const HEADER: &str = "X-Portcullis-Release";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StampError {
    #[error("malformed release stamp")]
    Malformed,
    #[error("release stamp signature does not verify")]
    BadSignature,
    #[error("release stamp expired")]
    Expired,
}

/// The header line (with CRLF) that goes on top of a released message.
pub fn sign(key: &[u8], id: &str, recipients: &[String], raw: &[u8], now_unix: u64) -> String {
    let sig = signature(key, id, now_unix, recipients, raw);
    format!(
        "{HEADER}: v1; id={id}; t={now_unix}; sig={}\r\n",
        hex::encode(sig)
    )
}

/// Checks a stamp found in `raw`; returns the quarantine id it releases.
/// `Ok(None)` when there is no stamp at all.
/// `stamp_keys`: the current stamp key, then previous ones (a message released
/// just before a rotation comes back after it).
pub fn verify(
    stamp_keys: &[[u8; 32]],
    raw: &[u8],
    recipients: &[String],
    now_unix: u64,
    ttl_secs: u64,
) -> Result<Option<String>, StampError> {
    let Some(value) = crate::doors::header_value(raw, HEADER) else {
        return Ok(None);
    };
    let mut id = None;
    let mut t = None;
    let mut sig = None;
    let mut version = None;
    for part in value.split(';').map(str::trim) {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("sig", v)) => sig = hex::decode(v).ok(),
            None if part == "v1" => version = Some(()),
            _ => {}
        }
    }
    let (Some(()), Some(id), Some(t), Some(sig)) = (version, id, t, sig) else {
        return Err(StampError::Malformed);
    };
    // The stamp names the recipients it was issued for; the envelope it
    // comes back with must be among them. Only the signature can say which
    // they were, so try the envelope's own set.
    let body = body_sha256(raw);
    let signed = parts(&id, t, recipients, &body);
    if !stamp_keys
        .iter()
        .any(|k| keys::verify(k, &signed.refs(), &sig))
    {
        return Err(StampError::BadSignature);
    }
    if now_unix.saturating_sub(t) > ttl_secs || t > now_unix.saturating_add(300) {
        return Err(StampError::Expired);
    }
    Ok(Some(id))
}

fn signature(key: &[u8], id: &str, t: u64, recipients: &[String], raw: &[u8]) -> [u8; 32] {
    keys::mac(key, &parts(id, t, recipients, &body_sha256(raw)).refs())
}

struct Parts(Vec<Vec<u8>>);

impl Parts {
    fn refs(&self) -> Vec<&[u8]> {
        self.0.iter().map(Vec::as_slice).collect()
    }
}

fn parts(id: &str, t: u64, recipients: &[String], body: &[u8; 32]) -> Parts {
    let mut rcpts: Vec<String> = recipients.iter().map(|r| r.to_lowercase()).collect();
    rcpts.sort();
    rcpts.dedup();
    Parts(vec![
        id.as_bytes().to_vec(),
        t.to_string().into_bytes(),
        rcpts.join("\n").into_bytes(),
        body.to_vec(),
    ])
}

/// sha256 of the body (after the first empty line), each line ending
/// taken as CRLF and trailing empty lines dropped: the parts of a message
/// relays leave alone.
pub fn body_sha256(raw: &[u8]) -> [u8; 32] {
    let start = memchr::memmem::find(raw, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(raw, b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    let body = &raw[start..];
    let mut h = Sha256::new();
    let mut pending_empty = 0usize;
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            pending_empty += 1;
            continue;
        }
        for _ in 0..pending_empty {
            h.update(b"\r\n");
        }
        pending_empty = 0;
        h.update(line);
        h.update(b"\r\n");
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    fn stamped(rcpts: &[String], raw: &[u8], t: u64) -> Vec<u8> {
        let mut out = sign(KEY, "q1", rcpts, raw, t).into_bytes();
        out.extend_from_slice(raw);
        out
    }

    #[test]
    fn a_stamp_passes_for_its_recipients_only_and_only_while_fresh() {
        let raw = b"Subject: x\r\n\r\nbody line\r\n";
        let rcpts = vec!["A@example.org".to_string(), "b@example.org".to_string()];
        let msg = stamped(&rcpts, raw, 1000);
        let mut relayed = b"Received: from relay\r\n".to_vec();
        relayed.extend_from_slice(&msg);
        // Order and case of recipients do not matter; a relay's Received does not.
        let back = vec!["b@example.org".to_string(), "a@example.org".to_string()];
        assert_eq!(
            verify(&[*KEY], &relayed, &back, 1010, 3600),
            Ok(Some("q1".into()))
        );
        assert_eq!(
            verify(&[*KEY], &msg, &["c@example.org".to_string()], 1010, 3600),
            Err(StampError::BadSignature)
        );
        assert_eq!(
            verify(&[*KEY], &msg, &rcpts, 1000 + 3601, 3600),
            Err(StampError::Expired)
        );
        let other = *b"another key another key another ";
        assert_eq!(
            verify(&[other], &msg, &rcpts, 1010, 3600),
            Err(StampError::BadSignature)
        );
        // After a rotation the old key is still among the verifying ones.
        assert_eq!(
            verify(&[other, *KEY], &msg, &rcpts, 1010, 3600),
            Ok(Some("q1".into()))
        );
        let mut changed = msg.clone();
        let n = changed.len();
        changed[n - 3] = b'X';
        assert_eq!(
            verify(&[*KEY], &changed, &rcpts, 1010, 3600),
            Err(StampError::BadSignature)
        );
        assert_eq!(verify(&[*KEY], raw, &rcpts, 1010, 3600), Ok(None));
        assert_eq!(
            verify(
                &[*KEY],
                b"X-Portcullis-Release: v1; id=q1\r\n\r\nb",
                &rcpts,
                1010,
                3600
            ),
            Err(StampError::Malformed)
        );
    }

    #[test]
    fn line_endings_and_trailing_blank_lines_do_not_change_the_body_hash() {
        assert_eq!(
            body_sha256(b"S: x\r\n\r\na\r\n\r\nb\r\n\r\n"),
            body_sha256(b"S: x\n\na\n\nb")
        );
        assert_ne!(body_sha256(b"S: x\n\na\nb"), body_sha256(b"S: x\n\na\n\nb"));
    }
}
