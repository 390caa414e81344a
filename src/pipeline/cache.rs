//! The result cache: what inspecting one attachment produced (its own
//! findings, and its whole unpack tree with theirs), kept by sha256 so the
//! next message carrying the same bytes splices the result in instead of
//! unpacking and scanning again. A campaign that sends one attachment to
//! ten thousand recipients costs one inspection.
//!
//! What may be kept is narrow on purpose; a subtree is cached only when
//! its result depends on nothing but its bytes and the engine (rules and
//! limits, which a reload replaces along with this cache):
//!
//! - no limit stopped anything inside it (with more budget left, or less,
//!   the next message could see more or less);
//! - nothing in it was encrypted or decrypted (passwords come from the
//!   message around it);
//! - it is not a message (its text teaches the budget passwords);
//! - its duplicates point inside it.
//!
//! Findings about the attachment's own name (type mismatch, double
//! extension…) are not part of an entry: the next message may name the
//! same bytes differently, so those are computed fresh each time.

use crate::config::CacheConfig;
use crate::model::{Finding, FindingKind, Object, Outcome};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// One cached subtree. Object 0 is the attachment itself; ids, parents
/// and depths are relative to it, paths are suffixes of its path.
#[derive(Debug)]
pub struct Subtree {
    /// The attachment's outcome after unpacking (malformed, say).
    pub root_outcome: Outcome,
    /// Everything below it, in discovery order, with relative ids.
    pub objects: Vec<Object>,
    /// Findings on it and below, on relative object ids.
    pub findings: Vec<Finding>,
    /// Bytes its unpacking took from the budget.
    pub unpacked: u64,
    /// Depth of its deepest object below it (0: no children).
    pub depth: u32,
    /// Approximate memory held, for the byte bound.
    size: usize,
}

/// Findings that judge an object's name or declared type, not its bytes.
pub fn about_the_name(kind: &FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::TypeMismatch { .. }
            | FindingKind::DisguisedExecutable { .. }
            | FindingKind::DoubleExtension
            | FindingKind::DeceptiveName { .. }
            | FindingKind::DangerousExtension { .. }
    )
}

impl Subtree {
    /// Builds an entry from the report state: `objects[root..]` and
    /// `findings[first_finding..]` are the subtree just completed. `None`
    /// when it may not be cached (see the module documentation).
    pub fn capture(
        objects: &[Object],
        findings: &[Finding],
        root: usize,
        first_finding: usize,
        unpacked: u64,
    ) -> Option<Subtree> {
        let root_object = objects.get(root)?;
        let root_path = &root_object.path;
        let root_depth = root_object.depth;
        let below = objects.get(root + 1..)?;
        let cacheable_outcome = |o: &Outcome| match o {
            Outcome::Limit { .. } | Outcome::Encrypted => false,
            Outcome::Duplicate { of } => *of >= root,
            _ => true,
        };
        if !cacheable_outcome(&root_object.outcome)
            || !below.iter().all(|o| cacheable_outcome(&o.outcome))
        {
            return None;
        }
        let mut size = std::mem::size_of::<Subtree>();
        let mut depth = 0;
        let mut rel_objects = Vec::with_capacity(below.len());
        for o in below {
            let mut o = o.clone();
            o.id -= root;
            o.parent = o.parent.map(|p| p - root);
            o.depth -= root_depth;
            depth = depth.max(o.depth);
            o.path = o.path.get(root_path.len()..)?.to_string();
            if let Outcome::Duplicate { of } = &mut o.outcome {
                *of -= root;
            }
            size += std::mem::size_of::<Object>()
                + o.path.len()
                + o.name.as_ref().map_or(0, String::len)
                + 200;
            rel_objects.push(o);
        }
        let mut rel_findings = Vec::new();
        for f in findings.get(first_finding..)? {
            if matches!(
                f.kind,
                FindingKind::Limit { .. } | FindingKind::Encrypted | FindingKind::Decrypted { .. }
            ) {
                return None;
            }
            if f.object == root && about_the_name(&f.kind) {
                continue;
            }
            if f.object < root {
                // Something about an ancestor recorded while this subtree
                // was open (a time limit): not this subtree's to keep.
                return None;
            }
            let mut f = f.clone();
            f.object -= root;
            f.path = f.path.get(root_path.len()..)?.to_string();
            size += std::mem::size_of::<Finding>() + f.path.len() + f.description.len() + 100;
            rel_findings.push(f);
        }
        Some(Subtree {
            root_outcome: root_object.outcome.clone(),
            objects: rel_objects,
            findings: rel_findings,
            unpacked,
            depth,
            size,
        })
    }
}

