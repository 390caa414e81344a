//! Recipients' release links: `PUBLIC_URL/release/TOKEN`, where the token
//! names one message and one recipient, carries its expiry and a random
//! nonce, and is signed (HMAC-SHA256). Nothing about a link is stored until
//! it is spent; spending records the nonce, so a link works once.

use super::keys::{self, Keys};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub id: String,
    pub recipient: String,
    pub expires_unix: u64,
    pub nonce: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("this link is not valid")]
    Malformed,
    #[error("this link is not valid")]
    BadSignature,
    #[error("this link has expired")]
    Expired,
}

pub fn mint(key: &[u8], id: &str, recipient: &str, expires_unix: u64) -> String {
    let mut nonce = [0u8; 12];
    // A failed OS RNG would give every link the same nonce, so that one
    // link would spend them all: refuse to mint rather than risk it.
    if getrandom::fill(&mut nonce).is_err() {
        return String::new();
    }
    mint_with_nonce(key, id, recipient, expires_unix, &hex::encode(nonce))
}

pub fn mint_with_nonce(
    key: &[u8],
    id: &str,
    recipient: &str,
    expires_unix: u64,
    nonce: &str,
) -> String {
    let payload = format!("v1\n{id}\n{recipient}\n{expires_unix}\n{nonce}");
    let sig = keys::mac(key, &[payload.as_bytes()]);
    format!("{}.{}", B64.encode(payload), B64.encode(sig))
}

/// [`parse`] against every key generation: a link signed with a previous
/// secret still works. Only a bad signature moves on to the next key; an
/// expired or malformed link signed by one of them is answered as such.
pub fn parse_any(keys: &Keys, token: &str, now_unix: u64) -> Result<Claims, LinkError> {
    for k in keys.generations() {
        match parse(&k.link, token, now_unix) {
            Err(LinkError::BadSignature) => continue,
            other => return other,
        }
    }
    Err(LinkError::BadSignature)
}

pub fn parse(key: &[u8], token: &str, now_unix: u64) -> Result<Claims, LinkError> {
    // Links arrive through mail clients and scanners that may append junk.
    let token = token.trim();
    let (payload_b64, sig_b64) = token.split_once('.').ok_or(LinkError::Malformed)?;
    if token.len() > 2048 {
        return Err(LinkError::Malformed);
    }
    let payload = B64.decode(payload_b64).map_err(|_| LinkError::Malformed)?;
    let sig = B64.decode(sig_b64).map_err(|_| LinkError::Malformed)?;
    if !keys::verify(key, &[&payload], &sig) {
        return Err(LinkError::BadSignature);
    }
    let text = String::from_utf8(payload).map_err(|_| LinkError::Malformed)?;
    let fields: Vec<&str> = text.split('\n').collect();
    let [version, id, recipient, expires, nonce] = fields.as_slice() else {
        return Err(LinkError::Malformed);
    };
    if *version != "v1" {
        return Err(LinkError::Malformed);
    }
    let expires_unix: u64 = expires.parse().map_err(|_| LinkError::Malformed)?;
    if now_unix >= expires_unix {
        return Err(LinkError::Expired);
    }
    Ok(Claims {
        id: (*id).to_string(),
        recipient: (*recipient).to_string(),
        expires_unix,
        nonce: (*nonce).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_verify_expire_and_resist_tampering() {
        let t = mint(KEY, "q1", "a@example.org", 2000);
        let c = parse(KEY, &t, 1000).unwrap();
        assert_eq!(
            (c.id.as_str(), c.recipient.as_str(), c.expires_unix),
            ("q1", "a@example.org", 2000)
        );
        assert_eq!(c.nonce.len(), 24);
        assert_ne!(
            mint(KEY, "q1", "a@example.org", 2000),
            t,
            "every link has its own nonce"
        );
        assert_eq!(parse(KEY, &t, 2000), Err(LinkError::Expired));
        assert_eq!(
            parse(b"other key other key other key 123", &t, 1000),
            Err(LinkError::BadSignature)
        );
        // Another recipient in the payload with the old signature.
        let (_, sig) = t.split_once('.').unwrap();
        let forged = format!(
            "{}.{sig}",
            B64.encode(format!("v1\nq1\nb@example.org\n2000\n{}", c.nonce))
        );
        assert_eq!(parse(KEY, &forged, 1000), Err(LinkError::BadSignature));
        assert_eq!(parse(KEY, "garbage", 1000), Err(LinkError::Malformed));
        assert_eq!(parse(KEY, "a.b.c", 1000), Err(LinkError::Malformed));
    }

    #[test]
    fn links_of_a_previous_secret_verify_until_they_expire() {
        let old = Keys::from_secret(&[1u8; 32]);
        let t = mint(&old.link, "q1", "a@example.org", 2000);
        let mut rotated = Keys::from_secret(&[2u8; 32]);
        assert_eq!(
            parse_any(&rotated, &t, 1000),
            Err(LinkError::BadSignature),
            "unknown to the new secret alone"
        );
        rotated.previous.push(old);
        assert_eq!(parse_any(&rotated, &t, 1000).unwrap().id, "q1");
        assert_eq!(parse_any(&rotated, &t, 2000), Err(LinkError::Expired));
        let fresh = mint(&rotated.link, "q2", "a@example.org", 2000);
        assert_eq!(parse_any(&rotated, &fresh, 1000).unwrap().id, "q2");
        assert_eq!(
            parse_any(&rotated, "garbage", 1000),
            Err(LinkError::Malformed)
        );
    }
}
