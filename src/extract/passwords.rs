//! Password candidates for encrypted attachments.
//!
//! The lure is old and still works: an encrypted zip, 7z, PDF or Office
//! file, with the password in the subject or the body ("Password: 2024"),
//! so the gateway sees ciphertext and the recipient sees the payload. The
//! message that carries the lock carries the key, so we read it too.
//!
//! Candidates are learnt from the subject and text bodies of each message
//! as its MIME tree is unpacked, before any of its attachments is opened.
//! They are tried in order of likelihood: the word after a "password"
//! keyword (in the languages lures are written in), then quoted strings,
//! then words with digits, then other words, then the conventional
//! sample-sharing passwords. Both the number of candidates and the time
//! spent trying them are bounded per message: key derivation is deliberately
//! slow (Office asks for 100 000 SHA-512 rounds per guess), and a message
//! full of words must not buy an attacker our CPU.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Text read per body for candidates; the password is near the top.
const SCAN_CHARS: usize = 16 << 10;
const MIN_LEN: usize = 3;
const MAX_LEN: usize = 64;

/// Lower-case keywords after which a password usually follows.
const KEYWORDS: &[&str] = &[
    "password",
    "passwort",
    "kennwort",
    "passwd",
    "passcode",
    "pwd",
    "pw",
    "pass",
    "mot de passe",
    "mdp",
    "contraseña",
    "contrasena",
    "clave",
    "senha",
    "parola",
    "wachtwoord",
    "hasło",
    "haslo",
    "lösenord",
    "losenord",
    "adgangskode",
    "passord",
    "salasana",
    "heslo",
    "jelszó",
    "şifre",
    "sifre",
    "пароль",
    "密码",
    "密碼",
    "パスワード",
    "비밀번호",
    "code",
    "pin",
];

/// Words between a keyword and the password: "the password is: x".
const FILLERS: &[&str] = &[
    "is", "ist", "est", "es", "é", "è", "to", "=", ":", "-", "–", "—", "：", "for", "file",
    "archive", "zip", "document", "doc", "pdf", "the", "le", "la", "der", "die", "das",
];

/// Shared by malware researchers and, for that reason, by some senders.
const CONVENTIONAL: &[&str] = &["infected", "malware", "virus"];

/// Where a candidate came from, most likely first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    AfterKeyword,
    Quoted,
    WithDigit,
    Word,
}

#[derive(Debug, Default)]
pub struct Passwords {
    /// Learnt candidates, each with its rank, in the order found. At most
    /// `max` per rank: only the first `max` of a rank can ever be tried,
    /// and a message of many text parts would otherwise grow this without
    /// bound.
    learnt: Vec<(Rank, String)>,
    /// Where each learnt word is in `learnt`.
    index: HashMap<String, usize>,
    /// Learnt words per rank.
    per_rank: [usize; 4],
    max: usize,
    time: Duration,
    spent: Duration,
    /// The last password that opened something: archives usually share one.
    hit: Option<String>,
    /// Texts given but not read yet. Reading them (words, case folding,
    /// keywords in thirty spellings) costs more than the rest of most
    /// messages' inspection, and only a message with something locked
    /// needs it: they are read at the first attempt, in the order given.
    pending: Vec<Pending>,
    pending_bytes: usize,
}

#[derive(Debug)]
enum Pending {
    Text(String),
    Html(String),
}

/// Texts kept unread at most: beyond this they are read at once, so a
/// message of a thousand bodies is not copied whole, and a password after
/// them is still learnt.
const PENDING_BYTES: usize = 4 << 20;

