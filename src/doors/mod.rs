//! The doors: each turns what a client sent into a [`Submission`] and the
//! [`Report`] back into its own protocol. Everything between is shared and
//! lives here: admission to the pool, the quarantine write, metrics, the
//! per-message log line. A door decides nothing about mail.
//!
//! The rule every door follows: when we cannot give a verdict (overload,
//! internal error, a spool that will not write), the answer is the
//! protocol's tempfail, so the MTA keeps the message and retries.

pub mod milter;
pub mod mta_hooks;
pub mod native;
pub mod rspamc;
pub mod rspamd;

use crate::config::Config;
use crate::http::Gateway;
use crate::http::body::BodyError;
use crate::model::{Action, Door, Envelope, Finding, FindingKind, LimitKind, Reply, Submission};
use crate::pipeline::{REPORT_SCHEMA, Report};
use crate::pool::PoolError;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Why a door could not answer with a verdict.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DoorError {
    #[error("busy: the inspection pool or the in-flight memory budget is full")]
    Overloaded,
    #[error("the message waited too long for a worker")]
    Expired,
    #[error("shutting down")]
    ShuttingDown,
    #[error("internal error while inspecting")]
    Internal,
    #[error("could not store the quarantined message")]
    Store,
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl DoorError {
    /// The metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            DoorError::Overloaded => "overloaded",
            DoorError::Expired => "expired",
            DoorError::ShuttingDown => "shutting_down",
            DoorError::Internal => "internal",
            DoorError::Store => "store",
            DoorError::BodyTimeout => "body_timeout",
            DoorError::BadRequest(_) => "bad_request",
        }
    }

    /// The HTTP status for doors that report one.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            DoorError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DoorError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            DoorError::Overloaded | DoorError::Expired | DoorError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DoorError::Internal | DoorError::Store => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the MTA is told: always a temporary failure, so it retries.
    pub fn reply(&self) -> Reply {
        let text = match self {
            DoorError::Overloaded | DoorError::Expired => "Content filter busy, try again later",
            DoorError::ShuttingDown => "Content filter restarting, try again later",
            _ => "Message could not be inspected, try again later",
        };
        Reply {
            code: 451,
            enhanced: "4.7.1".into(),
            text: text.into(),
        }
    }
}

/// A verdict ready to be mapped to a protocol.
pub struct Checked {
    pub report: Report,
    /// Set when the action is quarantine: the message is on disk.
    pub quarantine_id: Option<String>,
}

/// What a body read ends in, for doors that go on to inspect.
pub enum Intake {
    Body(crate::http::body::Received),
    /// Larger than `server.max_body_bytes`: answered by policy, unread.
    /// `declared` is the Content-Length (0 when the body was chunked),
    /// the size the verdict is reported with.
    Oversize {
        declared: u64,
    },
}

/// Reads a request body, mapping the body errors every door shares. With
/// `shed_when_full`, a full pool refuses before the body is read (doors
/// whose every request is a message; MTA Hooks' other stages never reach
/// the pool and must not be refused for its sake).
pub async fn read_body(
    gw: &Gateway,
    door: Door,
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    shed_when_full: bool,
) -> Result<Intake, DoorError> {
    if shed_when_full && gw.pool.is_full() {
        crate::http::body::discard(gw, headers, body).await;
        gw.metrics.refused(door, DoorError::Overloaded.reason());
        return Err(DoorError::Overloaded);
    }
    match crate::http::body::read(gw, headers, body).await {
        Ok(b) => Ok(Intake::Body(b)),
        Err(BodyError::TooLarge { .. }) => Ok(Intake::Oversize {
            declared: crate::http::body::declared_length(headers).unwrap_or(0),
        }),
        Err(e) => {
            let err = match e {
                BodyError::Busy => DoorError::Overloaded,
                BodyError::Timeout(_) => DoorError::BodyTimeout,
                BodyError::Read(m) | BodyError::Encoding(m) => DoorError::BadRequest(m),
                BodyError::TooLarge { .. } => unreachable!("handled above"),
            };
            gw.metrics.refused(door, err.reason());
            Err(err)
        }
    }
}

