//! rspamd's older text protocol, `RSPAMC/1.3`, on the rspamd door's port:
//! what Exim's `spamd_address = … variant=rspamd` speaks.
//!
//! ```text
//! CHECK RSPAMC/1.3\r\n                 RSPAMD/1.3 0 EX_OK\r\n
//! Content-length: 334\r\n              Metric: default; True; 10.00 / 15.00 / 15.00\r\n
//! Queue-Id: …  From: <…>  Rcpt: <…>    Action: quarantine\r\n
//! Helo: …  IP: …  User: …\r\n          Symbol: EICAR(10.00); message/eicar.com\r\n
//! \r\n                                 …, then the connection closes
//! (message, mbox-style "From " line first)
//! ```
//!
//! A connection is told apart from HTTP by its first line
//! (`WORD RSPAMC/…`; [`sniff`]). The request is then handed to the same
//! router as an HTTP `/checkv2` request, so authentication, body limits,
//! the in-flight budget, oversize policy, metrics and quarantine are the
//! rspamd door's own; only the framing differs. Held and discarded mail
//! is answered with the actions `quarantine` and `discard`, which rspamd
//! does not have: this protocol's only client here is Exim's ACL, which
//! acts on any string (deploy/exim), and `reject` would bounce a message
//! the quarantine holds.

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tower::ServiceExt;

/// The request line and headers of one request, at most.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The JSON reply we translate (symbols for a huge report included).
const MAX_REPLY_BYTES: usize = 4 << 20;
const CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RspamcError {
    #[error("request head not received within {0:?}")]
    Timeout(Duration),
    #[error("request head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unsupported command {0:?} (CHECK, SYMBOLS, REPORT, REPORT_IFSPAM, PROCESS)")]
    Command(String),
    #[error("connection: {0}")]
    Io(String),
}

/// What the first line of a connection says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Rspamc,
    /// HTTP, or too little to tell: hyper decides (and times out) as ever.
    Http,
}

/// Classifies a connection by its first bytes, without consuming them.
/// HTTP request lines have a path (`/…`, `*`, or `http…`) after the
/// method; ours have `RSPAMC/`. Waits at most `timeout` for enough bytes.
pub async fn sniff(stream: &TcpStream, timeout: Duration) -> Sniffed {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 64];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return Sniffed::Http,
        };
        if n == 0 {
            return Sniffed::Http;
        }
        match classify(&buf[..n]) {
            Some(s) => return s,
            None if n == buf.len() => return Sniffed::Http,
            // A client sending its first line in pieces: peek returns
            // what is there at once, so wait a little for more.
            None => {
                if tokio::time::Instant::now() >= deadline {
                    return Sniffed::Http;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// `None`: not enough bytes yet.
pub fn classify(head: &[u8]) -> Option<Sniffed> {
    let word = head
        .iter()
        .take_while(|b| b.is_ascii_alphabetic() || **b == b'_')
        .count();
    if word == head.len() {
        return (word > 16).then_some(Sniffed::Http);
    }
    if word == 0 || head[word] != b' ' {
        return Some(Sniffed::Http);
    }
    let rest = &head[word + 1..];
    let tag = b"RSPAMC/";
    let n = rest.len().min(tag.len());
    if !rest[..n].eq_ignore_ascii_case(&tag[..n]) {
        return Some(Sniffed::Http);
    }
    (n == tag.len()).then_some(Sniffed::Rspamc)
}

/// A parsed request head.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub command: String,
    pub content_length: u64,
    /// Header lines other than Content-length, in order.
    pub headers: Vec<(String, String)>,
}

pub fn parse_head(text: &str) -> Result<Head, RspamcError> {
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next().unwrap_or_default();
    let (command, version) = first
        .split_once(' ')
        .ok_or_else(|| RspamcError::Malformed(format!("request line {first:?}")))?;
    if !version.to_ascii_uppercase().starts_with("RSPAMC/") {
        return Err(RspamcError::Malformed(format!("request line {first:?}")));
    }
    let command = command.to_ascii_uppercase();
    if !matches!(
        command.as_str(),
        "CHECK" | "SYMBOLS" | "REPORT" | "REPORT_IFSPAM" | "PROCESS"
    ) {
        return Err(RspamcError::Command(command));
    }
    let mut content_length = None;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| RspamcError::Malformed(format!("header line {line:?}")))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RspamcError::Malformed(format!("header name {name:?}")));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| RspamcError::Malformed(format!("Content-length {value:?}")))?;
            content_length = Some(n);
        } else {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    Ok(Head {
        command,
        content_length: content_length
            .ok_or_else(|| RspamcError::Malformed("no Content-length".into()))?,
        headers,
    })
}

