//! MTA Hooks as Stalwart sends them (protocol version 1, Stalwart 0.8.2 to
//! 0.16): JSON in at each SMTP stage, `{action, response, modifications}`
//! out. We inspect at the `data` stage and accept every other stage.
//!
//! Stalwart's wire format, from its source (its documentation differs in
//! places; see docs/integrations.md):
//! - the message comes as `message.headers` (`[name, raw value]` pairs, the
//!   value with its leading space and trailing CRLF) plus
//!   `message.contents` (the body only), as JSON strings: bytes that are not
//!   UTF-8 arrive replaced, so binary attachments should be base64 (as MIME
//!   requires anyway);
//! - `response.enhanced_status` is snake_case; we put the enhanced code at
//!   the start of `message` instead, which every version reads;
//! - `modifications` must be absent or an array, never null;
//! - a non-2xx answer (or any parse failure) is a hook error, which Stalwart
//!   either tempfails or, with `tempFailOnError = false`, skips, letting mail
//!   through unscanned. So every answer here is a 200 with JSON, and our
//!   own failures are an explicit 451.
//!
//! draft-degennaro-mta-hooks is a different wire protocol (JSON Patch
//! responses, base64 raw message); no MTA speaks it yet.

use super::{Checked, DoorError, Intake};
use crate::http::{Gateway, auth};
use crate::model::{Action, Door, Modification, Reply, Submission};
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
pub struct HookRequest {
    pub context: Context,
    #[serde(default)]
    pub envelope: Option<HookEnvelope>,
    #[serde(default)]
    pub message: Option<HookMessage>,
}

#[derive(Debug, Deserialize)]
pub struct Context {
    pub stage: String,
    #[serde(default)]
    pub sasl: Option<Sasl>,
    #[serde(default)]
    pub client: Option<Client>,
    #[serde(default)]
    pub queue: Option<Queue>,
}

