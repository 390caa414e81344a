//! Getting held mail out: re-injection over SMTP with a release stamp,
//! recipients' signed links, the "too dangerous to release alone" rule,
//! and digests. The store decides who may take which recipient; this
//! module only sends what the store let it claim.

pub mod digest;
pub mod keys;
pub mod link;
pub mod stamp;

use crate::config::ReleaseConfig;
use crate::store::{Actor, Change, Event, RecipientState, State, Store, StoreError, StoredFinding};
use lettre::AsyncTransport;
use std::sync::Arc;

pub use keys::Keys;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    #[error("no such message")]
    NotFound,
    #[error("the message is {0}")]
    Conflict(State),
    #[error("nothing to release: no recipient of this message is waiting for it")]
    NothingToRelease,
    #[error("the relay refused or failed: {0}")]
    Relay(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a release did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Released {
    pub id: String,
    /// Recipients the relay accepted the message for.
    pub recipients: Vec<String>,
    /// Recipients the relay refused; they stay held.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Refused>,
    pub state: State,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Refused {
    pub recipient: String,
    pub error: String,
}

/// How a send to the relay went.
#[derive(Debug)]
pub struct SendError {
    pub message: String,
    /// A 5xx answer: the relay decided, nothing was delivered.
    pub permanent: bool,
}

pub struct Releaser {
    pub store: Arc<Store>,
    pub keys: Keys,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// True when a finding makes the message too dangerous for a recipient to
/// release alone: its severity or the action it asks for is on the list.
pub fn dangerous(cfg: &ReleaseConfig, findings: &[StoredFinding]) -> bool {
    findings.iter().filter(|f| !f.monitor).any(|f| {
        f.severity.as_deref().is_some_and(|s| {
            cfg.request_only_severities
                .iter()
                .any(|d| d.eq_ignore_ascii_case(s))
        }) || f
            .action
            .as_deref()
            .and_then(crate::model::Action::parse)
            .is_some_and(|a| cfg.request_only_actions.contains(&a))
    })
}

impl Releaser {
    /// Sends the original bytes to the claimed recipients (`only`, or every
    /// recipient in one of the `from` states) and records the outcome.
    pub async fn release(
        &self,
        cfg: &ReleaseConfig,
        id: &str,
        only: Option<&[String]>,
        from: &[RecipientState],
        event: Event,
        actor: &Actor,
    ) -> Result<Released, ReleaseError> {
        let summary = self
            .store
            .db
            .summary(id)
            .await?
            .ok_or(ReleaseError::NotFound)?;
        let mut claim = [0u8; 16];
        let _ = getrandom::fill(&mut claim);
        let claim = hex::encode(claim);
        let claimed = match self.store.db.claim(id, only, from, &claim).await? {
            Ok(c) => c,
            Err(Change::NotFound) => return Err(ReleaseError::NotFound),
            Err(Change::Conflict(s)) => return Err(ReleaseError::Conflict(s)),
            Err(Change::Done { .. }) => return Err(ReleaseError::NothingToRelease),
        };
        if claimed.is_empty() {
            return Err(ReleaseError::NothingToRelease);
        }
        let raw = match self.store.raw(&summary.sha256).await {
            Ok(raw) => raw,
            Err(e) => {
                let why = format!("the stored message cannot be read: {e}");
                self.store
                    .db
                    .finish(
                        id,
                        &claimed,
                        &claim,
                        false,
                        Event::ReleaseFailed,
                        actor,
                        Some(&why),
                    )
                    .await?;
                return Err(ReleaseError::Store(e));
            }
        };
        // One transaction for everyone, as the message came in. When the
        // relay refuses it outright (5xx, e.g. one recipient unknown),
        // nothing was delivered, so each recipient is tried on their own
        // and one bad address does not hold back the others.
        let sender = summary.sender.as_deref();
        let mut sent = Vec::new();
        let mut failed: Vec<Refused> = Vec::new();
        match self.send_to(cfg, id, sender, &claimed, &raw).await {
            Ok(()) => sent = claimed.clone(),
            Err(e) if e.permanent && claimed.len() > 1 => {
                for r in &claimed {
                    match self
                        .send_to(cfg, id, sender, std::slice::from_ref(r), &raw)
                        .await
                    {
                        Ok(()) => sent.push(r.clone()),
                        Err(e) => failed.push(Refused {
                            recipient: r.clone(),
                            error: e.message,
                        }),
                    }
                }
            }
            Err(e) => {
                failed = claimed
                    .iter()
                    .map(|r| Refused {
                        recipient: r.clone(),
                        error: e.message.clone(),
                    })
                    .collect()
            }
        }
        let mut state = State::Held;
        if !sent.is_empty() {
            state = self
                .store
                .db
                .finish(id, &sent, &claim, true, event, actor, None)
                .await?;
            tracing::info!(quarantine_id = id, recipients = ?sent, by = %actor.name, via = actor.via.as_str(), "released");
        }
        for f in &failed {
            tracing::warn!(quarantine_id = id, recipient = %f.recipient, error = %f.error, "release failed; the recipient stays held");
            state = self
                .store
                .db
                .finish(
                    id,
                    std::slice::from_ref(&f.recipient),
                    &claim,
                    false,
                    Event::ReleaseFailed,
                    actor,
                    Some(&f.error),
                )
                .await?;
        }
        if sent.is_empty() {
            let why = failed.first().map(|f| f.error.clone()).unwrap_or_default();
            return Err(ReleaseError::Relay(why));
        }
        Ok(Released {
            id: id.to_string(),
            recipients: sent,
            failed,
            state,
        })
    }

    async fn send_to(
        &self,
        cfg: &ReleaseConfig,
        id: &str,
        sender: Option<&str>,
        rcpts: &[String],
        raw: &[u8],
    ) -> Result<(), SendError> {
        let data = prepare(&self.keys.stamp, id, rcpts, raw);
        send(cfg, sender, rcpts, &data).await
    }

    /// Tells `release.notify` that a recipient asks for a release. Best
    /// effort: the request is in the queue whether or not this mail goes.
    pub async fn notify_request(&self, cfg: &ReleaseConfig, from: &str, id: &str, recipient: &str) {
        if cfg.notify.is_empty() {
            return;
        }
        let summary = match self.store.db.summary(id).await {
            Ok(Some(s)) => s,
            _ => return,
        };
        let body = format!(
            "{recipient} asks for the release of a held message that only an operator may release.\n\n\
             From:    {}\nSubject: {}\nWhy:     {}\n\nReview it: {}/ui/m/{id}\n",
            summary
                .sender
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("<>"),
            summary.subject.as_deref().unwrap_or("(none)"),
            summary.summary,
            cfg.public_url,
        );
        let subject = format!(
            "Release requested: {}",
            summary.subject.as_deref().unwrap_or("(no subject)")
        );
        for to in &cfg.notify {
            if let Err(e) = send_text(cfg, from, to, &subject, body.clone()).await {
                tracing::warn!(to = %to, error = %e, "release request notification not sent");
            }
        }
    }

    /// A recipient's link to this message.
    pub fn link(&self, cfg: &ReleaseConfig, id: &str, recipient: &str) -> String {
        let expires = unix_now().saturating_add(cfg.link_ttl.as_secs());
        format!(
            "{}/release/{}",
            cfg.public_url,
            link::mint(&self.keys.link, id, recipient, expires)
        )
    }
}

/// The bytes to send: the stamp on top, then the stored message with
/// every line ending CRLF (SMTP's; a bare LF could let a "." line end the
/// DATA early), without the final CRLF that the SMTP client adds itself.
pub fn prepare(stamp_key: &[u8], id: &str, recipients: &[String], raw: &[u8]) -> Vec<u8> {
    let header = stamp::sign(stamp_key, id, recipients, raw, unix_now());
    let mut out = Vec::with_capacity(raw.len() + header.len() + raw.len() / 40);
    out.extend_from_slice(header.as_bytes());
    crate::doors::crlf(raw, &mut out);
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// A plain-text mail of ours (digest, notification) through the relay.
pub async fn send_text(
    cfg: &ReleaseConfig,
    from: &str,
    to: &str,
    subject: &str,
    body: String,
) -> Result<(), String> {
    let msg = lettre::Message::builder()
        .from(from.parse().map_err(|e| format!("digest.from: {e}"))?)
        .to(to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?)
        .subject(subject)
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| e.to_string())?;
    let mut data = msg.formatted();
    // The SMTP client ends DATA with its own CRLF.
    if data.ends_with(b"\r\n") {
        data.truncate(data.len() - 2);
    }
    send(cfg, Some(from), &[to.to_string()], &data)
        .await
        .map_err(|e| e.message)
}

/// One SMTP transaction to the relay.
pub async fn send(
    cfg: &ReleaseConfig,
    from: Option<&str>,
    recipients: &[String],
    data: &[u8],
) -> Result<(), SendError> {
    let local = |message: String| SendError {
        message,
        permanent: true,
    };
    use lettre::transport::smtp::AsyncSmtpTransport;
    use lettre::transport::smtp::extension::ClientId;
    let (host, port) = cfg
        .relay
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(|c| c == '[' || c == ']'), p.parse().ok()?)))
        .ok_or_else(|| local(format!("release.relay {:?} is not HOST:PORT", cfg.relay)))?;
    let from = match from.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<lettre::Address>()
                .map_err(|e| local(format!("sender {s:?}: {e}")))?,
        ),
    };
    let to = recipients
        .iter()
        .map(|r| {
            r.parse::<lettre::Address>()
                .map_err(|e| local(format!("recipient {r:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let envelope = lettre::address::Envelope::new(from, to).map_err(|e| local(e.to_string()))?;
    let hello = match &cfg.helo {
        Some(h) => ClientId::Domain(h.clone()),
        None => ClientId::default(),
    };
    let transport = AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .hello_name(hello)
        .timeout(Some(cfg.timeout))
        .build();
    transport
        .send_raw(&envelope, data)
        .await
        .map(|_| ())
        .map_err(|e| SendError {
            permanent: e.is_permanent(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_bytes_are_crlf_and_carry_a_verifiable_stamp() {
        let key = [7u8; 32];
        let rcpts = vec!["a@example.org".to_string()];
        let raw = b"Subject: x\n\n.hidden\nline\n";
        let out = prepare(&key, "q9", &rcpts, raw);
        assert!(out.starts_with(b"X-Portcullis-Release: v1; id=q9; "));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.ends_with("\r\n.hidden\r\nline"), "{text:?}");
        assert!(!text.replace("\r\n", "").contains('\n'));
        assert_eq!(
            stamp::verify(&[key], &out, &rcpts, unix_now(), 60),
            Ok(Some("q9".into()))
        );
    }

    #[test]
    fn danger_follows_severity_and_requested_action_but_not_monitor_rules() {
        let cfg = ReleaseConfig::default();
        let f = |severity: Option<&str>, action: Option<&str>, monitor| StoredFinding {
            rule: "R".into(),
            path: "message".into(),
            severity: severity.map(Into::into),
            action: action.map(Into::into),
            monitor,
        };
        assert!(!dangerous(
            &cfg,
            &[f(Some("medium"), Some("quarantine"), false)]
        ));
        assert!(dangerous(&cfg, &[f(Some("HIGH"), None, false)]));
        assert!(dangerous(&cfg, &[f(None, Some("reject"), false)]));
        assert!(!dangerous(&cfg, &[f(Some("critical"), None, true)]));
    }
}