/// Reads the head: lines up to the first empty one.
async fn read_head(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    timeout: Duration,
) -> Result<String, RspamcError> {
    let mut head = Vec::new();
    let read = async {
        loop {
            let start = head.len();
            let n = (&mut *reader)
                .take((MAX_HEAD_BYTES + 1 - head.len()) as u64)
                .read_until(b'\n', &mut head)
                .await
                .map_err(|e| RspamcError::Io(e.to_string()))?;
            if head.len() > MAX_HEAD_BYTES {
                return Err(RspamcError::HeadTooLarge);
            }
            if n == 0 {
                return Err(RspamcError::Malformed(
                    "connection closed in the head".into(),
                ));
            }
            let line = &head[start..];
            if line == b"\n" || line == b"\r\n" {
                return Ok(());
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| RspamcError::Timeout(timeout))??;
    String::from_utf8(head).map_err(|_| RspamcError::Malformed("head is not UTF-8".into()))
}

/// Serves one request on a connection [`sniff`] found to be ours, then
/// closes it (clients read the reply to end of stream).
pub async fn serve(stream: TcpStream, peer: SocketAddr, router: Router, header_timeout: Duration) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(CHUNK, read);
    let reply = match read_head(&mut reader, header_timeout)
        .await
        .and_then(|h| parse_head(&h))
    {
        Ok(head) => check(head, reader, peer, router).await,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "RSPAMC request refused");
            error_reply(&e.to_string())
        }
    };
    let _ = write.write_all(reply.as_bytes()).await;
    let _ = write.shutdown().await;
}

