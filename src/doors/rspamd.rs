//! The rspamd protocol, so rspamc, rspamd's own proxy (milter mode, for
//! Postfix and Sendmail) and Haraka's rspamd plugin work unchanged.
//!
//! What the clients need, learned from rspamd 3.4 and its clients (see
//! docs/integrations.md for the sources):
//!
//! - paths are matched without regard to case and the method is ignored:
//!   the proxy sends `GET /checkv2` with a body;
//! - request headers `From`, `Rcpt` (repeated, or a comma list), `IP` (with
//!   or without a port), `Helo`, `Queue-Id`, `Hostname`, `User`, `Flags`,
//!   any case; query pairs count as headers;
//! - `Compression: zstd` bodies; a reply is compressed only when asked
//!   (compressed request, `Flags: zstd`, `Accept-Encoding: zstd`): Haraka
//!   cannot read a compressed reply;
//! - `Content-Type: application/json` exactly: the proxy compares the whole
//!   value and tempfails on anything else;
//! - action names with spaces; the proxy ignores the HTTP status and acts on
//!   the body, so every error body carries `"action": "soft reject"`;
//! - discard and quarantine go through `milter.reject`, SMTP text through
//!   `messages.smtp_message` (the proxy prefixes `554 5.7.1`).

use super::{Checked, DoorError, Intake};
use crate::config::{Config, QuarantineSignal};
use crate::http::{Gateway, auth};
use crate::model::{Action, Door, Modification, Submission};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// Paths rspamd's normal worker answers; anything else is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    CheckV2,
    /// `/check`, `/symbols` and the other protocol-v1 names: the same scan,
    /// symbols inside a `"default"` metric object.
    Legacy,
    Ping,
}

fn command(path: &str) -> Option<Command> {
    let p = path.trim_start_matches('/').to_ascii_lowercase();
    match p.as_str() {
        "checkv2" | "skip" => Some(Command::CheckV2),
        "check" | "symbols" | "scan" | "process" | "report" | "report_ifspam" => {
            Some(Command::Legacy)
        }
        "ping" => Some(Command::Ping),
        _ => None,
    }
}

/// The rspamd name of an action.
pub fn action_name(action: Action, modifications: &[Modification]) -> &'static str {
    match action {
        Action::Accept => "no action",
        Action::Tag
            if modifications
                .iter()
                .any(|m| matches!(m, Modification::PrefixSubject { .. })) =>
        {
            "rewrite subject"
        }
        Action::Tag => "add header",
        Action::TempFail => "soft reject",
        Action::Quarantine | Action::Reject | Action::Discard => "reject",
    }
}

/// Request headers plus query pairs (rspamd treats `?k=v` as headers).
struct Fields<'a> {
    headers: &'a HeaderMap,
    query: Vec<(String, String)>,
}

impl Fields<'_> {
    fn all(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        v.extend(
            self.query
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone()),
        );
        v
    }

    fn one(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }

    fn flags(&self) -> Vec<String> {
        self.all("flags")
            .iter()
            .flat_map(|f| f.split(','))
            .map(|f| f.trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect()
    }
}

/// Splits a `Rcpt` value that lists several addresses, keeping commas
/// inside quoted local parts.
pub fn split_addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn json_response(status: StatusCode, body: &Value, compress: bool) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = if compress {
        let mut r = (status, crate::http::body::zstd(&bytes)).into_response();
        r.headers_mut()
            .insert("compression", HeaderValue::from_static("zstd"));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
        r
    } else {
        (status, bytes).into_response()
    };
    // Exactly this value: rspamd's proxy compares it whole.
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// No verdict: `soft reject`, which every rspamd client turns into a 4xx.
fn soft_reject(status: StatusCode, error: &str, text: &str) -> Response {
    json_response(
        status,
        &json!({
            "is_skipped": false,
            "score": 0.0,
            "required_score": 0.0,
            "action": "soft reject",
            "symbols": {},
            "messages": { "smtp_message": text },
            "error": error,
        }),
        false,
    )
}

fn door_error(e: &DoorError) -> Response {
    soft_reject(e.status(), &e.to_string(), &e.reply().text)
}

