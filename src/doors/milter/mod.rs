//! The Sendmail milter door: Postfix (`smtpd_milters`) and Sendmail
//! (`INPUT_MAIL_FILTER`) talk to Portcullis directly, over TCP or a Unix
//! socket. The conversation is collected into a message (headers rebuilt
//! verbatim, body as sent), inspected at end of message on the pool, and
//! the verdict answered as milter replies:
//!
//! | verdict | replies |
//! | --- | --- |
//! | accept, tag | header changes (`m` deletes forged ones, `h` adds ours, `m` Subject), then `a` |
//! | reject | `y 554 5.7.1 ...` |
//! | tempfail, any error | `y 451 4.7.1 ...` |
//! | discard | `d` |
//! | quarantine | spooled by us, then `d` (`milter.quarantine = "own"`), or headers, `q` and `a` (`"hold"`: the MTA's hold queue as well) |
//!
//! Every command but the macros, abort and quit gets `c` until end of
//! message: we ask for no protocol shortcuts, which keeps the state machine
//! the same for every MTA.

pub mod codec;

use crate::config::MilterQuarantine;
use crate::http::Gateway;
use crate::model::{Action, Door, Modification, Submission};
use codec::{Command, Macros, Reply};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

#[derive(Default)]
struct Message {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    /// Header names as received, in order, for index-based changes.
    headers: Vec<String>,
    subject: Option<String>,
    raw: Vec<u8>,
    in_body: bool,
    oversize: bool,
    /// Out of in-flight memory budget: answered tempfail at end of message.
    busy: bool,
    permit: Option<OwnedSemaphorePermit>,
}

struct Session {
    gw: Arc<Gateway>,
    macros: Macros,
    client_ip: Option<String>,
    helo: Option<String>,
    /// The MTA gives header values with their leading space (and wants them
    /// back that way).
    leadspc: bool,
    msg: Message,
}

impl Session {
    fn value(&self, v: &str) -> String {
        if self.leadspc {
            format!(" {v}")
        } else {
            v.to_string()
        }
    }

