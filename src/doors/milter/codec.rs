//! The Sendmail milter wire format, version 6 (libmilter's mfdef.h,
//! Postfix's MILTER_README): packets of a 4-byte big-endian length (the
//! command byte included), a command byte, and command data. Pure parsing
//! and encoding, no I/O: fuzzed and unit tested on its own.

use std::collections::HashMap;

/// The largest packet we accept. Body chunks are at most 64 KiB; a header
/// line can be longer, and a macro list longer still, but not this long.
pub const MAX_PACKET: usize = 1 << 20;

pub const VERSION: u32 = 6;

// Actions a filter may ask for (SMFIF_*).
pub const SMFIF_ADDHDRS: u32 = 0x01;
pub const SMFIF_CHGHDRS: u32 = 0x10;
pub const SMFIF_QUARANTINE: u32 = 0x20;

// Protocol steps a filter may skip (SMFIP_*).
pub const SMFIP_NOUNKNOWN: u32 = 0x100;
pub const SMFIP_NODATA: u32 = 0x200;
/// Header values keep their leading space, so we rebuild them verbatim.
pub const SMFIP_HDR_LEADSPC: u32 = 0x10_0000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    #[error("milter packet of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("empty milter packet")]
    Empty,
    #[error("truncated {0} command")]
    Truncated(&'static str),
    #[error("unknown milter command {0:?}")]
    Unknown(u8),
}

/// What the MTA sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// Macros for the command `for_command`.
    Macro {
        for_command: u8,
        macros: Vec<(String, String)>,
    },
    Connect {
        hostname: String,
        /// `4`, `6`, `L` (unix) or `U` (unknown).
        family: u8,
        port: u16,
        address: String,
    },
    Helo(String),
    /// MAIL FROM: the address, then ESMTP arguments.
    Mail(Vec<String>),
    Rcpt(Vec<String>),
    Data,
    Header {
        name: String,
        value: Vec<u8>,
    },
    EndOfHeaders,
    Body(Vec<u8>),
    EndOfMessage,
    /// The current message is abandoned; the connection goes on.
    Abort,
    Quit,
    /// Quit this connection's session but keep the socket for a new one.
    QuitNewConnection,
    Unknown(Vec<u8>),
}

/// What we answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    Continue,
    Accept,
    Discard,
    TempFail,
    /// `y`: an SMTP reply, e.g. `554 5.7.1 text`.
    ReplyCode(String),
    AddHeader {
        name: String,
        value: String,
    },
    /// Replaces the `index`th (1-based) header called `name`; an empty
    /// value deletes it.
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
    Quarantine(String),
}

fn cstrings(data: &[u8]) -> Vec<String> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn u32_at(data: &[u8], at: usize, what: &'static str) -> Result<u32, CodecError> {
    data.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(CodecError::Truncated(what))
}

/// One packet split off a stream: command byte, data, bytes used.
pub type Packet<'a> = (u8, &'a [u8], usize);

/// Splits one packet off the front of `buf`: `Ok(None)` when more bytes
/// are needed; an error when the stream cannot be a milter conversation.
pub fn split_packet(buf: &[u8]) -> Result<Option<Packet<'_>>, CodecError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len == 0 {
        return Err(CodecError::Empty);
    }
    if len > MAX_PACKET {
        return Err(CodecError::TooLarge(len));
    }
    let Some(packet) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    Ok(Some((packet[0], &packet[1..], 4 + len)))
}

pub fn parse(command: u8, data: &[u8]) -> Result<Command, CodecError> {
    Ok(match command {
        b'O' => Command::OptNeg {
            version: u32_at(data, 0, "option negotiation")?,
            actions: u32_at(data, 4, "option negotiation")?,
            protocol: u32_at(data, 8, "option negotiation")?,
        },
        b'D' => {
            let (&for_command, rest) = data.split_first().ok_or(CodecError::Truncated("macro"))?;
            let strings = cstrings(rest);
            let macros = strings
                .chunks(2)
                .map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default()))
                .collect();
            Command::Macro {
                for_command,
                macros,
            }
        }
        b'C' => {
            let nul = data
                .iter()
                .position(|&b| b == 0)
                .ok_or(CodecError::Truncated("connect"))?;
            let hostname = String::from_utf8_lossy(&data[..nul]).into_owned();
            let rest = &data[nul + 1..];
            let (&family, rest) = rest.split_first().unwrap_or((&b'U', &[]));
            let (port, address) = if family == b'U' || rest.len() < 2 {
                (0, String::new())
            } else {
                let port = u16::from_be_bytes([rest[0], rest[1]]);
                (
                    port,
                    cstrings(&rest[2..]).into_iter().next().unwrap_or_default(),
                )
            };
            Command::Connect {
                hostname,
                family,
                port,
                address,
            }
        }
        b'H' => Command::Helo(cstrings(data).into_iter().next().unwrap_or_default()),
        b'M' => Command::Mail(cstrings(data)),
        b'R' => Command::Rcpt(cstrings(data)),
        b'T' => Command::Data,
        b'L' => {
            let nul = data
                .iter()
                .position(|&b| b == 0)
                .ok_or(CodecError::Truncated("header"))?;
            let value = &data[nul + 1..];
            Command::Header {
                name: String::from_utf8_lossy(&data[..nul]).into_owned(),
                value: value.strip_suffix(&[0]).unwrap_or(value).to_vec(),
            }
        }
        b'N' => Command::EndOfHeaders,
        b'B' => Command::Body(data.to_vec()),
        b'E' => Command::EndOfMessage,
        b'A' => Command::Abort,
        b'Q' => Command::Quit,
        b'K' => Command::QuitNewConnection,
        b'U' => Command::Unknown(data.to_vec()),
        other => return Err(CodecError::Unknown(other)),
    })
}