/// Every path the router does not own.
pub async fn dispatch(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(cmd) = command(uri.path()) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "not found", "path": uri.path() })),
        )
            .into_response();
    };
    if cmd == Command::Ping {
        return ([(header::CONTENT_TYPE, "text/plain")], "pong\r\n").into_response();
    }
    let door = Door::Rspamd;
    let live = gw.live();
    if let Err(d) = auth::hook(&live.auth, peer, &headers) {
        gw.metrics.refused(door, d.as_str());
        return soft_reject(
            d.status(),
            d.as_str(),
            "Content filter refused the connection, try again later",
        );
    }
    let fields = Fields {
        headers: &headers,
        query: super::native::query_pairs(uri.query()),
    };
    // rspamd can pass the message by shared memory or file name instead of
    // the body (its HTTP proxy does so to a loopback upstream). We read
    // only bodies; scanning the empty body would pass the message unseen.
    if let Some(h) = ["shm", "file", "path"]
        .into_iter()
        .find(|h| !fields.all(h).is_empty())
    {
        let err = DoorError::BadRequest(format!(
            "message passed by {h:?} header; only request bodies are read (use the rspamd proxy in milter mode, or a non-loopback upstream)"
        ));
        gw.metrics.refused(door, err.reason());
        tracing::warn!(error = %err, "answered tempfail");
        return door_error(&err);
    }
    let rcpt = fields
        .all("rcpt")
        .iter()
        .flat_map(|r| split_addresses(r))
        .collect();
    let envelope = super::envelope(
        fields.one("from"),
        rcpt,
        fields.one("ip"),
        fields.one("helo"),
        fields.one("queue-id"),
    );
    let mut envelope = envelope;
    envelope.auth_user = super::non_empty(fields.one("user").as_deref());
    let flags = fields.flags();
    let accept_zstd = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("zstd"));

    let (checked, compressed, raw) = match super::read_body(&gw, door, &headers, body, true).await {
        Err(e) => return door_error(&e),
        Ok(Intake::Oversize { declared }) => (
            super::oversize(&gw, door, &live, &envelope, declared),
            false,
            None,
        ),
        Ok(Intake::Body(received)) => {
            let compressed = received.compressed;
            let data = match super::shared(received.data).await {
                Ok(r) => r,
                Err(e) => return door_error(&e),
            };
            let mut sub = Submission::mail(data);
            sub.envelope = envelope;
            let raw = Arc::clone(&sub.raw);
            match super::inspect(&gw, door, sub, received.permit).await {
                Ok(c) => (c, compressed, Some(raw)),
                Err(e) => return door_error(&e),
            }
        }
    };
    let compress = compressed || accept_zstd || flags.iter().any(|f| f == "zstd");
    let reply = reply(&checked, raw.as_deref(), &live, cmd == Command::Legacy);
    json_response(StatusCode::OK, &reply, compress)
}