    /// Grows the message's share of the in-flight budget to cover `len`.
    fn reserve(&mut self, len: u64) {
        let have = self
            .msg
            .permit
            .as_ref()
            .map_or(0, |p| p.num_permits() as u64)
            << 10;
        if len <= have || self.msg.busy {
            return;
        }
        let want = u32::try_from((len - have).div_ceil(1024).max(64)).unwrap_or(u32::MAX);
        match Arc::clone(&self.gw.inflight).try_acquire_many_owned(want) {
            Ok(more) => match self.msg.permit.as_mut() {
                Some(p) => p.merge(more),
                None => self.msg.permit = Some(more),
            },
            Err(_) => {
                self.msg.busy = true;
                self.msg.raw = Vec::new();
                self.msg.permit = None;
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.msg.oversize || self.msg.busy {
            return;
        }
        let len = self.msg.raw.len() as u64 + bytes.len() as u64;
        if len > self.gw.server.max_body_bytes {
            self.msg.oversize = true;
            self.msg.raw = Vec::new();
            self.msg.permit = None;
            return;
        }
        self.reserve(len);
        if !self.msg.busy {
            self.msg.raw.extend_from_slice(bytes);
        }
    }

    /// The replies to one command; empty for commands that get none.
    async fn handle(&mut self, command: Command) -> Vec<Reply> {
        match command {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                self.leadspc = protocol & codec::SMFIP_HDR_LEADSPC != 0;
                // Only steps the MTA offers to skip may be skipped.
                let skip = protocol
                    & (codec::SMFIP_NOUNKNOWN | codec::SMFIP_NODATA | codec::SMFIP_HDR_LEADSPC);
                vec![Reply::OptNeg {
                    version: version.min(codec::VERSION),
                    actions: actions
                        & (codec::SMFIF_ADDHDRS | codec::SMFIF_CHGHDRS | codec::SMFIF_QUARANTINE),
                    protocol: skip,
                }]
            }
            Command::Macro { macros, .. } => {
                self.macros.set(macros);
                Vec::new()
            }
            Command::Connect { address, .. } => {
                self.client_ip = Some(address).filter(|a| !a.is_empty());
                vec![Reply::Continue]
            }
            Command::Helo(h) => {
                self.helo = Some(h);
                vec![Reply::Continue]
            }
            Command::Mail(args) => {
                // A new transaction on the same connection.
                self.msg = Message {
                    mail_from: args.first().cloned(),
                    ..Message::default()
                };
                vec![Reply::Continue]
            }
            Command::Rcpt(args) => {
                if let Some(r) = args.first() {
                    self.msg.rcpt_to.push(r.clone());
                }
                vec![Reply::Continue]
            }
            Command::Data | Command::Unknown(_) => vec![Reply::Continue],
            Command::Header { name, value } => {
                let mut line = Vec::with_capacity(name.len() + value.len() + 4);
                line.extend_from_slice(name.as_bytes());
                line.push(b':');
                if !self.leadspc {
                    line.push(b' ');
                }
                super::crlf(&value, &mut line);
                line.extend_from_slice(b"\r\n");
                if name.eq_ignore_ascii_case("subject") && self.msg.subject.is_none() {
                    self.msg.subject = Some(String::from_utf8_lossy(&value).trim().to_string());
                }
                self.msg.headers.push(name);
                self.append(&line);
                vec![Reply::Continue]
            }
            Command::EndOfHeaders => {
                self.append(b"\r\n");
                self.msg.in_body = true;
                vec![Reply::Continue]
            }
            Command::Body(chunk) => {
                if !self.msg.in_body {
                    self.append(b"\r\n");
                    self.msg.in_body = true;
                }
                self.append(&chunk);
                vec![Reply::Continue]
            }
            Command::EndOfMessage => {
                let msg = std::mem::take(&mut self.msg);
                let replies = self.end_of_message(msg).await;
                self.msg = Message::default();
                replies
            }
            Command::Abort => {
                self.msg = Message::default();
                Vec::new()
            }
            Command::Quit => Vec::new(),
            // The socket is reused for a new SMTP session: forget this one.
            Command::QuitNewConnection => {
                self.macros = Macros::default();
                self.client_ip = None;
                self.helo = None;
                self.msg = Message::default();
                Vec::new()
            }
        }
    }

    /// The envelope as this session and the MTA's macros give it.
    fn envelope(&self, msg: &Message) -> crate::model::Envelope {
        super::envelope(
            msg.mail_from.clone(),
            msg.rcpt_to.clone(),
            self.client_ip
                .clone()
                .or_else(|| self.macros.get("client_addr").map(str::to_string)),
            self.helo.clone(),
            self.macros.get("i").map(str::to_string),
        )
    }

    async fn end_of_message(&mut self, msg: Message) -> Vec<Reply> {
        let door = Door::Milter;
        let live = self.gw.live();
        if msg.busy {
            let err = super::DoorError::Overloaded;
            self.gw.metrics.refused(door, err.reason());
            return vec![Reply::ReplyCode(err.reply().to_string())];
        }
        let checked = if msg.oversize {
            super::oversize(&self.gw, door, &live, &self.envelope(&msg), 0)
        } else {
            let envelope = self.envelope(&msg);
            let raw = match super::shared(msg.raw).await {
                Ok(r) => r,
                Err(e) => return vec![Reply::ReplyCode(e.reply().to_string())],
            };
            let mut sub = Submission::mail(raw);
            sub.envelope = envelope;
            sub.envelope.auth_user = super::non_empty(self.macros.get("auth_authen"));
            let permit = match msg.permit {
                Some(p) => p,
                None => match Arc::clone(&self.gw.inflight).try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        let err = super::DoorError::Overloaded;
                        self.gw.metrics.refused(door, err.reason());
                        return vec![Reply::ReplyCode(err.reply().to_string())];
                    }
                },
            };
            match super::inspect(&self.gw, door, sub, permit).await {
                Ok(c) => c,
                Err(e) => return vec![Reply::ReplyCode(e.reply().to_string())],
            }
        };
        let v = &checked.report.verdict;
        let mut out = Vec::new();
        let header_changes = |out: &mut Vec<Reply>| {
            for m in &v.modifications {
                match m {
                    Modification::RemoveHeader { name } => {
                        let n = msg
                            .headers
                            .iter()
                            .filter(|h| h.eq_ignore_ascii_case(name))
                            .count() as u32;
                        for index in (1..=n).rev() {
                            out.push(Reply::ChangeHeader {
                                index,
                                name: name.clone(),
                                value: String::new(),
                            });
                        }
                    }
                    Modification::AddHeader { name, value } => out.push(Reply::AddHeader {
                        name: name.clone(),
                        value: self.value(value),
                    }),
                    Modification::PrefixSubject { prefix } => match &msg.subject {
                        Some(s) => out.push(Reply::ChangeHeader {
                            index: 1,
                            name: "Subject".into(),
                            value: self.value(&format!("{prefix} {s}")),
                        }),
                        None => out.push(Reply::AddHeader {
                            name: "Subject".into(),
                            value: self.value(prefix),
                        }),
                    },
                }
            }
        };
        match v.action {
            Action::Accept | Action::Tag => {
                header_changes(&mut out);
                out.push(Reply::Accept);
            }
            Action::Reject | Action::TempFail => {
                let reply = v
                    .smtp_reply
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "451 4.7.1 Message could not be inspected".into());
                out.push(Reply::ReplyCode(reply));
            }
            Action::Discard => out.push(Reply::Discard),
            Action::Quarantine => match live.milter.quarantine {
                MilterQuarantine::Own => out.push(Reply::Discard),
                MilterQuarantine::Hold => {
                    header_changes(&mut out);
                    out.push(Reply::Quarantine(format!(
                        "Portcullis: {}",
                        v.summary.replace(['\r', '\n'], " ")
                    )));
                    out.push(Reply::Accept);
                }
            },
        }
        out
    }
}

