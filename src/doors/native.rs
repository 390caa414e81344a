//! Our own HTTP API: `POST /v1/check` for MTAs and scripts (raw message in,
//! verdict with milter-style modifications out) and `POST /v1/scan` (one
//! file in, the full report out). Documented in `docs/openapi.json`.

use super::{Checked, DoorError, Intake};
use crate::http::{Gateway, auth};
use crate::model::{Action, Door, Finding, Modification, Reply, Submission};
use crate::pipeline::Report;
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;

pub const CHECK_SCHEMA: &str = "portcullis.check.v1";

/// One finding as an MTA-facing reason.
#[derive(Debug, Serialize)]
pub struct Reason<'a> {
    pub name: String,
    pub path: &'a str,
    pub score: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub monitor: bool,
    pub description: &'a str,
}

#[derive(Debug, Serialize)]
pub struct CheckReply<'a> {
    pub schema: &'static str,
    pub action: Action,
    pub score: i32,
    pub summary: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deciding_path: Option<&'a str>,
    pub reasons: Vec<Reason<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_reply: Option<&'a Reply>,
    pub modifications: &'a [Modification],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_id: Option<&'a str>,
    pub rules_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<&'a Report>,
}

pub fn reasons(findings: &[Finding]) -> Vec<Reason<'_>> {
    findings
        .iter()
        .map(|f| Reason {
            name: f.kind.name(),
            path: &f.path,
            score: f.score,
            action: f.action,
            monitor: f.monitor,
            description: &f.description,
        })
        .collect()
}

/// The answer when there is no verdict: tempfail in the body whatever the
/// status, so a client that only reads `action` still does the safe thing.
#[derive(Debug, Serialize)]
pub struct ErrorReply {
    pub schema: &'static str,
    pub action: Action,
    pub smtp_reply: Reply,
    pub error: String,
}

pub fn error_response(status: StatusCode, error: String, reply: Reply) -> Response {
    (
        status,
        Json(ErrorReply {
            schema: CHECK_SCHEMA,
            action: Action::TempFail,
            smtp_reply: reply,
            error,
        }),
    )
        .into_response()
}

fn door_error(e: &DoorError) -> Response {
    let status = e.status();
    let mut resp = error_response(status, e.to_string(), e.reply());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("5"));
    }
    resp
}

fn denied(d: auth::Denied) -> Response {
    error_response(
        d.status(),
        d.as_str().into(),
        Reply {
            code: 451,
            enhanced: "4.7.1".into(),
            text: "Content filter refused the connection, try again later".into(),
        },
    )
}

/// Query string pairs, percent-decoded; keys may repeat (`rcpt`).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match hex::decode(&bytes[i + 1..i + 3]) {
                Ok(b) => {
                    out.extend_from_slice(&b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Envelope from `?from=&rcpt=&rcpt=&ip=&helo=&queue_id=` or the matching
/// `X-Mail-From`, `X-Rcpt-To` (repeatable), `X-Client-IP`, `X-Helo`,
/// `X-Queue-Id`, `X-Auth-User` headers; query parameters win.
fn envelope(query: &[(String, String)], headers: &HeaderMap) -> crate::model::Envelope {
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut rcpt: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "rcpt")
        .map(|(_, v)| v.clone())
        .collect();
    if rcpt.is_empty() {
        rcpt = headers
            .get_all("x-rcpt-to")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::to_string)
            .collect();
    }
    let mut envelope = super::envelope(
        q("from").or_else(|| h("x-mail-from")),
        rcpt,
        q("ip").or_else(|| h("x-client-ip")),
        q("helo").or_else(|| h("x-helo")),
        q("queue_id").or_else(|| h("x-queue-id")),
    );
    envelope.auth_user = super::non_empty(q("auth_user").or_else(|| h("x-auth-user")).as_deref());
    envelope
}

fn check_reply(c: &Checked, with_report: bool) -> CheckReply<'_> {
    let v = &c.report.verdict;
    CheckReply {
        schema: CHECK_SCHEMA,
        action: v.action,
        score: v.score,
        summary: &v.summary,
        deciding_path: v.deciding_path.as_deref(),
        reasons: reasons(&c.report.findings),
        smtp_reply: v.smtp_reply.as_ref(),
        modifications: &v.modifications,
        quarantine_id: c.quarantine_id.as_deref(),
        rules_version: &c.report.rules_version,
        report: with_report.then_some(&c.report),
    }
}

/// `POST /v1/check`
pub async fn check(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let door = Door::Native;
    let live = gw.live();
    if let Err(d) = auth::hook(&live.auth, peer, &headers) {
        gw.metrics.refused(door, d.as_str());
        return denied(d);
    }
    let query = query_pairs(query.as_deref());
    let with_report = !query
        .iter()
        .any(|(k, v)| k == "report" && matches!(v.as_str(), "0" | "false" | "no"));
    let envelope = envelope(&query, &headers);
    let checked = match super::read_body(&gw, door, &headers, body, true).await {
        Err(e) => return door_error(&e),
        Ok(Intake::Oversize { declared }) => super::oversize(&gw, door, &live, &envelope, declared),
        Ok(Intake::Body(received)) => {
            let raw = match super::shared(received.data).await {
                Ok(r) => r,
                Err(e) => return door_error(&e),
            };
            let mut sub = Submission::mail(raw);
            sub.envelope = envelope;
            match super::inspect(&gw, door, sub, received.permit).await {
                Ok(c) => c,
                Err(e) => return door_error(&e),
            }
        }
    };
    Json(check_reply(&checked, with_report)).into_response()
}

/// `POST /v1/scan`: a file, not a message. `?name=` (or `X-File-Name`)
/// gives the name for extension checks. Never quarantined.
pub async fn scan(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let door = Door::Scan;
    let live = gw.live();
    if let Err(d) = auth::hook_or_role(&live.auth, peer, &headers, crate::config::Role::Analyst) {
        gw.metrics.refused(door, d.as_str());
        return denied(d);
    }
    let query = query_pairs(query.as_deref());
    let name = query
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .or_else(|| {
            headers
                .get("x-file-name")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .filter(|n| !n.is_empty());
    match super::read_body(&gw, door, &headers, body, true).await {
        Err(e) => door_error(&e),
        Ok(Intake::Oversize { .. }) => {
            gw.metrics.refused(door, "oversize");
            error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "file larger than server.max_body_bytes ({} bytes)",
                    gw.server.max_body_bytes
                ),
                Reply {
                    code: 552,
                    enhanced: "5.3.4".into(),
                    text: "File too big for content inspection".into(),
                },
            )
        }
        Ok(Intake::Body(received)) => {
            let raw = match super::shared(received.data).await {
                Ok(r) => r,
                Err(e) => return door_error(&e),
            };
            let sub = Submission::file(name, raw);
            match super::inspect(&gw, door, sub, received.permit).await {
                Ok(c) => Json(&c.report).into_response(),
                Err(e) => door_error(&e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_and_repeat() {
        let q = query_pairs(Some(
            "from=%3Ca%40b%3E&rcpt=x%40y&rcpt=z@w&helo=mx+1&bad=%zz&t=%4",
        ));
        assert_eq!(q[0], ("from".into(), "<a@b>".into()));
        assert_eq!(q[1].1, "x@y");
        assert_eq!(q[2].1, "z@w");
        assert_eq!(q[3].1, "mx 1");
        assert_eq!(q[4].1, "%zz");
        assert_eq!(q[5].1, "%4");
    }
}
