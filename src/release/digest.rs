//! Digests: one mail per recipient listing the messages held for them,
//! each with its release link. Sent by `portcullis digest` (cron) or on
//! `digest.interval` inside `serve`, through the release relay.

use super::Releaser;
use crate::config::Config;
use crate::store::{StoreError, format_utc};

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DigestRun {
    pub recipients: usize,
    pub messages: usize,
    pub failed: Vec<String>,
}

pub async fn send_all(releaser: &Releaser, cfg: &Config) -> Result<DigestRun, StoreError> {
    let mut run = DigestRun::default();
    for (rcpt, held) in releaser.store.db.held_by_recipient().await? {
        let body = render(releaser, cfg, &rcpt, &held);
        let sent = super::send_text(
            &cfg.release,
            &cfg.digest.from,
            &rcpt,
            &cfg.digest.subject,
            body,
        )
        .await;
        match sent {
            Ok(()) => {
                run.recipients += 1;
                run.messages += held.len();
            }
            Err(e) => {
                tracing::warn!(recipient = %rcpt, error = %e, "digest not sent");
                run.failed.push(rcpt);
            }
        }
    }
    Ok(run)
}

fn render(releaser: &Releaser, cfg: &Config, rcpt: &str, held: &[crate::store::Summary]) -> String {
    let mut out = format!(
        "Hello,\n\n{} message(s) sent to {rcpt} are held by the mail gateway because they may be harmful.\n\
         If you expected one, open its link: the page asks you to confirm before anything is\n\
         released, and each link works once. Some messages can only be released by an\n\
         administrator; their link sends a request.\n\n",
        held.len()
    );
    for m in held {
        out.push_str(&format!(
            "- {}  from {}\n  Subject: {}\n  Why: {}\n  Release: {}\n\n",
            format_utc(m.received_ms),
            m.sender
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("<>"),
            m.subject.as_deref().unwrap_or("(none)"),
            m.summary,
            releaser.link(&cfg.release, &m.id, rcpt),
        ));
    }
    out.push_str("Held messages are deleted when they expire.\n");
    out
}
