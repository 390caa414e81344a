//! Reading request bodies without letting clients decide how much memory we
//! use. Three bounds apply, all before or while reading, never after:
//!
//! - one body is at most `server.max_body_bytes` (a declared
//!   `Content-Length` over it is refused before a byte is read);
//! - all bodies held at once are at most `server.max_inflight_bytes`, taken
//!   from a semaphore counted in KiB; a request that cannot get its share
//!   is answered "busy" (tempfail) at once rather than queued;
//! - the whole body must arrive within `server.body_timeout`.
//!
//! zstd bodies (rspamd's `Compression: zstd`) are decompressed under the
//! same limits, with the decoder window capped.

use super::Gateway;
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use std::io::Read;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

const ZSTD_WINDOW_LOG_MAX: u32 = 27;
const CHUNK_KIB: u32 = 64;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("too much request data in flight")]
    Busy,
    #[error("request body not received within {0:?}")]
    Timeout(std::time::Duration),
    #[error("reading the request body: {0}")]
    Read(String),
    #[error("{0}")]
    Encoding(String),
}

/// A body held in memory, with the share of the in-flight budget it uses;
/// the share is returned when this is dropped.
pub struct Received {
    pub data: Vec<u8>,
    /// The body came zstd-compressed (rspamd clients then want a zstd reply).
    pub compressed: bool,
    /// Hand this to the pool with the message, so the share is returned
    /// when the message is no longer held, not when the client leaves.
    pub permit: OwnedSemaphorePermit,
}

fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .max(1)
}

fn take_more(gw: &Gateway, permit: &mut OwnedSemaphorePermit, kib: u32) -> Result<(), BodyError> {
    let more = Arc::clone(&gw.inflight)
        .try_acquire_many_owned(kib)
        .map_err(|_| BodyError::Busy)?;
    permit.merge(more);
    Ok(())
}

fn zstd_requested(headers: &HeaderMap) -> Result<bool, BodyError> {
    let mut zstd = false;
    for name in ["compression", header::CONTENT_ENCODING.as_str()] {
        for v in headers.get_all(name) {
            let v = v.to_str().unwrap_or("").trim();
            if v.eq_ignore_ascii_case("zstd") {
                zstd = true;
            } else if !(v.is_empty() || v.eq_ignore_ascii_case("identity")) {
                return Err(BodyError::Encoding(format!(
                    "unsupported {name}: {v:?} (only zstd)"
                )));
            }
        }
    }
    if zstd && headers.contains_key("dictionary") {
        return Err(BodyError::Encoding(
            "zstd dictionaries are not supported: compress without -D".into(),
        ));
    }
    Ok(zstd)
}

/// The Content-Length a client declared, if it declared one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Bodies up to this size are read and thrown away when a request is
/// refused before its body is used, so the client can read our answer: a
/// server that closes with unread data makes the kernel reset the
/// connection, and the client may lose the reply it has not read yet.
const DISCARD_MAX: u64 = 8 << 20;

/// Reads and drops a refused request's body, holding no memory for it:
/// at most `max` bytes, within `timeout`.
async fn drain(body: &mut axum::body::Body, max: u64, timeout: std::time::Duration) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(chunk) = frame.into_data() {
                seen += chunk.len() as u64;
                if seen > max {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// A refusal before the body is used (busy): small bodies are drained,
/// for at most 5 s (a slow client must not hold a refusal open).
pub async fn discard(gw: &Gateway, headers: &HeaderMap, mut body: axum::body::Body) {
    if declared_length(headers).is_some_and(|n| n > DISCARD_MAX) {
        return;
    }
    let timeout = gw
        .server
        .body_timeout
        .min(std::time::Duration::from_secs(5));
    drain(&mut body, DISCARD_MAX, timeout).await;
}

pub async fn read(
    gw: &Gateway,
    headers: &HeaderMap,
    mut body: axum::body::Body,
) -> Result<Received, BodyError> {
    let limit = gw.server.max_body_bytes;
    let declared = declared_length(headers);
    // An oversize message is answered by policy (often a reject the sender
    // must see), so its body is drained, within the body timeout, for the
    // client to get that answer rather than a reset connection.
    if declared.is_some_and(|n| n > limit) {
        drain(&mut body, u64::MAX, gw.server.body_timeout).await;
        return Err(BodyError::TooLarge { limit });
    }
    let compressed = zstd_requested(headers)?;
    let Ok(mut permit) =
        Arc::clone(&gw.inflight).try_acquire_many_owned(declared.map_or(CHUNK_KIB, kib))
    else {
        discard(gw, headers, body).await;
        return Err(BodyError::Busy);
    };

    let mut data = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let read_all = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers
            };
            let total = data.len() as u64 + chunk.len() as u64;
            if total > limit {
                return Err(BodyError::TooLarge { limit });
            }
            let held = u64::from(permit.num_permits() as u32) << 10;
            if total > held {
                take_more(gw, &mut permit, kib(total - held).max(CHUNK_KIB))?;
            }
            data.extend_from_slice(&chunk);
        }
        Ok(())
    };
    let read = tokio::time::timeout(gw.server.body_timeout, read_all)
        .await
        .map_err(|_| BodyError::Timeout(gw.server.body_timeout))?;
    match read {
        Ok(()) => {}
        Err(BodyError::TooLarge { limit }) => {
            drop(data);
            drop(permit);
            drain(&mut body, u64::MAX, gw.server.body_timeout).await;
            return Err(BodyError::TooLarge { limit });
        }
        Err(e) => return Err(e),
    }

    if !compressed {
        return Ok(Received {
            data,
            compressed,
            permit,
        });
    }
    // The decompressed size is only known once decompressed: reserve the
    // whole limit for the duration, then keep what the result needs.
    take_more(gw, &mut permit, kib(limit))?;
    let decoded = tokio::task::spawn_blocking(move || unzstd(&data, limit))
        .await
        .map_err(|e| BodyError::Read(e.to_string()))??;
    let keep = kib(decoded.len() as u64);
    if let Some(extra) = (permit.num_permits() as u32).checked_sub(keep)
        && extra > 0
    {
        drop(permit.split(extra as usize));
    }
    Ok(Received {
        data: decoded,
        compressed,
        permit,
    })
}

fn unzstd(data: &[u8], limit: u64) -> Result<Vec<u8>, BodyError> {
    let bad = |e: std::io::Error| BodyError::Encoding(format!("invalid zstd body: {e}"));
    let mut decoder = zstd::stream::read::Decoder::new(data).map_err(bad)?;
    decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(bad)?;
    let mut out = Vec::new();
    decoder.take(limit + 1).read_to_end(&mut out).map_err(bad)?;
    if out.len() as u64 > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

/// zstd-compresses a reply (level 1, as rspamd does).
pub fn zstd(data: &[u8]) -> Vec<u8> {
    // Compressing a buffer in memory cannot fail short of allocation
    // failure; fall back to an empty frame rather than panic.
    zstd::bulk::compress(data, 1).unwrap_or_default()
}