async fn check(
    head: Head,
    mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    peer: SocketAddr,
    router: Router,
) -> String {
    let mut req = axum::http::Request::builder()
        .method("POST")
        .uri("/checkv2")
        .header("content-length", head.content_length);
    for (name, value) in &head.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    // The body streams from the socket into the door's own body reader,
    // which applies its limits as for HTTP. The mbox "From " line Exim
    // puts first is not part of the message and is dropped.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let length = head.content_length;
    let pump = tokio::spawn(async move {
        let mut left = length;
        let mut first = true;
        while left > 0 {
            let mut chunk = vec![0u8; CHUNK.min(left as usize)];
            let n = match reader.read(&mut chunk).await {
                Ok(0) => {
                    let _ = tx.send(Err(std::io::ErrorKind::UnexpectedEof.into())).await;
                    return;
                }
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            chunk.truncate(n);
            left -= n as u64;
            let mut data = Bytes::from(chunk);
            if std::mem::take(&mut first)
                && data.starts_with(b"From ")
                && let Some(eol) = memchr::memchr(b'\n', &data)
            {
                data = data.slice(eol + 1..);
            }
            if tx.send(Ok(data)).await.is_err() {
                return;
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut req = match req.body(body) {
        Ok(r) => r,
        Err(e) => return error_reply(&format!("header: {e}")),
    };
    req.extensions_mut().insert(ConnectInfo(peer));
    let response = match router.oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    pump.abort();
    let status = response.status();
    let bytes = match http_body_util::Limited::new(response.into_body(), MAX_REPLY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_reply(&format!("reply: {e}")),
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v.get("action").is_some() => text_reply(&v, &head.command),
        _ => error_reply(&format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )),
    }
}

/// The JSON reply of `/checkv2` in the text protocol's shape.
fn text_reply(v: &Value, command: &str) -> String {
    let ours = v["portcullis"]["action"].as_str().unwrap_or_default();
    let action = match ours {
        "quarantine" | "discard" => ours,
        _ => v["action"].as_str().unwrap_or("soft reject"),
    };
    let score = v["score"].as_f64().unwrap_or(0.0);
    let required = v["required_score"].as_f64().unwrap_or(0.0);
    let reject = v["thresholds"]["reject"].as_f64().unwrap_or(required);
    let is_spam = if action == "no action" {
        "False"
    } else {
        "True"
    };
    let mut out = format!(
        "RSPAMD/1.3 0 EX_OK\r\nMetric: default; {is_spam}; {score:.2} / {required:.2} / {reject:.2}\r\nAction: {action}\r\n"
    );
    if command != "CHECK"
        && let Some(symbols) = v["symbols"].as_object()
    {
        for (name, s) in symbols {
            let options: Vec<&str> = s["options"]
                .as_array()
                .map(|o| o.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.push_str(&format!(
                "Symbol: {}({:.2}); {}\r\n",
                clean(name),
                s["score"].as_f64().unwrap_or(0.0),
                clean(&options.join(", "))
            ));
        }
    }
    if let Some(summary) = v["portcullis"]["summary"].as_str() {
        out.push_str(&format!("Summary: {}\r\n", clean(summary)));
    }
    if let Some(id) = v["portcullis"]["quarantine_id"].as_str() {
        out.push_str(&format!("Quarantine-Id: {}\r\n", clean(id)));
    }
    if let Some(m) = v["messages"]["smtp_message"].as_str() {
        out.push_str(&format!("Message: {}\r\n", clean(m)));
    }
    if let Some(id) = v["message-id"].as_str() {
        out.push_str(&format!("Message-ID: {}\r\n", clean(id)));
    }
    out
}

/// Names and paths come from the message: no line breaks (a forged
/// "Action:" line) and nothing unprintable reach the client.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect()
}

/// Not the EX_OK shape, so Exim defers (and the recipe answers 451).
fn error_reply(reason: &str) -> String {
    format!("RSPAMD/1.3 1 EX_ERROR\r\nError: {}\r\n", clean(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_are_told_apart() {
        assert_eq!(classify(b"CHECK RSPAMC/1.3\r\n"), Some(Sniffed::Rspamc));
        assert_eq!(classify(b"symbols rspamc/1.2\r\n"), Some(Sniffed::Rspamc));
        assert_eq!(classify(b"POST /checkv2 HTTP/1.1\r\n"), Some(Sniffed::Http));
        assert_eq!(classify(b"GET / HTTP/1.0"), Some(Sniffed::Http));
        // WebDAV's REPORT is a real HTTP method: the path decides.
        assert_eq!(classify(b"REPORT /x HTTP/1.1"), Some(Sniffed::Http));
        assert_eq!(classify(b"\x16\x03\x01"), Some(Sniffed::Http), "TLS");
        assert_eq!(classify(b"CHE"), None);
        assert_eq!(classify(b"CHECK RSP"), None);
        assert_eq!(classify(b"CHECK RSPX"), Some(Sniffed::Http));
        assert_eq!(classify(&[b'A'; 40]), Some(Sniffed::Http));
    }

    #[test]
    fn heads_parse_and_bad_ones_are_refused() {
        let h = parse_head(
            "CHECK RSPAMC/1.3\r\nContent-length: 334\r\nQueue-Id: 1x\r\nFrom: <a@x>\r\n\
             Rcpt: <b@y>\r\nRcpt: <c@y>\r\nIP: 192.0.2.7\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.command, "CHECK");
        assert_eq!(h.content_length, 334);
        assert_eq!(h.headers.len(), 5);
        assert_eq!(h.headers[2], ("Rcpt".into(), "<b@y>".into()));
        for bad in [
            "CHECK HTTP/1.1\r\nContent-length: 1\r\n\r\n",
            "CHECK RSPAMC/1.3\r\n\r\n",
            "CHECK RSPAMC/1.3\r\nContent-length: -1\r\n\r\n",
            "CHECK RSPAMC/1.3\r\nContent-length 5\r\n\r\n",
            "CHECK RSPAMC/1.3\r\nBad Name: x\r\nContent-length: 5\r\n\r\n",
            "PING RSPAMC/1.3\r\nContent-length: 0\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replies_have_the_shape_exim_reads() {
        let v = serde_json::json!({
            "action": "reject", "score": 15.0, "required_score": 15.0,
            "thresholds": {"reject": 15.0},
            "symbols": {"EICAR": {"score": 15.0, "options": ["message/a\r\nAction: no action"]}},
            "messages": {"smtp_message": "Message held for review"},
            "portcullis": {"action": "quarantine", "summary": "EICAR in message/a", "quarantine_id": "q1"},
        });
        let r = text_reply(&v, "SYMBOLS");
        assert!(
            r.starts_with(
                "RSPAMD/1.3 0 EX_OK\r\nMetric: default; True; 15.00 / 15.00 / 15.00\r\nAction: quarantine\r\n"
            ),
            "{r}"
        );
        assert!(r.contains("Symbol: EICAR(15.00); message/a  Action: no action\r\n"));
        assert_eq!(r.matches("\r\nAction: ").count(), 1, "no forged lines");
        assert!(r.contains("Quarantine-Id: q1\r\n"));
        let clean =
            serde_json::json!({"action": "no action", "score": 0.0, "required_score": 15.0});
        let r = text_reply(&clean, "CHECK");
        assert!(
            r.contains("Metric: default; False; 0.00 / 15.00 / 15.00\r\nAction: no action\r\n")
        );
        assert!(error_reply("x").starts_with("RSPAMD/1.3 1 EX_ERROR"));
    }
}