/// One MTA connection: commands in, replies out, until quit or an error.
/// A malformed packet ends the connection (the MTA applies its default
/// action, tempfail in our recipes); it never affects other connections.
pub async fn session<S>(
    gw: Arc<Gateway>,
    mut stream: S,
    peer: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut s = Session {
        gw,
        macros: Macros::default(),
        client_ip: None,
        helo: None,
        leadspc: false,
        msg: Message::default(),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    // Between packets an MTA may keep the connection quiet for long (it
    // holds milter connections open across SMTP sessions); a packet once
    // begun must arrive whole within the body timeout, or a client
    // trickling one byte at a time would hold a connection forever.
    let idle =
        s.gw.server
            .body_timeout
            .max(std::time::Duration::from_secs(300));
    let mut packet_started: Option<tokio::time::Instant> = None;
    loop {
        // Whole packets first.
        let parsed = match codec::split_packet(&buf) {
            Ok(Some((cmd, data, used))) => Some((codec::parse(cmd, data), used)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "milter: closing a broken conversation");
                return;
            }
        };
        if let Some((command, used)) = parsed {
            buf.drain(..used);
            packet_started = None;
            let command = match command {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "milter: closing a broken conversation");
                    return;
                }
            };
            let quit = matches!(command, Command::Quit);
            let replies = s.handle(command).await;
            let mut out = Vec::new();
            for r in &replies {
                out.extend_from_slice(&codec::encode(r));
            }
            if !out.is_empty() && stream.write_all(&out).await.is_err() {
                return;
            }
            if quit {
                return;
            }
            continue;
        }
        let mut chunk = [0u8; 64 * 1024];
        let between_messages = s.msg.mail_from.is_none() && s.msg.raw.is_empty();
        let wait = match (buf.is_empty(), packet_started) {
            (true, _) => idle,
            (false, Some(t)) => (t + s.gw.server.body_timeout)
                .saturating_duration_since(tokio::time::Instant::now()),
            (false, None) => {
                packet_started = Some(tokio::time::Instant::now());
                s.gw.server.body_timeout
            }
        };
        let read = tokio::select! {
            r = tokio::time::timeout(wait, stream.read(&mut chunk)) => r,
            // Stop between messages only: a message in progress finishes.
            _ = shutdown.changed(), if between_messages => return,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub use crate::config::MilterListen as Listen;

pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Accepts MTA connections until shutdown, then lets open sessions finish
/// their current message (up to the drain timeout).
pub async fn serve(
    gw: Arc<Gateway>,
    listener: Listener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut sessions = tokio::task::JoinSet::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(gw.server.max_connections));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&connections).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "milter accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let gw2 = Arc::clone(&gw);
        let stop = shutdown.clone();
        sessions.spawn(async move {
            match stream {
                Stream::Tcp(s, addr) => {
                    let cfg = gw2.live();
                    if !cfg.auth.hook_networks.iter().any(|n| n.contains(addr.ip())) {
                        tracing::warn!(peer = %addr, "milter connection from outside auth.hook_networks refused");
                        gw2.metrics.refused(Door::Milter, "unauthenticated");
                        return;
                    }
                    let _ = s.set_nodelay(true);
                    session(gw2, s, peer, stop).await;
                }
                Stream::Unix(s) => session(gw2, s, peer, stop).await,
            }
            drop(permit);
        });
        // Reap finished sessions so the set does not grow.
        while sessions.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(gw.server.drain_timeout, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
}

enum Stream {
    Tcp(tokio::net::TcpStream, std::net::SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<(Stream, String)> {
    match l {
        Listener::Tcp(l) => {
            let (s, a) = l.accept().await?;
            Ok((Stream::Tcp(s, a), a.to_string()))
        }
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((Stream::Unix(s), "unix".into()))
        }
    }
}

pub async fn bind(listen: &Listen) -> std::io::Result<Listener> {
    match listen {
        Listen::Tcp(a) => Ok(Listener::Tcp(tokio::net::TcpListener::bind(a).await?)),
        Listen::Unix(path) => {
            // A socket left by an earlier run would make bind fail.
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                let _ = std::fs::remove_file(path);
            }
            Ok(Listener::Unix(tokio::net::UnixListener::bind(path)?))
        }
    }
}

pub fn local_addr(l: &Listener, configured: &Listen) -> Listen {
    match l {
        Listener::Tcp(t) => t.local_addr().map_or(configured.clone(), Listen::Tcp),
        Listener::Unix(_) => configured.clone(),
    }
}
