//! Web UI sessions and CSRF tokens. Sessions are signed cookies (no
//! server-side table): `v1/name/kind/expiry/sid` plus an HMAC. The role is
//! looked up in the live config on every request, so a user removed or
//! demoted by a reload loses access at once. Every form carries a CSRF
//! token bound to the session id; the cookie is `SameSite=Strict` and
//! `HttpOnly` as a second line.

use crate::config::{AuthConfig, Role};
use crate::release::keys::{self, Keys};
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

pub const COOKIE: &str = "portcullis_session";
/// Before login: ties the login form's CSRF token to this browser.
pub const PRE_COOKIE: &str = "portcullis_login";
pub const LIFETIME_SECS: u64 = 8 * 3600;

/// Who is logged in.
#[derive(Debug, Clone)]
pub struct UiUser {
    /// `user:alice` or `token:ops`, as the audit trail records it.
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub sid: String,
}

/// A new session cookie value for `principal` (`user:NAME`/`token:NAME`).
pub fn issue(keys: &Keys, principal: &str, now: u64) -> String {
    let mut sid = [0u8; 16];
    let _ = getrandom::fill(&mut sid);
    let payload = format!(
        "v1\n{principal}\n{}\n{}",
        now + LIFETIME_SECS,
        hex::encode(sid)
    );
    let mac = keys::mac(&keys.session, &[payload.as_bytes()]);
    format!("{}.{}", B64.encode(payload), B64.encode(mac))
}

/// The logged-in user behind the request's session cookie, if valid.
pub fn current(keys: &Keys, auth: &AuthConfig, headers: &HeaderMap, now: u64) -> Option<UiUser> {
    let value = cookie(headers, COOKIE)?;
    let (p, m) = value.split_once('.')?;
    let payload = B64.decode(p).ok()?;
    let mac = B64.decode(m).ok()?;
    if !keys
        .generations()
        .any(|k| keys::verify(&k.session, &[&payload], &mac))
    {
        return None;
    }
    let text = String::from_utf8(payload).ok()?;
    let fields: Vec<&str> = text.split('\n').collect();
    let [version, principal, expires, sid] = fields.as_slice() else {
        return None;
    };
    if *version != "v1" || now >= expires.parse::<u64>().ok()? {
        return None;
    }
    let role = principal_role(auth, principal)?;
    Some(UiUser {
        name: (*principal).to_string(),
        role,
        csrf: csrf_for(keys, sid),
        sid: (*sid).to_string(),
    })
}

/// The role a principal has under the current config.
fn principal_role(auth: &AuthConfig, principal: &str) -> Option<Role> {
    if let Some(name) = principal.strip_prefix("user:") {
        return auth.users.iter().find(|u| u.name == name).map(|u| u.role);
    }
    if let Some(name) = principal.strip_prefix("token:") {
        return auth.tokens.iter().find(|t| t.name == name).map(|t| t.role);
    }
    None
}

pub fn csrf_for(keys: &Keys, binding: &str) -> String {
    hex::encode(keys::mac(&keys.csrf, &[binding.as_bytes()]))
}

pub fn csrf_ok(keys: &Keys, binding: &str, presented: &str) -> bool {
    let Ok(bytes) = hex::decode(presented.trim()) else {
        return false;
    };
    keys::verify(&keys.csrf, &[binding.as_bytes()], &bytes)
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for a session (or its removal with an empty value).
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: u64) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UiUser as ConfigUser;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, cookie.parse().unwrap());
        h
    }

    #[test]
    fn sessions_verify_expire_follow_the_config_and_bind_csrf() {
        let keys = Keys::from_secret(&[1u8; 32]);
        let mut auth = AuthConfig::default();
        auth.users.push(ConfigUser {
            name: "alice".into(),
            role: Role::Operator,
            password_hash: String::new(),
        });
        let v = issue(&keys, "user:alice", 1000);
        let u = current(&keys, &auth, &headers(&format!("a=b; {COOKIE}={v}")), 1001).unwrap();
        assert_eq!((u.name.as_str(), u.role), ("user:alice", Role::Operator));
        assert!(csrf_ok(&keys, &u.sid, &u.csrf));
        assert!(!csrf_ok(&keys, "another session", &u.csrf));
        assert!(
            current(
                &keys,
                &auth,
                &headers(&format!("{COOKIE}={v}")),
                1000 + LIFETIME_SECS
            )
            .is_none()
        );
        let other = Keys::from_secret(&[2u8; 32]);
        assert!(current(&other, &auth, &headers(&format!("{COOKIE}={v}")), 1001).is_none());
        // Demoted or removed by a reload: the session follows.
        auth.users[0].role = Role::Auditor;
        assert_eq!(
            current(&keys, &auth, &headers(&format!("{COOKIE}={v}")), 1001)
                .unwrap()
                .role,
            Role::Auditor
        );
        auth.users.clear();
        assert!(current(&keys, &auth, &headers(&format!("{COOKIE}={v}")), 1001).is_none());
    }
}
