//! Who may call what.
//!
//! Hook doors are for the MTA: open to `auth.hook_networks` (default
//! loopback) or to a caller that presents the hook token. Management
//! endpoints want a bearer token whose role is high enough. Tokens are
//! compared by their sha256, in constant time; the config holds only hashes.
//!
//! A token can arrive the way each client knows how to send one:
//! `Authorization: Bearer T` (our API, Stalwart 0.16), `Authorization: Basic`
//! with T as the password (Stalwart 0.15 and earlier, Haraka), or rspamd's
//! `Password: T` header (`rspamc -P`).

use crate::config::{AuthConfig, Role};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or ones we do not know.
    Unauthenticated,
    /// A known token whose role is too weak.
    Forbidden,
}

impl Denied {
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::Unauthenticated => "unauthenticated",
            Denied::Forbidden => "forbidden",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Denied::Unauthenticated => StatusCode::UNAUTHORIZED,
            Denied::Forbidden => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let text = match self {
            Denied::Unauthenticated => "authentication required\n",
            Denied::Forbidden => "this token's role may not do that\n",
        };
        let mut resp = (self.status(), text).into_response();
        if self == Denied::Unauthenticated {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
        }
        resp
    }
}

/// The secret a request presents, if any.
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some((scheme, rest)) = v.split_once(' ') {
            let rest = rest.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(rest.to_string());
            }
            if scheme.eq_ignore_ascii_case("basic") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                return text.split_once(':').map(|(_, pw)| pw.to_string());
            }
        }
    }
    headers
        .get("password")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role of a presented API token.
pub fn token_role(auth: &AuthConfig, headers: &HeaderMap) -> Option<Role> {
    let presented = digest(&presented_token(headers)?);
    // Check every entry so timing does not tell which one matched.
    auth.tokens
        .iter()
        .filter(|t| same(&t.sha256, &presented))
        .map(|t| t.role)
        .fold(None, |acc, r| acc.max(Some(r)))
}

/// The name and role of the API token `token`, if it is one.
pub fn token_identity(auth: &AuthConfig, token: &str) -> Option<(String, Role)> {
    let presented = digest(token);
    let mut found = None;
    for t in &auth.tokens {
        if same(&t.sha256, &presented) && found.is_none() {
            found = Some((t.name.clone(), t.role));
        }
    }
    found
}

/// An API caller with at least `min`: the token's name (for the audit
/// trail) and role.
pub fn caller(auth: &AuthConfig, headers: &HeaderMap, min: Role) -> Result<(String, Role), Denied> {
    match presented_token(headers).and_then(|t| token_identity(auth, &t)) {
        Some((name, r)) if r >= min => Ok((format!("token:{name}"), r)),
        Some(_) => Err(Denied::Forbidden),
        None => Err(Denied::Unauthenticated),
    }
}

/// Checks a UI user's password (argon2; slow on purpose: call it on the
/// blocking pool). Unknown users cost the same as wrong passwords.
pub fn user_login(auth: &AuthConfig, name: &str, password: &str) -> Option<Role> {
    use argon2::{Argon2, PasswordHash, PasswordVerifier};
    // A fixed hash to verify against when the user does not exist, so the
    // answer takes as long either way.
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0ZdsJ6pcbRu8i/FDmBI7k6IyWFVWwRrWEFgxMVTD3xE";
    let user = auth.users.iter().find(|u| u.name == name);
    let hash = user.map_or(DUMMY, |u| u.password_hash.as_str());
    let parsed = PasswordHash::new(hash).ok()?;
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    match user {
        Some(u) if ok => Some(u.role),
        _ => None,
    }
}

/// A PHC string for `password` (for `portcullis user hash`).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::{Argon2, PasswordHasher};
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Hook doors: the MTA's networks, the hook token, or an admin token.
pub fn hook(auth: &AuthConfig, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Denied> {
    if auth.hook_networks.iter().any(|n| n.contains(peer.ip())) {
        return Ok(());
    }
    if let (Some(expected), Some(token)) = (&auth.hook_token_sha256, presented_token(headers))
        && same(expected, &digest(&token))
    {
        return Ok(());
    }
    match token_role(auth, headers) {
        Some(Role::Admin) => Ok(()),
        Some(_) => Err(Denied::Forbidden),
        None => Err(Denied::Unauthenticated),
    }
}

/// Management endpoints: a token with at least `min`.
pub fn role(auth: &AuthConfig, headers: &HeaderMap, min: Role) -> Result<Role, Denied> {
    match token_role(auth, headers) {
        Some(r) if r >= min => Ok(r),
        Some(_) => Err(Denied::Forbidden),
        None => Err(Denied::Unauthenticated),
    }
}

/// Endpoints both the MTA side and people use (file scans, metrics).
pub fn hook_or_role(
    auth: &AuthConfig,
    peer: SocketAddr,
    headers: &HeaderMap,
    min: Role,
) -> Result<(), Denied> {
    match hook(auth, peer, headers) {
        Ok(()) => Ok(()),
        Err(_) => role(auth, headers, min).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiToken, Cidr};

    fn auth() -> AuthConfig {
        AuthConfig {
            hook_networks: vec!["10.0.0.0/8".parse::<Cidr>().unwrap()],
            hook_token_sha256: Some(digest("hook-secret")),
            tokens: vec![
                ApiToken {
                    name: "ops".into(),
                    role: Role::Operator,
                    sha256: digest("op-secret"),
                },
                ApiToken {
                    name: "root".into(),
                    role: Role::Admin,
                    sha256: digest("admin-secret"),
                },
            ],
            users: vec![],
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hook_doors_take_networks_or_the_hook_token_in_any_client_form() {
        let a = auth();
        let inside: SocketAddr = "10.1.2.3:999".parse().unwrap();
        let outside: SocketAddr = "192.0.2.1:999".parse().unwrap();
        assert!(hook(&a, inside, &HeaderMap::new()).is_ok());
        assert_eq!(
            hook(&a, outside, &HeaderMap::new()),
            Err(Denied::Unauthenticated)
        );
        assert!(hook(&a, outside, &headers(&[("Password", "hook-secret")])).is_ok());
        assert!(
            hook(
                &a,
                outside,
                &headers(&[("authorization", "Bearer hook-secret")])
            )
            .is_ok()
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("stalwart:hook-secret");
        assert!(
            hook(
                &a,
                outside,
                &headers(&[("Authorization", &format!("Basic {basic}"))])
            )
            .is_ok()
        );
        assert!(hook(&a, outside, &headers(&[("Password", "wrong")])).is_err());
        assert_eq!(
            hook(
                &a,
                outside,
                &headers(&[("Authorization", "Bearer op-secret")])
            ),
            Err(Denied::Forbidden)
        );
        assert!(
            hook(
                &a,
                outside,
                &headers(&[("Authorization", "Bearer admin-secret")])
            )
            .is_ok()
        );
    }

    #[test]
    fn roles_are_ordered() {
        let a = auth();
        let op = headers(&[("Authorization", "Bearer op-secret")]);
        assert_eq!(role(&a, &op, Role::Analyst), Ok(Role::Operator));
        assert_eq!(role(&a, &op, Role::Admin), Err(Denied::Forbidden));
        assert_eq!(
            role(&a, &HeaderMap::new(), Role::Auditor),
            Err(Denied::Unauthenticated)
        );
    }
}