impl Passwords {
    pub fn new(max: usize, time: Duration) -> Passwords {
        Passwords {
            learnt: Vec::new(),
            index: HashMap::new(),
            per_rank: [0; 4],
            max,
            time,
            spent: Duration::ZERO,
            hit: None,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// Candidates from a subject or a text body, read when first needed.
    pub fn learn(&mut self, text: &str) {
        // A character is at most 4 bytes: this holds SCAN_CHARS of them.
        if let Some(kept) = self.keep(text, SCAN_CHARS * 4) {
            self.pending.push(Pending::Text(kept));
        }
    }

    /// Candidates from an HTML body's text, read when first needed. The
    /// HTML is kept whole: markup yields no text, so any cut on the raw
    /// bytes would let a sender push the password past it with a long
    /// tag or data: URI.
    pub fn learn_html(&mut self, html: &str) {
        if html.len() > PENDING_BYTES {
            self.settle();
            self.read(&super::mail::html_text(html));
            return;
        }
        if let Some(kept) = self.keep(html, html.len()) {
            self.pending.push(Pending::Html(kept));
        }
    }

    fn keep(&mut self, text: &str, max: usize) -> Option<String> {
        let kept = prefix(text, max);
        if self.pending_bytes + kept.len() > PENDING_BYTES {
            self.settle();
        }
        self.pending_bytes += kept.len();
        (!kept.is_empty()).then(|| kept.to_string())
    }

    fn settle(&mut self) {
        self.pending_bytes = 0;
        for p in std::mem::take(&mut self.pending) {
            match p {
                Pending::Text(text) => self.read(&text),
                Pending::Html(html) => self.read(&super::mail::html_text(&html)),
            }
        }
    }

    fn read(&mut self, text: &str) {
        let text: String = text.chars().take(SCAN_CHARS).collect();
        let words: Vec<&str> = text.split_whitespace().collect();
        let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
        for i in 0..words.len() {
            // "mot de passe" spans words; a keyword may also end in the
            // colon: "Password:2024" is one word.
            for kw in KEYWORDS {
                let parts: Vec<&str> = kw.split(' ').collect();
                let Some(end) = keyword_at(&lower, i, &parts) else {
                    continue;
                };
                let last = &words[end];
                let glued = strip_keyword_prefix(last, parts[parts.len() - 1]);
                if let Some(rest) = glued.filter(|r| !r.is_empty()) {
                    self.push(Rank::AfterKeyword, rest);
                    continue;
                }
                let mut j = end + 1;
                while j < words.len() && FILLERS.contains(&lower[j].trim_end_matches(':')) {
                    j += 1;
                }
                if let Some(w) = words.get(j) {
                    self.push(Rank::AfterKeyword, w);
                }
            }
        }
        for q in quoted(&text) {
            self.push(Rank::Quoted, q);
        }
        for w in &words {
            let rank = if w.chars().any(|c| c.is_ascii_digit()) {
                Rank::WithDigit
            } else {
                Rank::Word
            };
            self.push(rank, w);
        }
    }

    /// Adds a word, trimmed of the quotes, brackets and sentence
    /// punctuation around it ("(password: 8812)." gives 8812). After a
    /// keyword also as written, when that differs: a password may end in a
    /// full stop.
    fn push(&mut self, rank: Rank, word: &str) {
        let trimmed = word.trim_matches(|c: char| "\"'«»“”‘’„()[]<>{}*.,;:!?".contains(c));
        let as_written = if rank == Rank::AfterKeyword {
            word
        } else {
            trimmed
        };
        for w in [trimmed, as_written] {
            let n = w.chars().count();
            if !(MIN_LEN..=MAX_LEN).contains(&n) {
                continue;
            }
            let room = self.per_rank[rank as usize] < self.max;
            match self.index.get(w) {
                Some(&at) => {
                    let old = self.learnt[at].0;
                    if rank < old && room {
                        self.per_rank[old as usize] -= 1;
                        self.per_rank[rank as usize] += 1;
                        self.learnt[at].0 = rank;
                    }
                }
                None if room => {
                    self.index.insert(w.to_string(), self.learnt.len());
                    self.learnt.push((rank, w.to_string()));
                    self.per_rank[rank as usize] += 1;
                }
                None => {}
            }
        }
    }

    /// Candidates in the order they will be tried, at most `max`.
    pub fn candidates(&mut self) -> Vec<String> {
        self.settle();
        let mut out: Vec<String> = Vec::new();
        if let Some(hit) = &self.hit {
            out.push(hit.clone());
        }
        let mut ranked: Vec<&(Rank, String)> = self.learnt.iter().collect();
        // Stable: within a rank, the order the text gave them.
        ranked.sort_by_key(|(rank, _)| *rank);
        let conventional = CONVENTIONAL.iter().map(|s| s.to_string());
        for c in ranked
            .into_iter()
            .map(|(_, c)| c.clone())
            .chain(conventional)
        {
            if out.len() >= self.max {
                break;
            }
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// Tries candidates with `attempt` until one opens the lock, the
    /// candidates run out, or the per-message password time (or `deadline`)
    /// is spent. `first` are tried before the learnt ones (a PDF's empty
    /// user password, which costs nothing), `last` after them (Excel's
    /// built-in password, which costs a full key derivation).
    pub fn try_each<T>(
        &mut self,
        first: &[&str],
        last: &[&str],
        deadline: Instant,
        mut attempt: impl FnMut(&str) -> Option<T>,
    ) -> Option<(T, String)> {
        let mut list: Vec<String> = first.iter().map(|s| s.to_string()).collect();
        list.extend(self.candidates());
        list.extend(last.iter().map(|s| s.to_string()));
        for candidate in list {
            let now = Instant::now();
            if self.spent >= self.time || now >= deadline {
                return None;
            }
            let found = attempt(&candidate);
            self.spent += now.elapsed();
            if let Some(t) = found {
                self.hit = Some(candidate.clone());
                return Some((t, candidate));
            }
        }
        None
    }

    /// Whether any time is left for attempts.
    pub fn time_left(&self) -> Duration {
        self.time.saturating_sub(self.spent)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The index of the keyword's last word if `parts` start at word `i`.
fn keyword_at(lower: &[String], i: usize, parts: &[&str]) -> Option<usize> {
    let last = parts.len() - 1;
    for (k, part) in parts.iter().enumerate() {
        let word = lower.get(i + k)?;
        let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
        let ok = if k == last {
            word.starts_with(part)
                && word[part.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphabetic())
        } else {
            word == *part
        };
        if !ok {
            return None;
        }
    }
    Some(i + last)
}

/// "Password:2024" → Some("2024"); "Password:" → Some(""); "Passwords" → None.
fn strip_keyword_prefix<'a>(word: &'a str, keyword: &str) -> Option<&'a str> {
    let start = word.find(|c: char| c.is_alphanumeric())?;
    let rest = word.get(start..)?;
    let lower = rest.to_lowercase();
    if !lower.starts_with(keyword) || lower.len() != rest.len() {
        // Case folding changed the length (rare scripts): no gluing.
        return None;
    }
    let after = rest.get(keyword.len()..)?;
    let after = after.trim_start_matches([':', '=', '：', '-']);
    Some(after)
}

/// Strings between matching quotes, without whitespace inside.
fn quoted(text: &str) -> Vec<&str> {
    const PAIRS: &[(char, char)] = &[
        ('"', '"'),
        ('\'', '\''),
        ('«', '»'),
        ('“', '”'),
        ('„', '“'),
        ('‘', '’'),
        ('*', '*'),
        ('[', ']'),
        ('(', ')'),
    ];
    let mut out = Vec::new();
    for &(open, close) in PAIRS {
        let mut rest = text;
        while let Some(a) = rest.find(open) {
            let after = &rest[a + open.len_utf8()..];
            let Some(b) = after.find(close) else { break };
            let inner = &after[..b];
            if !inner.is_empty() && !inner.contains(char::is_whitespace) {
                out.push(inner);
            }
            rest = &after[b + close.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learnt(text: &str) -> Vec<String> {
        let mut p = Passwords::new(32, Duration::from_secs(1));
        p.learn(text);
        p.candidates()
    }

    #[test]
    fn a_password_after_a_megabyte_of_markup_is_learnt() {
        let mut p = Passwords::new(4, Duration::from_secs(1));
        let uri = "A".repeat(2 << 20);
        p.learn_html(&format!(
            "<img src=\"data:image/png;base64,{uri}\"><p>Password: <b>Hidden-7</b></p>"
        ));
        p.learn_html(&format!(
            "<!-- {} --><p>password: Second-8</p>",
            "x".repeat(1 << 20)
        ));
        let c = p.candidates();
        assert_eq!(c[..2], ["Hidden-7", "Second-8"], "{c:?}");
    }

    #[test]
    fn texts_are_kept_within_a_bound_and_read_in_order() {
        let mut p = Passwords::new(4, Duration::from_secs(1));
        p.learn("the password is: First-1");
        let filler = "lorem ipsum ".repeat(100_000);
        for _ in 0..10 {
            p.learn(&filler);
            p.learn_html(&format!("<p>{filler}</p>"));
            assert!(p.pending_bytes <= PENDING_BYTES, "{}", p.pending_bytes);
        }
        p.learn("password: Late-2");
        let kept: usize = p
            .pending
            .iter()
            .map(|t| match t {
                Pending::Text(t) | Pending::Html(t) => t.len(),
            })
            .sum();
        assert_eq!(kept, p.pending_bytes);
        let c = p.candidates();
        assert_eq!(c[..2], ["First-1", "Late-2"], "read in order, none dropped");
        assert!(p.pending.is_empty(), "read at the first use");
    }

    #[test]
    fn the_word_after_the_keyword_comes_first() {
        let c = learnt(
            "Hello Bob, please find the invoice attached. The password is: INV-2024.\nRegards",
        );
        assert_eq!(c[0], "INV-2024");
        assert!(c.contains(&"INV-2024.".to_string()));
        assert_eq!(learnt("Passwort: geheim42")[0], "geheim42");
        assert_eq!(learnt("PASSWORD:7731 see zip")[0], "7731");
        assert_eq!(learnt("mot de passe : « Facture99 »")[0], "Facture99");
        assert_eq!(learnt("пароль 5566")[0], "5566");
        assert_eq!(learnt("Zip pw - abc")[0], "abc");
        assert_eq!(
            learnt("the document is protected (password: 8812).")[0],
            "8812"
        );
    }

    #[test]
    fn quoted_then_digits_then_words_then_conventional() {
        let c = learnt("open it with \"s3cret\" please, ref 1234");
        assert_eq!(c[0], "s3cret");
        assert_eq!(c[1], "1234");
        assert!(c.iter().position(|x| x == "open") < c.iter().position(|x| x == "infected"));
        assert!(c.contains(&"infected".to_string()));
    }

    #[test]
    fn bounded_in_number_and_length() {
        let text: String = (0..1000).map(|i| format!("word{i} ")).collect();
        let c = learnt(&text);
        assert_eq!(c.len(), 32);
        let long = "x".repeat(200);
        assert!(!learnt(&long).contains(&long));
        assert!(!learnt("ab").contains(&"ab".to_string()));
    }

    #[test]
    fn many_bodies_keep_only_what_can_be_tried() {
        // A message of many text parts full of distinct words: what is kept
        // stays bounded (it was every word, each added by a linear search),
        // and the password after the keyword still comes first.
        let mut p = Passwords::new(16, Duration::from_secs(1));
        for part in 0..300 {
            let body: String = (0..2000).map(|i| format!("w{part}x{i} ")).collect();
            p.learn(&body);
        }
        p.learn("the password is: Late-42");
        assert!(p.learnt.len() <= 4 * 16, "{}", p.learnt.len());
        assert_eq!(p.candidates()[0], "Late-42");
    }

    #[test]
    fn bounded_in_time_and_remembers_the_hit() {
        let mut p = Passwords::new(32, Duration::from_millis(30));
        p.learn("one two three four five six seven");
        let mut tried = 0;
        let got: Option<((), String)> =
            p.try_each(&[], &[], Instant::now() + Duration::from_secs(5), |_| {
                tried += 1;
                std::thread::sleep(Duration::from_millis(10));
                None
            });
        assert!(got.is_none());
        // Each attempt takes at least 10 ms of the 30: never more than 3 of
        // the 10 candidates, however slow the machine.
        assert!((1..=3).contains(&tried), "tried {tried}");
        assert_eq!(p.time_left(), Duration::ZERO);

        let mut p = Passwords::new(32, Duration::from_secs(1));
        p.learn("alpha beta gamma");
        let got = p.try_each(&[""], &[], Instant::now() + Duration::from_secs(5), |pw| {
            (pw == "beta").then_some(7)
        });
        assert_eq!(got, Some((7, "beta".to_string())));
        assert_eq!(p.candidates()[0], "beta");
    }

    #[test]
    fn keywords_inside_words_do_not_count() {
        // "passage" starts with "pass" but is not a keyword.
        let mut p = Passwords::new(32, Duration::from_secs(1));
        p.learn("passage zzz");
        assert!(
            !p.learnt
                .iter()
                .any(|(r, w)| *r == Rank::AfterKeyword && w == "zzz")
        );
    }
}
