//! The web UI under `/ui` (operators) and `/release/TOKEN` (recipients):
//! server-rendered pages (askama, escaped by default), no JavaScript at
//! all, and a Content-Security-Policy that would stop any that got in.
//! Message content is shown as text only: headers and the text body
//! escaped, HTML never rendered, nothing remote ever loaded.
//!
//! Recipients' links change nothing on GET (mail scanners fetch every link
//! they see); the release happens on the confirmation page's POST.

pub mod session;

use super::Gateway;
use super::auth;
use super::quarantine::{ApiError, change_result, list_query, raw_response, release};
use crate::config::Role;
use crate::release::link::{self, LinkError};
use crate::release::{ReleaseError, unix_now};
use crate::store::{Actor, Change, RecipientState, State, Via, format_utc};
use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use session::UiUser;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/ui", get(queue))
        .route("/ui/", get(queue))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/bulk", post(bulk))
        .route("/ui/m/{id}", get(message))
        .route("/ui/m/{id}/raw", get(raw))
        .route("/ui/m/{id}/{action}", post(act))
        .route("/ui/static/ui.css", get(css))
        .route("/release/{token}", get(link_page).post(link_release))
}

/// Headers every page gets: no script, no framing, no referrer (links
/// carry tokens), no caching of pages that show mail.
fn harden(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(
            header::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    set(h, "cache-control", "no-store");
    resp
}

fn page(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => {
            harden(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            harden(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

fn result_page(
    status: StatusCode,
    user: Option<UiUser>,
    heading: &str,
    text: &str,
    back: Option<String>,
) -> Response {
    let mut r = page(&ResultPage {
        user,
        notice: None,
        heading: heading.to_string(),
        text: text.to_string(),
        back,
    });
    *r.status_mut() = status;
    r
}

fn secure(gw: &Gateway) -> bool {
    gw.live().release.public_url.starts_with("https://")
}

fn user(gw: &Gateway, headers: &HeaderMap) -> Option<UiUser> {
    session::current(&gw.releaser.keys, &gw.live().auth, headers, unix_now())
}

fn to_login() -> Response {
    harden(Redirect::to("/ui/login").into_response())
}

/// A `application/x-www-form-urlencoded` body as pairs.
fn form(body: &[u8]) -> Vec<(String, String)> {
    crate::doors::native::query_pairs(Some(&String::from_utf8_lossy(body)))
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn actor(u: &UiUser, peer: SocketAddr) -> Actor {
    Actor {
        name: u.name.clone(),
        via: Via::Ui,
        address: Some(peer.ip().to_string()),
    }
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("ui.css"),
    )
        .into_response()
}

// ---- login ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    user: Option<UiUser>,
    notice: Option<String>,
    csrf: String,
}

async fn login_page(AxState(gw): AxState<Arc<Gateway>>, headers: HeaderMap) -> Response {
    login_form(&gw, &headers, None, StatusCode::OK)
}

fn login_form(
    gw: &Gateway,
    headers: &HeaderMap,
    notice: Option<&str>,
    status: StatusCode,
) -> Response {
    // Login CSRF: the form's token is bound to a random value in a cookie
    // only this browser has.
    let pre = session::cookie(headers, session::PRE_COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| {
            let mut b = [0u8; 16];
            let _ = getrandom::fill(&mut b);
            hex::encode(b)
        });
    let mut r = page(&LoginPage {
        user: None,
        notice: notice.map(str::to_string),
        csrf: session::csrf_for(&gw.releaser.keys, &format!("login:{pre}")),
    });
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        session::PRE_COOKIE,
        &pre,
        secure(gw),
        3600,
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn login(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let pairs = form(&body);
    let pre = session::cookie(&headers, session::PRE_COOKIE).unwrap_or_default();
    if pre.is_empty()
        || !session::csrf_ok(
            &gw.releaser.keys,
            &format!("login:{pre}"),
            field(&pairs, "csrf").unwrap_or(""),
        )
    {
        return login_form(
            &gw,
            &headers,
            Some("The form expired. Please log in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let name = field(&pairs, "user").unwrap_or("").trim().to_string();
    let password = field(&pairs, "password").unwrap_or("").to_string();
    let cfg = gw.live();
    let principal = if name.is_empty() {
        auth::token_identity(&cfg.auth, password.trim()).map(|(n, _)| format!("token:{n}"))
    } else {
        // argon2 is slow and memory-hungry on purpose: at most two at a
        // time, so a login flood cannot crowd out quarantine writes on the
        // blocking pool; the rest wait their turn.
        static ARGON2: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let _turn = ARGON2.acquire().await.ok();
        let auth_cfg = cfg.auth.clone();
        let n = name.clone();
        tokio::task::spawn_blocking(move || auth::user_login(&auth_cfg, &n, &password))
            .await
            .ok()
            .flatten()
            .map(|_| format!("user:{name}"))
    };
    let Some(principal) = principal else {
        tracing::warn!(user = %name, from = %peer.ip(), "UI login failed");
        return login_form(
            &gw,
            &headers,
            Some("Wrong user or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    tracing::info!(user = %principal, from = %peer.ip(), "UI login");
    let cookie = session::issue(&gw.releaser.keys, &principal, unix_now());
    let mut r = harden(Redirect::to("/ui").into_response());
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        session::COOKIE,
        &cookie,
        secure(&gw),
        session::LIFETIME_SECS,
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn logout(
    AxState(gw): AxState<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(u) = user(&gw, &headers) else {
        return to_login();
    };
    let pairs = form(&body);
    if !session::csrf_ok(
        &gw.releaser.keys,
        &u.sid,
        field(&pairs, "csrf").unwrap_or(""),
    ) {
        return result_page(
            StatusCode::FORBIDDEN,
            Some(u),
            "Refused",
            "The form expired; reload the page and try again.",
            Some("/ui".into()),
        );
    }
    let mut r = harden(Redirect::to("/ui/login").into_response());
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(session::COOKIE, "", secure(&gw), 0))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

// ---- queue ----

#[derive(Default)]
struct Filters {
    rcpt: String,
    sender: String,
    rule: String,
    q: String,
    state: String,
    since: String,
    until: String,
    sort: String,
    candidate: bool,
}

struct Row {
    id: String,
    received: String,
    sender: String,
    recipients: String,
    subject: String,
    rule: String,
    score: i64,
    state: String,
    open: bool,
    candidate: bool,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    user: Option<UiUser>,
    notice: Option<String>,
    u: UiUser,
    f: Filters,
    states: Vec<&'static str>,
    sorts: Vec<&'static str>,
    rows: Vec<Row>,
    total: i64,
    first: u64,
    last: u64,
    can_act: bool,
    prev: Option<String>,
    next: Option<String>,
}

async fn queue(
    AxState(gw): AxState<Arc<Gateway>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(u) = user(&gw, &headers) else {
        return to_login();
    };
    let mut q = match list_query(query.as_deref()) {
        Ok(q) => q,
        Err(e) => {
            return result_page(
                StatusCode::BAD_REQUEST,
                Some(u),
                "Bad filter",
                &e,
                Some("/ui".into()),
            );
        }
    };
    q.limit = q.limit.min(200);
    q.offset = q.offset.min(crate::store::db::MAX_OFFSET);
    let pairs = crate::doors::native::query_pairs(query.as_deref());
    let get = |k: &str| field(&pairs, k).unwrap_or("").to_string();
    let f = Filters {
        rcpt: get("rcpt"),
        sender: get("sender"),
        rule: get("rule"),
        q: get("q"),
        state: get("state"),
        since: get("since"),
        until: get("until"),
        candidate: q.candidates,
        sort: if get("sort").is_empty() {
            "received".into()
        } else {
            get("sort")
        },
    };
    let page_result = match gw.store.db.list(&q).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let rows = page_result
        .items
        .iter()
        .map(|m| Row {
            id: m.id.clone(),
            received: format_utc(m.received_ms),
            sender: m
                .sender
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<>".into()),
            recipients: m
                .recipients
                .iter()
                .map(|r| r.address.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            subject: m.subject.clone().unwrap_or_else(|| "(no subject)".into()),
            rule: m.rule.clone().unwrap_or_default(),
            score: m.score,
            state: m.state.to_string(),
            open: m.state.is_open(),
            candidate: m.release_candidate.is_some(),
        })
        .collect::<Vec<_>>();
    // Paging links keep the filters and move the offset.
    let base: Vec<String> = pairs
        .iter()
        .filter(|(k, v)| k != "offset" && !v.is_empty())
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let link = |offset: u64| {
        let mut p = base.clone();
        p.push(format!("offset={offset}"));
        format!("/ui?{}", p.join("&"))
    };
    let limit = u64::from(page_result.limit);
    let prev = (q.offset > 0).then(|| link(q.offset.saturating_sub(limit)));
    let next =
        (q.offset + (rows.len() as u64) < page_result.total as u64).then(|| link(q.offset + limit));
    let can_act = u.role >= Role::Operator;
    page(&QueuePage {
        user: Some(u.clone()),
        notice: None,
        first: if rows.is_empty() { 0 } else { q.offset + 1 },
        last: q.offset + rows.len() as u64,
        u,
        f,
        states: State::ALL.iter().map(|s| s.as_str()).collect(),
        sorts: vec!["received", "score", "size", "sender", "subject", "expires"],
        rows,
        total: page_result.total,
        can_act,
        prev,
        next,
    })
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- one message ----

struct FindingRow {
    rule: String,
    path: String,
    score: String,
    severity: String,
    action: String,
    description: String,
    deciding: bool,
    monitor: bool,
}

struct ObjectRow {
    depth: u64,
    path: String,
    name: String,
    declared: String,
    true_type: String,
    size: u64,
    outcome: String,
    sha256: String,
}

struct AuditRow {
    when: String,
    event: String,
    actor: String,
    via: String,
    address: String,
    recipient: String,
    states: String,
    detail: String,
}

struct MessageView {
    id: String,
    subject: String,
    state: String,
    summary: String,
    received: String,
    expires: String,
    door: String,
    sender: String,
    client: String,
    size: i64,
    sha256: String,
    rules_version: String,
    /// "rules VERSION would ACTION it", from the retro-scan.
    candidate: Option<String>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    user: Option<UiUser>,
    notice: Option<String>,
    u: UiUser,
    m: MessageView,
    recipients: Vec<(String, String)>,
    findings: Vec<FindingRow>,
    objects: Vec<ObjectRow>,
    audit: Vec<AuditRow>,
    headers: String,
    text: String,
    request_only: bool,
    requested: bool,
    open: bool,
    can_act: bool,
    can_raw: bool,
}

const SHOWN_MAX: usize = 64 << 10;
const PREVIEW_INPUT_MAX: usize = 4 << 20;

/// The header block and a text rendering of the body, for display only.
/// Parsing is CPU work on hostile bytes: off the runtime, and a panic in
/// the parser costs the preview, not the page.
async fn preview(raw: Vec<u8>) -> (String, String) {
    tokio::task::spawn_blocking(move || {
        let end = memchr::memmem::find(&raw, b"\r\n\r\n")
            .or_else(|| memchr::memmem::find(&raw, b"\n\n"))
            .unwrap_or(raw.len())
            .min(SHOWN_MAX);
        let headers = String::from_utf8_lossy(&raw[..end]).replace('\r', "");
        let text = std::panic::catch_unwind(|| {
            mail_parser::MessageParser::default()
                .parse(&raw)
                .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
                .unwrap_or_default()
        })
        .unwrap_or_else(|_| "(the body could not be parsed for display)".into());
        let text = if text.len() > SHOWN_MAX {
            let mut cut = SHOWN_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}\n… (cut at {SHOWN_MAX} bytes)", &text[..cut])
        } else {
            text
        };
        (headers, text)
    })
    .await
    .unwrap_or_default()
}

fn s(v: &serde_json::Value, k: &str) -> String {
    match v.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

async fn message(
    AxState(gw): AxState<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(u) = user(&gw, &headers) else {
        return to_login();
    };
    let cfg = gw.live();
    let d = match gw.store.db.detail(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return result_page(
                StatusCode::NOT_FOUND,
                Some(u),
                "Not found",
                "No such message.",
                Some("/ui".into()),
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (hdrs, text) = if d.summary.state.is_open() || d.summary.state == State::Released {
        // A preview needs the head and the start of the text, not 64 MiB.
        match gw
            .store
            .raw_head(&d.summary.sha256, PREVIEW_INPUT_MAX)
            .await
        {
            Ok(raw) => preview(raw).await,
            Err(_) => (
                "(the message bytes are no longer kept)".into(),
                String::new(),
            ),
        }
    } else {
        (
            format!("(the message was {})", d.summary.state),
            String::new(),
        )
    };
    let deciding = d.report.get("deciding_finding").and_then(|v| v.as_u64());
    let findings = d
        .report
        .get("findings")
        .and_then(|f| f.as_array())
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, f)| FindingRow {
                    rule: d
                        .findings
                        .get(i)
                        .map(|x| x.rule.clone())
                        .unwrap_or_else(|| s(f, "kind")),
                    path: s(f, "path"),
                    score: s(f, "score"),
                    severity: s(f, "severity"),
                    action: s(f, "action"),
                    description: s(f, "description"),
                    deciding: deciding == Some(i as u64),
                    monitor: f.get("monitor").and_then(|m| m.as_bool()).unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    let objects = d
        .report
        .get("objects")
        .and_then(|o| o.as_array())
        .map(|list| {
            list.iter()
                .map(|o| ObjectRow {
                    depth: o.get("depth").and_then(|v| v.as_u64()).unwrap_or(0),
                    path: s(o, "path"),
                    name: s(o, "name"),
                    declared: s(o, "declared_type"),
                    true_type: s(o, "true_type"),
                    size: o.get("size").and_then(|v| v.as_u64()).unwrap_or(0),
                    outcome: o
                        .get("outcome")
                        .map(|v| match v.get("status") {
                            Some(serde_json::Value::String(st))
                                if v.as_object().is_some_and(|m| m.len() == 1) =>
                            {
                                st.clone()
                            }
                            _ => v.to_string(),
                        })
                        .unwrap_or_default(),
                    sha256: s(o, "sha256"),
                })
                .collect()
        })
        .unwrap_or_default();
    let audit = d
        .audit
        .iter()
        .map(|a| AuditRow {
            when: format_utc(a.at_ms),
            event: a.event.clone(),
            actor: a.actor.clone(),
            via: a.via.clone(),
            address: a.address.clone().unwrap_or_default(),
            recipient: a.recipient.clone().unwrap_or_default(),
            states: match (&a.from_state, &a.to_state) {
                (Some(f), Some(t)) if f != t => format!("{f} → {t}"),
                (_, Some(t)) => t.clone(),
                _ => String::new(),
            },
            detail: a.detail.clone().unwrap_or_default(),
        })
        .collect();
    let sm = &d.summary;
    // Fixed texts by code: a link cannot put words in the operator's UI.
    let notice = crate::doors::native::query_pairs(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "done")
        .and_then(|(_, v)| match v.as_str() {
            "released" => Some("Released to the waiting recipients."),
            "partial" => Some(
                "Released to some recipients; the relay refused the others (see the audit trail).",
            ),
            "deleted" => Some("Deleted."),
            "denied" => Some("Release requests denied."),
            _ => None,
        })
        .map(str::to_string);
    let open = sm.state.is_open();
    page(&MessagePage {
        user: Some(u.clone()),
        notice,
        can_act: u.role >= Role::Operator,
        can_raw: u.role >= cfg.quarantine.raw_download_role,
        u,
        m: MessageView {
            id: sm.id.clone(),
            subject: sm.subject.clone().unwrap_or_else(|| "(no subject)".into()),
            state: sm.state.to_string(),
            summary: sm.summary.clone(),
            received: format_utc(sm.received_ms),
            expires: format_utc(sm.expires_ms),
            door: sm.door.clone(),
            sender: sm
                .sender
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<>".into()),
            client: [
                d.client_ip.clone(),
                d.helo.clone().map(|h| format!("HELO {h}")),
                d.queue_id.clone().map(|q| format!("queue id {q}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
            size: sm.size,
            sha256: sm.sha256.clone(),
            rules_version: sm.rules_version.clone(),
            candidate: sm.release_candidate.as_ref().map(|c| c.describe()),
        },
        recipients: sm
            .recipients
            .iter()
            .map(|r| (r.address.clone(), r.state.as_str().replace('_', " ")))
            .collect(),
        requested: sm
            .recipients
            .iter()
            .any(|r| r.state == RecipientState::ReleaseRequested),
        request_only: crate::release::dangerous(&cfg.release, &d.findings),
        findings,
        objects,
        audit,
        headers: hdrs,
        text,
        open,
    })
}

async fn raw(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(u) = user(&gw, &headers) else {
        return to_login();
    };
    if u.role < gw.live().quarantine.raw_download_role {
        return result_page(
            StatusCode::FORBIDDEN,
            Some(u),
            "Not allowed",
            "Your role may not download raw messages.",
            Some(format!("/ui/m/{}", enc(&id))),
        );
    }
    match raw_response(&gw, &id, &u.name, Via::Ui, peer).await {
        Ok(r) => harden(r),
        Err(e) => result_page(e.0, Some(u), "Not available", &e.1, Some("/ui".into())),
    }
}

/// A form body's fields in order.
type Form = Vec<(String, String)>;

/// Checks session, role and CSRF for a POST; the user and the form.
fn authorised_post(
    gw: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
    min: Role,
) -> Result<(UiUser, Form), Box<Response>> {
    let Some(u) = user(gw, headers) else {
        return Err(Box::new(to_login()));
    };
    let pairs = form(body);
    if !session::csrf_ok(
        &gw.releaser.keys,
        &u.sid,
        field(&pairs, "csrf").unwrap_or(""),
    ) {
        return Err(Box::new(result_page(
            StatusCode::FORBIDDEN,
            Some(u),
            "Refused",
            "The form expired or did not come from this site; reload the page and try again.",
            Some("/ui".into()),
        )));
    }
    if u.role < min {
        return Err(Box::new(result_page(
            StatusCode::FORBIDDEN,
            Some(u),
            "Not allowed",
            "Your role may not do that.",
            Some("/ui".into()),
        )));
    }
    Ok((u, pairs))
}

async fn act(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let (u, form) = match authorised_post(&gw, &headers, &body, Role::Operator) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let who = actor(&u, peer);
    let back = format!("/ui/m/{}", enc(&id));
    // Ticked recipients, when the form names any; otherwise all waiting.
    let chosen: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "rcpt")
        .map(|(_, v)| v.clone())
        .collect();
    let only = (!chosen.is_empty()).then_some(chosen.as_slice());
    let outcome: Result<&str, ApiError> = match action.as_str() {
        "release" | "approve" => release(&gw, &id, only, &who, action == "approve")
            .await
            .map(|r| {
                if r.failed.is_empty() {
                    "released"
                } else {
                    "partial"
                }
            })
            .map_err(ApiError::from),
        "delete" => match gw.store.delete(&id, &who).await {
            Ok(c) => change_result(&id, c, State::Deleted).map(|_| "deleted"),
            Err(e) => Err(e.into()),
        },
        "deny" => match gw.store.db.deny(&id, &who).await {
            Ok(c) => change_result(&id, c, State::Held).map(|_| "denied"),
            Err(e) => Err(e.into()),
        },
        _ => Err(ApiError(StatusCode::NOT_FOUND, "no such action".into())),
    };
    match outcome {
        // Post/redirect/get, so a reload does not post again.
        Ok(done) => harden(Redirect::to(&format!("{back}?done={done}")).into_response()),
        Err(e) => result_page(e.0, Some(u), "Not done", &e.1, Some(back)),
    }
}

async fn bulk(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (u, pairs) = match authorised_post(&gw, &headers, &body, Role::Operator) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let who = actor(&u, peer);
    let ids: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.as_str())
        .take(1000)
        .collect();
    let action = field(&pairs, "action").unwrap_or("");
    let (mut ok, mut failed) = (0, Vec::new());
    for id in &ids {
        let r = match action {
            "release" => release(&gw, id, None, &who, false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            "delete" => match gw.store.delete(id, &who).await {
                Ok(Change::Done { .. }) => Ok(()),
                Ok(Change::NotFound) => Err("no such message".into()),
                Ok(Change::Conflict(s)) => Err(format!("the message is {s}")),
                Err(e) => Err(e.to_string()),
            },
            _ => Err("no such action".into()),
        };
        match r {
            Ok(()) => ok += 1,
            Err(e) => failed.push(format!("{id}: {e}")),
        }
    }
    let text = if failed.is_empty() {
        format!("{action}: {ok} message(s) done.")
    } else {
        format!(
            "{action}: {ok} done, {} not: {}",
            failed.len(),
            failed.join("; ")
        )
    };
    result_page(StatusCode::OK, Some(u), "Done", &text, Some("/ui".into()))
}

// ---- recipients' links ----

#[derive(Template)]
#[template(path = "link.html")]
struct LinkPage {
    user: Option<UiUser>,
    notice: Option<String>,
    recipient: String,
    sender: String,
    subject: String,
    received: String,
    summary: String,
    action: Option<String>,
    csrf: String,
    request_only: bool,
}

#[derive(Template)]
#[template(path = "result.html")]
struct ResultPage {
    user: Option<UiUser>,
    notice: Option<String>,
    heading: String,
    text: String,
    back: Option<String>,
}

fn link_error(e: LinkError) -> Response {
    let status = match e {
        LinkError::Expired => StatusCode::GONE,
        _ => StatusCode::FORBIDDEN,
    };
    result_page(status, None, "Link not valid", &e.to_string(), None)
}

async fn link_page(AxState(gw): AxState<Arc<Gateway>>, Path(token): Path<String>) -> Response {
    let claims = match link::parse_any(&gw.releaser.keys, &token, unix_now()) {
        Ok(c) => c,
        Err(e) => return link_error(e),
    };
    let cfg = gw.live();
    let spent = gw.store.db.link_spent(&claims.nonce).await;
    let d = match gw.store.db.detail(&claims.id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return result_page(
                StatusCode::NOT_FOUND,
                None,
                "Not found",
                "This message is no longer held.",
                None,
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mine = d
        .summary
        .recipients
        .iter()
        .find(|r| r.address.eq_ignore_ascii_case(&claims.recipient));
    let (notice, can) = match (spent, mine.map(|r| r.state)) {
        (Err(e), _) => return ApiError::from(e).into_response(),
        (_, None) => {
            return result_page(
                StatusCode::FORBIDDEN,
                None,
                "Link not valid",
                "This link is not valid.",
                None,
            );
        }
        (Ok(true), _) => (Some("This link has already been used.".to_string()), false),
        (_, Some(RecipientState::Released)) => (
            Some("This message has already been released to you.".into()),
            false,
        ),
        (_, Some(RecipientState::ReleaseRequested)) => (
            Some("Your release request is waiting for an administrator.".into()),
            false,
        ),
        _ if !d.summary.state.is_open() => (
            Some(format!(
                "This message can no longer be released (it was {}).",
                d.summary.state
            )),
            false,
        ),
        _ => (None, true),
    };
    page(&LinkPage {
        user: None,
        notice,
        recipient: claims.recipient.clone(),
        sender: d
            .summary
            .sender
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "<>".into()),
        subject: d
            .summary
            .subject
            .clone()
            .unwrap_or_else(|| "(no subject)".into()),
        received: format_utc(d.summary.received_ms),
        summary: d.summary.summary.clone(),
        action: can.then(|| format!("/release/{token}")),
        csrf: session::csrf_for(&gw.releaser.keys, &format!("link:{}", claims.nonce)),
        request_only: crate::release::dangerous(&cfg.release, &d.findings),
    })
}

async fn link_release(
    AxState(gw): AxState<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let claims = match link::parse_any(&gw.releaser.keys, &token, unix_now()) {
        Ok(c) => c,
        Err(e) => return link_error(e),
    };
    let pairs = form(&body);
    if !session::csrf_ok(
        &gw.releaser.keys,
        &format!("link:{}", claims.nonce),
        field(&pairs, "csrf").unwrap_or(""),
    ) {
        return result_page(
            StatusCode::FORBIDDEN,
            None,
            "Refused",
            "Please open the link again and confirm on its page.",
            None,
        );
    }
    let cfg = gw.live();
    let findings = match gw.store.db.findings(&claims.id).await {
        Ok(f) => f,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let who = Actor {
        name: claims.recipient.clone(),
        via: Via::Link,
        address: Some(peer.ip().to_string()),
    };
    // Spend the link first: of two concurrent posts, one goes on.
    match gw.store.db.spend_link(&claims.nonce, &claims.id).await {
        Ok(true) => {}
        Ok(false) => {
            return result_page(
                StatusCode::CONFLICT,
                None,
                "Already used",
                "This link has already been used.",
                None,
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    if crate::release::dangerous(&cfg.release, &findings) {
        return match gw
            .store
            .db
            .request_release(&claims.id, &claims.recipient, &who)
            .await
        {
            Ok(Change::Done { .. }) => {
                tracing::info!(quarantine_id = %claims.id, recipient = %claims.recipient, "release requested by recipient");
                // Off the request: the recipient's page does not wait for mail.
                let gw2 = Arc::clone(&gw);
                let (id, rcpt) = (claims.id.clone(), claims.recipient.clone());
                tokio::spawn(async move {
                    let cfg = gw2.live();
                    gw2.releaser
                        .notify_request(&cfg.release, &cfg.digest.from, &id, &rcpt)
                        .await;
                });
                result_page(
                    StatusCode::OK,
                    None,
                    "Request sent",
                    "An administrator will review the message. You will receive it if they release it.",
                    None,
                )
            }
            Ok(Change::NotFound) => result_page(
                StatusCode::NOT_FOUND,
                None,
                "Not found",
                "This message is no longer held.",
                None,
            ),
            Ok(Change::Conflict(s)) => result_page(
                StatusCode::CONFLICT,
                None,
                "Not possible",
                &format!("This message cannot be requested now (it is {s})."),
                None,
            ),
            Err(e) => ApiError::from(e).into_response(),
        };
    }
    let only = [claims.recipient.clone()];
    let result = release(&gw, &claims.id, Some(&only), &who, false).await;
    if result.is_err() {
        // Not the recipient's doing: the link stays usable.
        if let Err(e) = gw.store.db.unspend_link(&claims.nonce).await {
            tracing::error!(error = %e, "could not restore a release link after a failed release");
        }
    }
    match result {
        Ok(_) => result_page(
            StatusCode::OK,
            None,
            "Released",
            "The message is on its way to your mailbox.",
            None,
        ),
        Err(ReleaseError::Relay(_)) => result_page(
            StatusCode::BAD_GATEWAY,
            None,
            "Not released",
            "The message could not be delivered just now. Please try again later or contact your administrator.",
            None,
        ),
        Err(ReleaseError::NothingToRelease) | Err(ReleaseError::Conflict(_)) => result_page(
            StatusCode::CONFLICT,
            None,
            "Not possible",
            "This message cannot be released to you now.",
            None,
        ),
        Err(ReleaseError::NotFound) => result_page(
            StatusCode::NOT_FOUND,
            None,
            "Not found",
            "This message is no longer held.",
            None,
        ),
        Err(e @ ReleaseError::Store(_)) => ApiError::from(e).into_response(),
    }
}
