//! mbox: messages one after another, each starting with a `From ` line
//! after a blank one (or at the start). An mbox mailed as an attachment
//! gives each of its messages as a child message; `portcullis scan` splits
//! mbox files with the same [`Splitter`], a line at a time.

use super::{Budget, Child, ExtractError, Extracted};

/// Cuts a stream of lines into messages. mboxrd escaping (`>From `) is
/// undone; mboxo cannot be told apart and is read the same way.
#[derive(Default)]
pub struct Splitter {
    current: Vec<u8>,
    previous_blank: bool,
    started: bool,
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter {
            previous_blank: true,
            ..Default::default()
        }
    }

    /// Takes one line (with its line ending); returns the message it ends,
    /// if it is a separator.
    pub fn line(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        if self.previous_blank && line.starts_with(b"From ") {
            self.previous_blank = false;
            self.started = true;
            return (!self.current.is_empty()).then(|| std::mem::take(&mut self.current));
        }
        self.previous_blank = line == b"\n" || line == b"\r\n";
        let escaped = line.starts_with(b">")
            && line
                .iter()
                .skip_while(|&&b| b == b'>')
                .take(5)
                .eq(b"From ".iter());
        self.current
            .extend_from_slice(if escaped { &line[1..] } else { line });
        None
    }

    /// The last message, if any.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.current.is_empty()).then_some(self.current)
    }
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut out = Extracted::default();
    let mut splitter = Splitter::new();
    let mut messages = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if let Some(m) = splitter.line(line) {
            messages.push(m);
        }
    }
    messages.extend(splitter.finish());
    for (i, message) in messages.into_iter().enumerate() {
        if !out.room(budget) {
            break;
        }
        // Splitting copies, it does not expand: the caps still hold.
        let child = Child {
            name: Some(format!("message-{}", i + 1)),
            declared_type: Some("message/rfc822".into()),
            data: message,
            is_mail: true,
            ..Default::default()
        };
        if out.add_charged(budget, child) {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::test_budget as budget;

    #[test]
    fn splits_on_from_lines_after_blank_ones_and_unescapes() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From the start\n\nFrom c@d Tue Jan  2 00:00:00 2024\nSubject: two\n\nbody line\nFrom inside a paragraph is not a separator\n";
        let out = extract(mbox, &mut budget()).unwrap();
        let texts: Vec<String> = out
            .children
            .iter()
            .map(|c| String::from_utf8_lossy(&c.data).into_owned())
            .collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].contains("\nFrom the start\n"));
        assert!(texts[1].starts_with("Subject: two"));
        assert!(texts[1].contains("From inside a paragraph"));
        assert!(out.children.iter().all(|c| c.is_mail));
    }
}