/// Inspects a submission on the pool, quarantines it durably if that is the
/// verdict, and records it. The returned verdict is final. `hold` (the
/// body's share of the in-flight budget) is released when the pool is done
/// with the message.
pub async fn inspect(
    gw: &Arc<Gateway>,
    door: Door,
    sub: Submission,
    hold: tokio::sync::OwnedSemaphorePermit,
) -> Result<Checked, DoorError> {
    let start = Instant::now();
    let message_id = header_value(&sub.raw, "message-id").unwrap_or_default();
    let span = tracing::info_span!(
        "message",
        %door,
        queue_id = sub.envelope.queue_id.as_deref().unwrap_or(""),
        message_id = %message_id,
        size = sub.raw.len(),
    );
    let envelope = sub.envelope.clone();
    let size = sub.raw.len() as u64;
    async move {
        let result = run(gw, door, sub, hold).await;
        match &result {
            Ok(c) => {
                let v = &c.report.verdict;
                gw.metrics
                    .message(door, v.action, start.elapsed(), Some(&c.report));
                gw.events.verdict(crate::publish::events::VerdictFacts {
                    door,
                    envelope: &envelope,
                    message_id: Some(message_id.as_str()),
                    size,
                    report: &c.report,
                    quarantine_id: c.quarantine_id.as_deref(),
                    total: start.elapsed(),
                });
                tracing::info!(
                    action = %v.action,
                    score = v.score,
                    findings = c.report.findings.len(),
                    objects = c.report.objects.len(),
                    quarantine_id = c.quarantine_id.as_deref().unwrap_or(""),
                    rules = %c.report.rules_version,
                    ms = start.elapsed().as_millis() as u64,
                    "{}",
                    v.summary
                );
            }
            Err(e) => {
                gw.metrics.refused(door, e.reason());
                tracing::warn!(error = %e, "answered tempfail");
            }
        }
        result
    }
    .instrument(span)
    .await
}

async fn run(
    gw: &Arc<Gateway>,
    door: Door,
    sub: Submission,
    hold: tokio::sync::OwnedSemaphorePermit,
) -> Result<Checked, DoorError> {
    if let Some(checked) = released(gw, &sub).await {
        return Ok(checked);
    }
    let raw = Arc::clone(&sub.raw);
    let envelope = sub.envelope.clone();
    let kind = sub.kind;
    let report = gw
        .pool
        .inspect(sub, Some(Box::new(hold)))
        .await
        .map_err(|e| match e {
            PoolError::Overloaded => DoorError::Overloaded,
            PoolError::Expired(_) => DoorError::Expired,
            PoolError::ShuttingDown => DoorError::ShuttingDown,
            PoolError::Pipeline(_) => DoorError::Internal,
        })?;
    let mut quarantine_id = None;
    // Files scanned on request are reported, never held.
    if report.verdict.action == Action::Quarantine && door != Door::Scan {
        let retention = gw.live().quarantine.retention;
        match gw
            .store
            .quarantine(Arc::clone(&raw), &envelope, door, &report, retention)
            .await
        {
            Ok(id) => {
                gw.metrics.quarantined();
                quarantine_id = Some(id);
            }
            Err(e) => {
                tracing::error!(error = %e, "quarantine write failed");
                return Err(DoorError::Store);
            }
        }
    }
    if quarantine_id.is_none() && kind == crate::model::InputKind::Mail && door != Door::Scan {
        gw.lifecycle.samples.record(
            &gw.live().lifecycle,
            crate::lifecycle::sample::Sample {
                received_ms: crate::store::now_ms(),
                door,
                envelope,
                action: report.verdict.action,
                raw,
            },
        );
    }
    Ok(Checked {
        report,
        quarantine_id,
    })
}

