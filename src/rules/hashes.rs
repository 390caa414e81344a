//! Hash block and allow lists. A blocked hash is a verdict on its own; an
//! allowed hash ends inspection of that object (it is known good: a vendor
//! installer that YARA would flag, say).

use super::RulesError;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Block,
    Allow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashHit {
    pub kind: ListKind,
    pub list: String,
    pub algorithm: &'static str,
    pub hash: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: ListKind,
    list: String,
    description: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct HashLists {
    /// Lower-case hex hash to entry; md5, sha1 and sha256 cannot collide by
    /// length, so one map holds all three.
    entries: HashMap<String, Entry>,
    /// Whether any entry is a sha1 / an md5: objects then need that digest
    /// even when legacy hashes are off.
    pub has_sha1: bool,
    pub has_md5: bool,
}

impl HashLists {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `rel` is the path below `hashes/`, such as `block/campaign.txt`.
    pub fn add_file(&mut self, rel: &str, origin: &str, text: &str) -> Result<(), RulesError> {
        let kind = if rel.starts_with("block/") {
            ListKind::Block
        } else if rel.starts_with("allow/") {
            ListKind::Allow
        } else {
            return Err(RulesError::HashList {
                file: origin.into(),
                line: 0,
                message: "hash lists live in hashes/block/ or hashes/allow/".into(),
            });
        };
        let list = rel
            .rsplit('/')
            .next()
            .unwrap_or(rel)
            .trim_end_matches(".txt")
            .to_string();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (hash, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let hash = hash.to_ascii_lowercase();
            if !matches!(hash.len(), 32 | 40 | 64) || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(RulesError::HashList {
                    file: origin.into(),
                    line: i + 1,
                    message: format!("{hash:?} is not an md5, sha1 or sha256 in hex"),
                });
            }
            let description = Some(rest.trim().to_string()).filter(|d| !d.is_empty());
            self.has_sha1 |= hash.len() == 40;
            self.has_md5 |= hash.len() == 32;
            // Block wins over allow when a hash is in both: fail closed.
            let entry = Entry {
                kind,
                list: list.clone(),
                description,
            };
            match self.entries.get(&hash) {
                Some(existing) if existing.kind == ListKind::Block => {}
                _ => {
                    self.entries.insert(hash, entry);
                }
            }
        }
        Ok(())
    }

    /// Looks up an object's digests, sha256 first.
    pub fn lookup(&self, sha256: &str, sha1: Option<&str>, md5: Option<&str>) -> Option<HashHit> {
        [("sha256", Some(sha256)), ("sha1", sha1), ("md5", md5)]
            .into_iter()
            .filter_map(|(algorithm, hash)| Some((algorithm, hash?)))
            .find_map(|(algorithm, hash)| {
                self.entries.get(hash).map(|e| HashHit {
                    kind: e.kind,
                    list: e.list.clone(),
                    algorithm,
                    hash: hash.to_string(),
                    description: e.description.clone(),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_looks_up() {
        let mut l = HashLists::default();
        l.add_file(
            "block/x.txt",
            "hashes/block/x.txt",
            "# campaign\n44D88612FEA8A8F36DE82E1278ABB02F  eicar md5\n\n",
        )
        .unwrap();
        let hit = l
            .lookup("00", Some("00"), Some("44d88612fea8a8f36de82e1278abb02f"))
            .unwrap();
        assert_eq!(hit.kind, ListKind::Block);
        assert_eq!(hit.algorithm, "md5");
        assert_eq!(hit.description.as_deref(), Some("eicar md5"));
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let mut l = HashLists::default();
        let err = l
            .add_file("allow/a.txt", "hashes/allow/a.txt", "\nnot-a-hash\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "hashes/allow/a.txt:2: \"not-a-hash\" is not an md5, sha1 or sha256 in hex"
        );
    }

    #[test]
    fn block_wins_over_allow() {
        let mut l = HashLists::default();
        let h = "a".repeat(64);
        l.add_file("block/b.txt", "b", &h).unwrap();
        l.add_file("allow/a.txt", "a", &h).unwrap();
        assert_eq!(l.lookup(&h, None, None).unwrap().kind, ListKind::Block);
    }
}
