//! A bounded, in-memory sample of recent mail for rule previews: the last
//! `rules.preview_sample` messages that were not quarantined (held ones are
//! in the quarantine already), at most `rules.preview_sample_bytes`. Off by
//! default. Memory only, on purpose: a copy of delivered mail is sensitive,
//! and this one never reaches a disk and is gone on restart. Each node
//! keeps its own.

use crate::config::LifecycleConfig;
use crate::model::{Action, Door, Envelope};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

pub struct Sample {
    pub received_ms: i64,
    pub door: Door,
    pub envelope: Envelope,
    pub action: Action,
    /// Shared with the submission it came from: keeping it costs no copy.
    pub raw: Arc<[u8]>,
}

#[derive(Default)]
pub struct Samples {
    inner: Mutex<Inner>,
    /// Whether `inner` holds anything: with the sample off (the default)
    /// every message passes here, and must not take the lock to learn
    /// there is nothing to drop.
    holding: AtomicBool,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Arc<Sample>>,
    bytes: u64,
    /// Sequence number of the next sample, for stable ids in previews.
    next: u64,
}

impl Samples {
    pub fn record(&self, cfg: &LifecycleConfig, sample: Sample) {
        if cfg.preview_sample == 0 {
            self.clear_if_any();
            return;
        }
        let size = sample.raw.len() as u64;
        // One message may not push out most of the sample.
        if size > cfg.preview_sample_bytes / 4 {
            return;
        }
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.holding.store(true, Relaxed);
        s.next += 1;
        s.items.push_back(Arc::new(sample));
        s.bytes += size;
        while s.items.len() > cfg.preview_sample || s.bytes > cfg.preview_sample_bytes {
            match s.items.pop_front() {
                Some(old) => s.bytes -= old.raw.len() as u64,
                None => break,
            }
        }
    }

    fn clear_if_any(&self) {
        if !self.holding.load(Relaxed) {
            return;
        }
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.holding.store(false, Relaxed);
        if !s.items.is_empty() {
            s.items.clear();
            s.bytes = 0;
        }
    }

    /// The samples now, oldest first, each with its id (`s<n>`).
    pub fn snapshot(&self) -> Vec<(String, Arc<Sample>)> {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let first = s.next - s.items.len() as u64 + 1;
        s.items
            .iter()
            .enumerate()
            .map(|(i, x)| (format!("s{}", first + i as u64), Arc::clone(x)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .items
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Sample {
        Sample {
            received_ms: 0,
            door: Door::Native,
            envelope: Envelope::default(),
            action: Action::Accept,
            raw: vec![b'x'; n].into(),
        }
    }

    #[test]
    fn keeps_the_newest_within_count_and_bytes() {
        let s = Samples::default();
        let cfg = LifecycleConfig {
            preview_sample: 3,
            preview_sample_bytes: 1000,
            ..Default::default()
        };
        for _ in 0..5 {
            s.record(&cfg, sample(10));
        }
        let ids: Vec<String> = s.snapshot().into_iter().map(|(i, _)| i).collect();
        assert_eq!(ids, ["s3", "s4", "s5"]);
        // Bytes bound: three of 240 would pass the count but not the bytes.
        for _ in 0..3 {
            s.record(&cfg, sample(240));
        }
        assert_eq!(s.len(), 3);
        s.record(&cfg, sample(600)); // more than a quarter: not kept
        assert_eq!(s.snapshot().last().unwrap().0, "s8");
        let off = LifecycleConfig {
            preview_sample: 0,
            ..cfg
        };
        s.record(&off, sample(1));
        assert!(s.is_empty(), "turning the sample off drops what it held");
    }
}