/// A message we released ourselves, coming back through the MTA: it passes
/// uninspected when all of these hold: it came from `release.stamp_networks`
/// (the MTA's re-injection side, not the internet), its stamp verifies for
/// this body and these recipients and is fresh, and the quarantine shows
/// the message released (or being released) to every one of them.
/// Otherwise the stamp is ignored and the message inspected like any
/// other, so a forged or replayed one gains nothing.
async fn released(gw: &Gateway, sub: &Submission) -> Option<Checked> {
    if sub.kind != crate::model::InputKind::Mail || sub.envelope.rcpt_to.is_empty() {
        return None;
    }
    // Cheap refusals first: the body hash below is only paid for mail
    // from the networks allowed to carry a stamp.
    header_value(&sub.raw, crate::release::stamp::HEADER)?;
    let cfg = gw.live();
    let from_relay = sub
        .envelope
        .client_ip
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| cfg.release.stamp_networks.iter().any(|n| n.contains(ip)));
    if !from_relay {
        tracing::warn!(
            client_ip = sub.envelope.client_ip.as_deref().unwrap_or(""),
            "release stamp from outside release.stamp_networks ignored: inspecting the message"
        );
        return None;
    }
    let raw = Arc::clone(&sub.raw);
    let rcpts = sub.envelope.rcpt_to.clone();
    let keys: Vec<[u8; 32]> = gw.releaser.keys.generations().map(|k| k.stamp).collect();
    let ttl = cfg.release.stamp_ttl.as_secs();
    let verified = tokio::task::spawn_blocking(move || {
        crate::release::stamp::verify(&keys, &raw, &rcpts, crate::release::unix_now(), ttl)
    })
    .await
    .ok()?;
    let id = match verified {
        Ok(Some(id)) => id,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "release stamp ignored: inspecting the message");
            return None;
        }
    };
    let recipients = match gw.store.db.recipients(&id).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "release stamp not checked against the quarantine: inspecting the message");
            return None;
        }
    };
    // `releasing` too: when the relay filters through us, we see the
    // message while our own release is still waiting for the relay's 250.
    use crate::store::RecipientState::{Released, Releasing};
    let all_released = sub.envelope.rcpt_to.iter().all(|r| {
        recipients
            .iter()
            .any(|q| q.address.eq_ignore_ascii_case(r) && matches!(q.state, Released | Releasing))
    });
    if !all_released {
        tracing::warn!(quarantine_id = %id, "release stamp for recipients the quarantine has not released: inspecting the message");
        return None;
    }
    gw.metrics.stamp_passed();
    // The accept verdict policy gives a clean message, so X-Portcullis-*
    // headers forged into the original are replaced by ours as usual.
    let mut verdict = crate::policy::decide(&cfg.policy, &[]);
    verdict.summary = format!("released from quarantine {id}");
    Some(Checked {
        report: uninspected(gw, verdict, Vec::new()),
        quarantine_id: None,
    })
}

/// A report for a verdict reached without reading the message's contents
/// (too large, or our own release coming back): no objects.
fn uninspected(gw: &Gateway, verdict: crate::model::Verdict, findings: Vec<Finding>) -> Report {
    Report {
        schema: REPORT_SCHEMA,
        verdict,
        findings,
        objects: Vec::new(),
        rules_version: gw.pool.engine().rules.version.clone(),
        unpacked_bytes: 0,
        duration_ms: 0.0,
    }
}

/// The verdict for a message too large to read: `policy.on_oversize`,
/// decided and recorded like any other, with no objects.
pub fn oversize(
    gw: &Gateway,
    door: Door,
    config: &Config,
    envelope: &Envelope,
    size: u64,
) -> Checked {
    let start = Instant::now();
    let limit = gw.server.max_body_bytes;
    let finding = Finding {
        kind: FindingKind::Limit {
            limit: LimitKind::MessageBytes,
        },
        object: 0,
        path: "message".into(),
        score: 0,
        action: Some(config.policy.on_oversize),
        monitor: false,
        severity: None,
        description: format!(
            "message larger than server.max_body_bytes ({limit} bytes), not inspected"
        ),
        reference: None,
    };
    let mut verdict = crate::policy::decide(&config.policy, std::slice::from_ref(&finding));
    // Unread, so its Subject is unknown: a prefix would replace it (rspamd)
    // or add a second one (MTA Hooks). Headers still say why.
    verdict
        .modifications
        .retain(|m| !matches!(m, crate::model::Modification::PrefixSubject { .. }));
    if verdict.action == Action::Reject {
        verdict.smtp_reply = Some(Reply {
            code: 552,
            enhanced: "5.3.4".into(),
            text: "Message too big for content inspection".into(),
        });
    }
    let report = uninspected(gw, verdict, vec![finding]);
    gw.metrics
        .message(door, report.verdict.action, start.elapsed(), Some(&report));
    gw.events.verdict(crate::publish::events::VerdictFacts {
        door,
        envelope,
        message_id: None,
        size,
        report: &report,
        quarantine_id: None,
        total: start.elapsed(),
    });
    tracing::info!(%door, action = %report.verdict.action, "oversize message answered by policy");
    Checked {
        report,
        quarantine_id: None,
    }
}