/// Shared by every worker of one engine.
#[derive(Debug)]
pub struct ResultCache {
    config: CacheConfig,
    inner: Mutex<Inner>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<[u8; 32], (Arc<Subtree>, u64)>,
    bytes: usize,
    clock: u64,
}

impl ResultCache {
    pub fn new(config: CacheConfig) -> ResultCache {
        ResultCache {
            config,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether an object this large is worth caching at all.
    pub fn wants(&self, size: u64) -> bool {
        self.config.entries > 0 && size >= self.config.min_object_bytes
    }

    pub fn get(&self, sha256: &[u8; 32]) -> Option<Arc<Subtree>> {
        let Ok(mut inner) = self.inner.lock() else {
            return None;
        };
        inner.clock += 1;
        let now = inner.clock;
        let found = inner.map.get_mut(sha256).map(|(entry, used)| {
            *used = now;
            Arc::clone(entry)
        });
        drop(inner);
        match &found {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        found
    }

    /// Keeps `entry`, evicting the least recently used ones to stay within
    /// both bounds. An entry larger than the whole byte budget is dropped.
    pub fn put(&self, sha256: [u8; 32], entry: Subtree) {
        if entry.size > self.config.max_bytes || self.config.entries == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.clock += 1;
        let now = inner.clock;
        let size = entry.size;
        if let Some((old, _)) = inner.map.insert(sha256, (Arc::new(entry), now)) {
            inner.bytes -= old.size;
        }
        inner.bytes += size;
        while inner.map.len() > self.config.entries || inner.bytes > self.config.max_bytes {
            // O(entries) per eviction; evictions happen one insert at a
            // time once full, and the map is at most `entries` long.
            let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((gone, _)) = inner.map.remove(&oldest) {
                inner.bytes -= gone.size;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: usize) -> Subtree {
        Subtree {
            root_outcome: Outcome::Scanned,
            objects: Vec::new(),
            findings: Vec::new(),
            unpacked: 0,
            depth: 0,
            size,
        }
    }

    #[test]
    fn bounded_by_entries_and_bytes_least_recently_used_first() {
        let cache = ResultCache::new(CacheConfig {
            entries: 3,
            max_bytes: 1000,
            min_object_bytes: 0,
        });
        for i in 0..3u8 {
            cache.put([i; 32], entry(100));
        }
        // Touch 0: 1 is now the least recently used.
        assert!(cache.get(&[0; 32]).is_some());
        cache.put([3; 32], entry(100));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[0; 32]).is_some());
        // Bytes: a 900-byte entry pushes out the least recently used
        // until the rest fits: 2 and 3 go, 0 (just read) stays.
        cache.put([4; 32], entry(900));
        assert_eq!((cache.len(), cache.bytes()), (2, 1000));
        assert!(cache.get(&[0; 32]).is_some());
        assert!(cache.get(&[3; 32]).is_none());
        // Larger than the whole budget: not kept at all.
        cache.put([5; 32], entry(2000));
        assert!(cache.get(&[5; 32]).is_none());
        assert_eq!(cache.hits.load(Relaxed), 3);
        assert_eq!(cache.misses.load(Relaxed), 3);

        let off = ResultCache::new(CacheConfig {
            entries: 0,
            ..CacheConfig::default()
        });
        assert!(!off.wants(1 << 20));
        off.put([0; 32], entry(1));
        assert!(off.is_empty());
    }
}