#[derive(Debug, Deserialize)]
pub struct Sasl {
    #[serde(default)]
    pub login: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Client {
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default, alias = "ehlo")]
    pub helo: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Queue {
    #[serde(default)]
    pub id: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct HookEnvelope {
    #[serde(default)]
    pub from: Option<Address>,
    #[serde(default)]
    pub to: Vec<Address>,
}

#[derive(Debug, Deserialize)]
pub struct Address {
    #[serde(default)]
    pub address: String,
}

#[derive(Debug, Deserialize)]
pub struct HookMessage {
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub contents: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct HookResponse {
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<SmtpResponse>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modifications: Vec<HookModification>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SmtpResponse {
    pub status: u16,
    /// With the enhanced code in front: read by every Stalwart version.
    pub message: String,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HookModification {
    AddHeader {
        name: String,
        value: String,
    },
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
    DeleteHeader {
        index: u32,
        name: String,
    },
}

impl HookMessage {
    /// The RFC 5322 message Stalwart saw, rebuilt from its parts.
    pub fn raw(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.contents.len() + 64 * self.headers.len() + 2);
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
            if !value.ends_with('\n') {
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.contents.as_bytes());
        out
    }
}

fn smtp(reply: &Reply) -> SmtpResponse {
    SmtpResponse {
        status: reply.code,
        message: format!("{} {}", reply.enhanced, reply.text),
    }
}

fn tempfail(reply: Reply) -> Response {
    Json(HookResponse {
        action: "reject",
        response: Some(smtp(&reply)),
        modifications: Vec::new(),
    })
    .into_response()
}

fn door_error(e: &DoorError) -> Response {
    tempfail(e.reply())
}

/// Our modifications in Stalwart's terms. Header removal is by index among
/// headers of that name, so it needs the headers Stalwart sent; indexes go
/// from last to first so each stays valid after the previous delete.
pub fn modifications(mods: &[Modification], headers: &[(String, String)]) -> Vec<HookModification> {
    let count = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count() as u32
    };
    let mut out = Vec::new();
    for m in mods {
        match m {
            Modification::RemoveHeader { name } => {
                for index in (1..=count(name)).rev() {
                    out.push(HookModification::DeleteHeader {
                        index,
                        name: name.clone(),
                    });
                }
            }
            Modification::AddHeader { name, value } => out.push(HookModification::AddHeader {
                name: name.clone(),
                value: value.clone(),
            }),
            Modification::PrefixSubject { prefix } => {
                let subject = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("subject"))
                    .map(|(_, v)| v.trim().to_string());
                out.push(match subject {
                    Some(s) => HookModification::ChangeHeader {
                        index: 1,
                        name: "Subject".into(),
                        value: format!(" {prefix} {s}"),
                    },
                    None => HookModification::AddHeader {
                        name: "Subject".into(),
                        value: prefix.clone(),
                    },
                });
            }
        }
    }
    out
}

pub fn response(c: &Checked, headers: &[(String, String)]) -> HookResponse {
    let v = &c.report.verdict;
    let reply = || v.smtp_reply.as_ref().map(smtp);
    match v.action {
        Action::Accept | Action::Tag => HookResponse {
            action: "accept",
            response: None,
            modifications: modifications(&v.modifications, headers),
        },
        // Stalwart drops a quarantined message like a discarded one; the
        // copy in our spool is the one that matters.
        Action::Quarantine => HookResponse {
            action: "quarantine",
            response: None,
            modifications: Vec::new(),
        },
        Action::Discard => HookResponse {
            action: "discard",
            response: None,
            modifications: Vec::new(),
        },
        Action::Reject | Action::TempFail => HookResponse {
            action: "reject",
            response: reply(),
            modifications: Vec::new(),
        },
    }
}

/// `POST /mta-hooks`
pub async fn hook(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let door = Door::MtaHooks;
    let live = gw.live();
    if let Err(d) = auth::hook(&live.auth, peer, &headers) {
        gw.metrics.refused(door, d.as_str());
        return tempfail(Reply {
            code: 451,
            enhanced: "4.7.1".into(),
            text: "Content filter refused the connection, try again later".into(),
        });
    }
    let received = match super::read_body(&gw, door, &headers, body, false).await {
        Err(e) => return door_error(&e),
        Ok(Intake::Oversize { declared }) => {
            let c = super::oversize(
                &gw,
                door,
                &live,
                &crate::model::Envelope::default(),
                declared,
            );
            return Json(response(&c, &[])).into_response();
        }
        Ok(Intake::Body(b)) => b,
    };
    // Parsing up to max_body_bytes of JSON and rebuilding the message is
    // CPU work: off the runtime. The body's budget share stays held for the
    // rebuilt message until the pool is done with it.
    let crate::http::body::Received { data, permit, .. } = received;
    let parsed = tokio::task::spawn_blocking(move || {
        serde_json::from_slice::<HookRequest>(&data).map(|r| {
            let raw = r.message.as_ref().map(|m| Arc::<[u8]>::from(m.raw()));
            (r, raw)
        })
    })
    .await;
    let (request, raw) = match parsed {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let err = DoorError::BadRequest(format!("not an MTA Hooks request: {e}"));
            gw.metrics.refused(door, err.reason());
            tracing::warn!(error = %err, "answered tempfail");
            return door_error(&err);
        }
        Err(_) => return door_error(&DoorError::Internal),
    };
    if !request.context.stage.eq_ignore_ascii_case("data") {
        return Json(HookResponse {
            action: "accept",
            response: None,
            modifications: Vec::new(),
        })
        .into_response();
    }
    let (Some(message), Some(raw)) = (request.message, raw) else {
        let err = DoorError::BadRequest("data stage without a message".into());
        gw.metrics.refused(door, err.reason());
        return door_error(&err);
    };
    let envelope = request.envelope.unwrap_or(HookEnvelope {
        from: None,
        to: Vec::new(),
    });
    let client = request.context.client;
    let auth_user = request.context.sasl.and_then(|s| s.login);
    // Stalwart turns bytes that are not UTF-8 into U+FFFD before sending:
    // what we inspect and would hold differs from what it received. Say so.
    if memchr::memmem::find(&raw, "\u{FFFD}".as_bytes()).is_some() {
        tracing::warn!(
            "MTA Hooks message contains U+FFFD: 8-bit bytes were replaced before they reached us; the inspected copy differs from the original"
        );
    }
    let mut sub = Submission::mail(raw);
    sub.envelope = super::envelope(
        envelope.from.map(|a| a.address),
        envelope.to.into_iter().map(|a| a.address).collect(),
        client.as_ref().and_then(|c| c.ip.clone()),
        client.and_then(|c| c.helo),
        request.context.queue.and_then(|q| q.id).map(|id| match id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }),
    );
    sub.envelope.auth_user = super::non_empty(auth_user.as_deref());
    match super::inspect(&gw, door, sub, permit).await {
        Ok(c) => Json(response(&c, &message.headers)).into_response(),
        Err(e) => door_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_the_message_from_stalwart_parts() {
        let m = HookMessage {
            headers: vec![
                ("From".into(), " a@b\r\n".into()),
                ("Subject".into(), " hi".into()),
            ],
            contents: "body\r\n".into(),
        };
        assert_eq!(m.raw(), b"From: a@b\r\nSubject: hi\r\n\r\nbody\r\n");
    }

    #[test]
    fn removals_go_last_to_first_and_subject_is_changed_in_place() {
        let headers = vec![
            ("X-Portcullis-Action".to_string(), " accept\r\n".to_string()),
            ("Subject".to_string(), " Invoice\r\n".to_string()),
            ("x-portcullis-action".to_string(), " accept\r\n".to_string()),
        ];
        let mods = [
            Modification::RemoveHeader {
                name: "X-Portcullis-Action".into(),
            },
            Modification::PrefixSubject {
                prefix: "[SUSPICIOUS]".into(),
            },
        ];
        let out = modifications(&mods, &headers);
        assert_eq!(
            out,
            vec![
                HookModification::DeleteHeader {
                    index: 2,
                    name: "X-Portcullis-Action".into()
                },
                HookModification::DeleteHeader {
                    index: 1,
                    name: "X-Portcullis-Action".into()
                },
                HookModification::ChangeHeader {
                    index: 1,
                    name: "Subject".into(),
                    value: " [SUSPICIOUS] Invoice".into()
                },
            ]
        );
        let json = serde_json::to_value(&out[2]).unwrap();
        assert_eq!(json["type"], "changeHeader");
    }

    #[test]
    fn parses_a_real_stalwart_request() {
        let text = r#"{"context":{"stage":"data","client":{"ip":"192.0.2.10","port":52344,"ptr":null,"helo":"mx.example.org","activeConnections":1},"server":{"name":"Stalwart v0.16.19","port":25,"ip":"198.51.100.5"},"queue":{"id":"18c4a2f0b1d3e5"},"protocol":{"version":1}},"envelope":{"from":{"address":"alice@example.org"},"to":[{"address":"bob@example.com"}]},"message":{"headers":[["Subject"," Lunch?\r\n"]],"contents":"Hungry?\r\n","size":30}}"#;
        let r: HookRequest = serde_json::from_str(text).unwrap();
        assert_eq!(r.context.stage, "data");
        assert_eq!(r.envelope.unwrap().to[0].address, "bob@example.com");
        assert_eq!(
            r.message.unwrap().raw(),
            b"Subject: Lunch?\r\n\r\nHungry?\r\n"
        );
    }
}