fn push_cstr(out: &mut Vec<u8>, s: &str) {
    // A NUL inside would end the string early on the MTA's side.
    out.extend(s.bytes().filter(|&b| b != 0));
    out.push(0);
}

pub fn encode(reply: &Reply) -> Vec<u8> {
    let mut body = Vec::new();
    let command = match reply {
        Reply::OptNeg {
            version,
            actions,
            protocol,
        } => {
            body.extend_from_slice(&version.to_be_bytes());
            body.extend_from_slice(&actions.to_be_bytes());
            body.extend_from_slice(&protocol.to_be_bytes());
            b'O'
        }
        Reply::Continue => b'c',
        Reply::Accept => b'a',
        Reply::Discard => b'd',
        Reply::TempFail => b't',
        Reply::ReplyCode(text) => {
            push_cstr(&mut body, text);
            b'y'
        }
        Reply::AddHeader { name, value } => {
            push_cstr(&mut body, name);
            push_cstr(&mut body, value);
            b'h'
        }
        Reply::ChangeHeader { index, name, value } => {
            body.extend_from_slice(&index.to_be_bytes());
            push_cstr(&mut body, name);
            push_cstr(&mut body, value);
            b'm'
        }
        Reply::Quarantine(reason) => {
            push_cstr(&mut body, reason);
            b'q'
        }
    };
    let mut out = Vec::with_capacity(body.len() + 5);
    out.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
    out.push(command);
    out.extend_from_slice(&body);
    out
}

/// Macro names without braces: `{i}` and `i` are the same macro.
pub fn macro_name(name: &str) -> &str {
    name.trim_start_matches('{').trim_end_matches('}')
}

/// Macros seen on a connection, by bare name.
#[derive(Debug, Default)]
pub struct Macros(HashMap<String, String>);

impl Macros {
    pub fn set(&mut self, macros: Vec<(String, String)>) {
        for (k, v) in macros {
            self.0.insert(macro_name(&k).to_string(), v);
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(cmd: u8, data: &[u8]) -> Vec<u8> {
        let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(cmd);
        p.extend_from_slice(data);
        p
    }

    #[test]
    fn packets_split_only_when_complete() {
        let p = packet(b'H', b"mx.example\0");
        assert_eq!(split_packet(&p[..3]), Ok(None));
        assert_eq!(split_packet(&p[..p.len() - 1]), Ok(None));
        let (cmd, data, used) = split_packet(&p).unwrap().unwrap();
        assert_eq!((cmd, data, used), (b'H', &b"mx.example\0"[..], p.len()));
        assert_eq!(split_packet(&[0, 0, 0, 0]), Err(CodecError::Empty));
        assert_eq!(
            split_packet(&[0x7f, 0, 0, 0, b'B']),
            Err(CodecError::TooLarge(0x7f00_0000))
        );
    }

    #[test]
    fn commands_parse_as_postfix_sends_them() {
        let mut connect = b"client.example\x004".to_vec();
        connect.extend_from_slice(&2525u16.to_be_bytes());
        connect.extend_from_slice(b"192.0.2.7\0");
        assert_eq!(
            parse(b'C', &connect).unwrap(),
            Command::Connect {
                hostname: "client.example".into(),
                family: b'4',
                port: 2525,
                address: "192.0.2.7".into()
            }
        );
        assert_eq!(
            parse(b'M', b"<a@example.org>\0SIZE=100\0").unwrap(),
            Command::Mail(vec!["<a@example.org>".into(), "SIZE=100".into()])
        );
        assert_eq!(
            parse(b'D', b"R{rcpt_addr}\0b@example.com\0i\0").unwrap(),
            Command::Macro {
                for_command: b'R',
                macros: vec![
                    ("{rcpt_addr}".into(), "b@example.com".into()),
                    ("i".into(), String::new())
                ]
            }
        );
        assert_eq!(
            parse(b'L', b"Subject\0 Hello\0").unwrap(),
            Command::Header {
                name: "Subject".into(),
                value: b" Hello".to_vec()
            }
        );
        assert!(parse(b'O', &[0, 0, 0, 6]).is_err());
        assert!(parse(b'L', b"no nul").is_err());
        assert!(parse(b'z', b"").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn any_bytes_split_and_parse_without_panicking(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut buf = &data[..];
            while let Ok(Some((cmd, body, used))) = split_packet(buf) {
                let _ = parse(cmd, body);
                buf = &buf[used..];
            }
        }

        #[test]
        fn every_command_byte_parses_or_errors_on_any_data(cmd in proptest::prelude::any::<u8>(), data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse(cmd, &data);
        }
    }

    #[test]
    fn replies_encode_with_length_and_nul_terminated_strings() {
        assert_eq!(encode(&Reply::Continue), vec![0, 0, 0, 1, b'c']);
        assert_eq!(
            encode(&Reply::ReplyCode("554 5.7.1 no".into())),
            packet(b'y', b"554 5.7.1 no\0")
        );
        let mut change = 2u32.to_be_bytes().to_vec();
        change.extend_from_slice(b"X-A\0\0");
        assert_eq!(
            encode(&Reply::ChangeHeader {
                index: 2,
                name: "X-A".into(),
                value: String::new()
            }),
            packet(b'm', &change)
        );
        assert_eq!(
            encode(&Reply::AddHeader {
                name: "X\0Y".into(),
                value: "v".into()
            }),
            packet(b'h', b"XY\0v\0")
        );
    }
}