/// The bytes as the shared `Arc<[u8]>` a submission holds. That is a copy;
/// for large bodies it happens on the blocking pool, not on the runtime.
pub async fn shared(data: Vec<u8>) -> Result<Arc<[u8]>, DoorError> {
    const ON_RUNTIME_MAX: usize = 1 << 20;
    if data.len() <= ON_RUNTIME_MAX {
        return Ok(data.into());
    }
    tokio::task::spawn_blocking(move || Arc::<[u8]>::from(data))
        .await
        .map_err(|_| DoorError::Internal)
}

/// The first value of a header in the message's header block, unfolded.
/// Only for labels (Message-ID in logs, Subject for rspamd's rewrite): the
/// pipeline parses MIME properly.
pub fn header_value(raw: &[u8], name: &str) -> Option<String> {
    let end = memchr::memmem::find(raw, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(raw, b"\n\n"))
        .unwrap_or(raw.len().min(64 << 10));
    let head = &raw[..end];
    let mut lines = head.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        let mut value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_string();
        while let Some(next) = lines.peek() {
            if !next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                break;
            }
            let cont = next.strip_suffix(b"\r").unwrap_or(next);
            value.push(' ');
            value.push_str(String::from_utf8_lossy(cont).trim());
            lines.next();
        }
        return Some(value);
    }
    None
}

/// Appends `value` with every bare LF made CRLF: header values as Postfix
/// folds them ("\n"), messages re-injected over SMTP.
pub fn crlf(value: &[u8], out: &mut Vec<u8>) {
    let mut prev = 0u8;
    for &b in value {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
}

/// An address as MTAs send it (`<a@b>`, `a@b`, ` <> `) without brackets.
pub fn bare_address(s: &str) -> String {
    let s = s.trim();
    let s = s.strip_prefix('<').unwrap_or(s);
    let s = s.strip_suffix('>').unwrap_or(s);
    s.trim().to_string()
}

/// A client address as rspamd clients send it: `1.2.3.4`, `1.2.3.4:port`,
/// `::1`, `[::1]:port`. Kept as text when it is none of these (a unix
/// socket path), since it is only reported.
pub fn client_ip(s: &str) -> String {
    let s = s.trim();
    if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
        return addr.ip().to_string();
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return ip.to_string();
    }
    s.trim_start_matches('[').trim_end_matches(']').to_string()
}

/// A door's envelope with empty strings dropped.
pub fn envelope(
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    client_ip: Option<String>,
    helo: Option<String>,
    queue_id: Option<String>,
) -> Envelope {
    let keep = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    Envelope {
        // An empty MAIL FROM is the null sender, which is meaningful.
        mail_from: mail_from.map(|s| bare_address(&s)),
        rcpt_to: rcpt_to
            .iter()
            .map(|r| bare_address(r))
            .filter(|r| !r.is_empty())
            .collect(),
        client_ip: keep(client_ip).map(|s| self::client_ip(&s)),
        helo: keep(helo),
        queue_id: keep(queue_id),
        auth_user: None,
    }
}

/// An optional envelope value with empty strings dropped.
pub fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_unfold_and_ignore_case() {
        let raw =
            b"From: a@b\r\nsubject: Hello\r\n  world\r\nMessage-ID: <x@y>\r\n\r\nSubject: body";
        assert_eq!(header_value(raw, "Subject").as_deref(), Some("Hello world"));
        assert_eq!(header_value(raw, "message-id").as_deref(), Some("<x@y>"));
        assert_eq!(header_value(b"A: b\n\nSubject: no", "subject"), None);
    }

    #[test]
    fn addresses_and_ips_in_every_client_form() {
        assert_eq!(bare_address(" <a@b.example> "), "a@b.example");
        assert_eq!(bare_address("a@b.example"), "a@b.example");
        assert_eq!(bare_address("<>"), "");
        assert_eq!(client_ip("192.0.2.7:12345"), "192.0.2.7");
        assert_eq!(client_ip("192.0.2.7"), "192.0.2.7");
        assert_eq!(client_ip("[2001:db8::1]:25"), "2001:db8::1");
        assert_eq!(client_ip("2001:db8::1"), "2001:db8::1");
        let e = envelope(
            Some("<>".into()),
            vec!["<r@x>".into(), "".into()],
            Some("".into()),
            None,
            None,
        );
        assert_eq!(e.mail_from.as_deref(), Some(""));
        assert_eq!(e.rcpt_to, vec!["r@x".to_string()]);
        assert_eq!(e.client_ip, None);
    }
}