/// The rspamd reply for a verdict. `raw` is the message (for the subject
/// rewrite and message-id), absent for an oversize message never read.
fn reply(c: &Checked, raw: Option<&[u8]>, config: &Config, legacy: bool) -> Value {
    let v = &c.report.verdict;
    let action = action_name(v.action, &v.modifications);

    let mut symbols = Map::new();
    for f in &c.report.findings {
        let name = f.kind.name();
        let entry = symbols.entry(name.clone()).or_insert_with(|| {
            let mut s = json!({
                "name": name,
                "score": 0.0,
                "description": f.description,
                "options": [],
            });
            if !legacy {
                s["metric_score"] = json!(f64::from(f.score));
            }
            s
        });
        if !f.monitor {
            let total = entry["score"].as_f64().unwrap_or(0.0) + f64::from(f.score);
            entry["score"] = json!(total);
        }
        if let Some(options) = entry["options"].as_array_mut()
            && options.len() < 16
        {
            options.push(json!(f.path));
        }
    }

    let mut add_headers = Map::new();
    let mut remove_headers = Map::new();
    let mut subject_prefix = None;
    for m in &v.modifications {
        match m {
            Modification::AddHeader { name, value } => {
                add_headers.insert(name.clone(), json!(value));
            }
            Modification::RemoveHeader { name } => {
                remove_headers.insert(name.clone(), json!(0));
            }
            Modification::PrefixSubject { prefix } => subject_prefix = Some(prefix.clone()),
        }
    }
    let mut milter = Map::new();
    if !add_headers.is_empty() {
        milter.insert("add_headers".into(), Value::Object(add_headers));
    }
    if !remove_headers.is_empty() {
        milter.insert("remove_headers".into(), Value::Object(remove_headers));
    }
    match v.action {
        Action::Quarantine => {
            let how = match config.quarantine_signal {
                QuarantineSignal::Discard => "discard",
                QuarantineSignal::Hold => "quarantine",
            };
            milter.insert("reject".into(), json!(how));
        }
        Action::Discard => {
            milter.insert("reject".into(), json!("discard"));
        }
        _ => {}
    }

    let mut messages = Map::new();
    if let Some(r) = &v.smtp_reply {
        messages.insert("smtp_message".into(), json!(r.text));
    } else if v.action == Action::Quarantine {
        messages.insert("smtp_message".into(), json!("Message held for review"));
    }

    let mut metric = Map::new();
    if legacy {
        metric.insert("is_spam".into(), json!(v.action != Action::Accept));
    }
    metric.insert("is_skipped".into(), json!(false));
    metric.insert("score".into(), json!(f64::from(v.score)));
    metric.insert(
        "required_score".into(),
        json!(f64::from(config.policy.reject_score)),
    );
    metric.insert("action".into(), json!(action));
    if let (Some(prefix), "rewrite subject") = (&subject_prefix, action) {
        let original = raw
            .and_then(|r| super::header_value(r, "subject"))
            .unwrap_or_default();
        metric.insert("subject".into(), json!(format!("{prefix} {original}")));
    }

    let mut out = Map::new();
    if legacy {
        for (k, s) in symbols {
            metric.insert(k, s);
        }
        out.insert("default".into(), Value::Object(metric));
    } else {
        out.extend(metric);
        out.insert(
            "thresholds".into(),
            json!({
                "reject": f64::from(config.policy.reject_score),
                "add header": f64::from(config.policy.tag_score),
            }),
        );
        out.insert("symbols".into(), Value::Object(symbols));
    }
    out.insert("messages".into(), Value::Object(messages));
    if let Some(raw) = raw {
        let id = super::header_value(raw, "message-id")
            .map(|m| {
                m.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
            .unwrap_or_else(|| "undef".into());
        out.insert("message-id".into(), json!(id));
    }
    out.insert("time_real".into(), json!(c.report.duration_ms / 1000.0));
    if !milter.is_empty() {
        out.insert(
            if legacy { "rmilter" } else { "milter" }.into(),
            Value::Object(milter),
        );
    }
    // Ours, ignored by rspamd clients: the real action (rspamd has no
    // quarantine) and what decided it.
    out.insert(
        "portcullis".into(),
        json!({
            "action": v.action,
            "summary": v.summary,
            "deciding_path": v.deciding_path,
            "quarantine_id": c.quarantine_id,
            "rules_version": c.report.rules_version,
        }),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_ignore_case_and_unknown_paths_are_not_ours() {
        assert_eq!(command("/checkv2"), Some(Command::CheckV2));
        assert_eq!(command("/CheckV2"), Some(Command::CheckV2));
        assert_eq!(command("/SYMBOLS"), Some(Command::Legacy));
        assert_eq!(command("/ping"), Some(Command::Ping));
        assert_eq!(command("/checkv3"), None);
        assert_eq!(command("/"), None);
    }

    #[test]
    fn rcpt_lists_split_outside_quotes() {
        assert_eq!(
            split_addresses(r#"<a@x>, "b,c"@y , d@z"#),
            vec!["<a@x>", r#""b,c"@y"#, "d@z"]
        );
    }

    #[test]
    fn every_action_has_an_rspamd_name_the_proxy_knows() {
        let known = [
            "no action",
            "add header",
            "rewrite subject",
            "soft reject",
            "reject",
        ];
        for a in Action::ALL {
            assert!(known.contains(&action_name(a, &[])), "{a}");
        }
        let prefix = [Modification::PrefixSubject {
            prefix: "[X]".into(),
        }];
        assert_eq!(action_name(Action::Tag, &prefix), "rewrite subject");
    }
}
