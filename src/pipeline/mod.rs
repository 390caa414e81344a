//! The inspection pipeline, read top to bottom:
//!
//! ```text
//! submission ─► for each object (depth first, one budget):
//!                 identify  (hashes, true type, name checks)
//!                 dedupe    (same sha256 seen in this message: skip)
//!                 hash lists (block: finding; allow: stop here)
//!                 scan      (yara-x)
//!                 extract   (containers push their children)
//!             ─► decide (policy, pure) ─► Report
//! ```
//!
//! All of it is synchronous, CPU-bound work: callers run it on a blocking
//! pool, one [`Inspector`] per worker thread (it owns a yara-x scanner,
//! which is not `Send`).

pub mod cache;
pub mod identify;

use crate::config::Config;
use crate::extract::{self, Budget, Child, ExtractError, Stop};
use crate::model::{
    Action, Finding, FindingKind, InputKind, LimitKind, Object, Outcome, Submission, Verdict,
};
use crate::policy;
use crate::rules::{ListKind, RuleSet};
use identify::FileType;
use serde::Serialize;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const REPORT_SCHEMA: &str = "portcullis.report.v1";

/// How many findings of one kind an unpacker may raise on one container.
pub const SAME_KIND_PER_OBJECT: usize = 3;

/// Everything known about one submission after inspection.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    pub objects: Vec<Object>,
    pub rules_version: String,
    pub unpacked_bytes: u64,
    pub duration_ms: f64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A bug, not an input problem: the caller must not deliver or drop the
    /// message on this, only retry (tempfail) or report.
    #[error("internal error while inspecting: {0}")]
    Panic(String),
}

/// Immutable for its lifetime (but for its result cache, which only
/// remembers): a rule reload builds a new engine, and with it an empty
/// cache.
#[derive(Debug, Clone)]
pub struct Engine {
    pub config: Arc<Config>,
    pub rules: Arc<RuleSet>,
    pub cache: Arc<cache::ResultCache>,
}

impl Engine {
    pub fn new(config: Config, rules: RuleSet) -> Engine {
        Engine {
            cache: Arc::new(cache::ResultCache::new(config.cache.clone())),
            config: Arc::new(config),
            rules: Arc::new(rules),
        }
    }

    /// One per worker thread, reused for every submission it handles.
    pub fn inspector(&self) -> Inspector<'_> {
        Inspector {
            engine: self,
            scanner: self.rules.scanner(self.config.scan_timeout),
        }
    }

    /// Convenience for one-off use; workers should keep an [`Inspector`].
    pub fn inspect(&self, submission: &Submission) -> Result<Report, PipelineError> {
        self.inspector().inspect(submission)
    }
}

pub struct Inspector<'e> {
    engine: &'e Engine,
    scanner: yara_x::Scanner<'e>,
}

/// Time one rule has taken in one scanner, cumulative since the scanner
/// was made (the `rules-profiling` feature; yara-x leaves out rules under
/// 100 ms in total).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleTime {
    pub namespace: String,
    pub rule: String,
    pub condition: Duration,
    pub patterns: Duration,
}

/// What is known of an object before it is looked at.
struct Meta {
    parent: Option<usize>,
    depth: u32,
    path: String,
    name: Option<String>,
    declared_type: Option<String>,
    stopped: Option<Stop>,
    is_mail: bool,
}

/// An object waiting on the stack, with its bytes.
struct Pending {
    meta: Meta,
    data: Vec<u8>,
}

impl<'e> Inspector<'e> {
    /// Per-rule scan time so far; empty without the `rules-profiling`
    /// feature.
    pub fn rule_times(&self) -> Vec<RuleTime> {
        #[cfg(feature = "rules-profiling")]
        {
            self.scanner
                .slowest_rules(usize::MAX)
                .into_iter()
                .map(|p| RuleTime {
                    namespace: p.namespace.to_string(),
                    rule: p.rule.to_string(),
                    condition: p.condition_exec_time,
                    patterns: p.pattern_matching_time,
                })
                .collect()
        }
        #[cfg(not(feature = "rules-profiling"))]
        {
            Vec::new()
        }
    }

    pub fn inspect(&mut self, submission: &Submission) -> Result<Report, PipelineError> {
        self.guarded(submission, Instant::now(), true, &mut |_, _| {})
    }

    /// Like [`inspect`](Self::inspect), with the time budget counted from
    /// `since` (when a service admitted the message) rather than from now,
    /// so time spent waiting in a queue comes out of the same budget.
    pub fn inspect_since(
        &mut self,
        submission: &Submission,
        since: Instant,
    ) -> Result<Report, PipelineError> {
        self.guarded(submission, since, true, &mut |_, _| {})
    }

    /// Like [`inspect`](Self::inspect), and hands every object's bytes to
    /// `visit` as it is found (for dumping objects, or benchmarks that need
    /// the extracted objects themselves). The result cache is neither read
    /// nor written: a cached subtree has no bytes to hand over.
    pub fn inspect_visiting(
        &mut self,
        submission: &Submission,
        visit: &mut dyn FnMut(&Object, &[u8]),
    ) -> Result<Report, PipelineError> {
        self.guarded(submission, Instant::now(), false, visit)
    }

    fn guarded(
        &mut self,
        submission: &Submission,
        budget_start: Instant,
        use_cache: bool,
        visit: &mut dyn FnMut(&Object, &[u8]),
    ) -> Result<Report, PipelineError> {
        catch_unwind(AssertUnwindSafe(|| {
            self.run(submission, budget_start, use_cache, visit)
        }))
        .map_err(|panic| {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            tracing::error!(error = %msg, "pipeline panicked");
            PipelineError::Panic(msg)
        })
    }

    fn run(
        &mut self,
        submission: &Submission,
        budget_start: Instant,
        use_cache: bool,
        visit: &mut dyn FnMut(&Object, &[u8]),
    ) -> Report {
        let start = Instant::now();
        let config = &self.engine.config;
        let mut state = State {
            budget: Budget::new(config.limits.clone(), budget_start),
            objects: Vec::new(),
            findings: Vec::new(),
            seen: HashMap::new(),
            use_cache,
            pending: 0,
            spliced: false,
        };
        // Subtrees being inspected that may go into the cache when done.
        let mut frames: Vec<Frame> = Vec::new();

        let root_label = match (submission.kind, &submission.name) {
            (InputKind::Mail, _) => "message".to_string(),
            (InputKind::File, Some(name)) => extract::display_name(name),
            (InputKind::File, None) => "file".to_string(),
        };
        let root = Meta {
            parent: None,
            depth: 0,
            path: root_label,
            name: submission.name.clone(),
            declared_type: None,
            stopped: None,
            is_mail: submission.kind == InputKind::Mail,
        };
        // Depth first from an explicit stack: no recursion, whatever the
        // nesting, and siblings wait as bytes only while a subtree is open.
        let mut stack: Vec<Pending> = Vec::new();
        let found = self.object(&mut state, root, &submission.raw, visit);
        self.push_children(&mut state, &mut stack, found);
        while let Some(pending) = stack.pop() {
            if let Err(kind) = state.budget.check_time() {
                // Out of time: the rest is not looked at. Say so once, on
                // the container whose children we could not get to.
                state.limit(pending.meta.parent.unwrap_or(0), kind);
                break;
            }
            let frame = Frame {
                root: state.objects.len(),
                stack_len: stack.len(),
                first_finding: state.findings.len(),
                unpacked: state.budget.unpacked(),
            };
            state.pending = stack.len();
            state.spliced = false;
            let found = self.object(&mut state, pending.meta, &pending.data, visit);
            if state.use_cache
                && !state.spliced
                && state.objects.get(frame.root).is_some_and(|o| {
                    o.true_type != FileType::Mail.label()
                        && o.outcome == Outcome::Scanned
                        && self.engine.cache.wants(o.size)
                })
            {
                frames.push(frame);
            }
            self.push_children(&mut state, &mut stack, found);
            // A subtree is complete when the stack is back to where it was
            // before its root pushed its children.
            while frames.last().is_some_and(|f| stack.len() <= f.stack_len) {
                let Some(f) = frames.pop() else { break };
                let unpacked = state.budget.unpacked() - f.unpacked;
                let entry = cache::Subtree::capture(
                    &state.objects,
                    &state.findings,
                    f.root,
                    f.first_finding,
                    unpacked,
                );
                let key = state.objects[f.root]
                    .sha256
                    .as_deref()
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|h| <[u8; 32]>::try_from(h).ok());
                if let (Some(entry), Some(key)) = (entry, key) {
                    self.engine.cache.put(key, entry);
                }
            }
        }

        let verdict = policy::decide(&config.policy, &state.findings);
        Report {
            schema: REPORT_SCHEMA,
            verdict,
            findings: state.findings,
            objects: state.objects,
            rules_version: self.engine.rules.version.clone(),
            unpacked_bytes: state.budget.unpacked(),
            duration_ms: start.elapsed().as_secs_f64() * 1000.0,
        }
    }

    fn push_children(
        &self,
        state: &mut State,
        stack: &mut Vec<Pending>,
        found: Option<(usize, Vec<Child>)>,
    ) {
        let Some((id, children)) = found else {
            return;
        };
        let base = &state.objects[id].path;
        let depth = state.objects[id].depth + 1;
        let room = self
            .engine
            .config
            .limits
            .max_objects
            .saturating_sub(state.objects.len() + stack.len());
        let truncated = children.len() > room;
        let mut batch = Vec::with_capacity(children.len().min(room));
        for (i, child) in children.into_iter().take(room).enumerate() {
            let label = child
                .name
                .clone()
                .unwrap_or_else(|| match &child.declared_type {
                    Some(t) => format!("[{}] {t}", i + 1),
                    None => format!("[{}]", i + 1),
                });
            batch.push(Pending {
                meta: Meta {
                    parent: Some(id),
                    depth,
                    path: format!("{base} > {label}"),
                    name: child.name,
                    declared_type: child.declared_type,
                    stopped: child.stopped,
                    is_mail: child.is_mail,
                },
                data: child.data,
            });
        }
        // Reversed so the first child is popped (and numbered) first.
        stack.extend(batch.into_iter().rev());
        if truncated {
            state.limit(id, LimitKind::Objects);
        }
    }

    /// Identifies, scans and unpacks one object. Returns its id and children.
    fn object(
        &mut self,
        state: &mut State,
        meta: Meta,
        data: &[u8],
        visit: &mut dyn FnMut(&Object, &[u8]),
    ) -> Option<(usize, Vec<Child>)> {
        let Meta {
            parent,
            depth,
            path,
            name,
            declared_type,
            stopped,
            is_mail,
        } = meta;
        let engine = self.engine;
        let id = state.objects.len();
        // Nothing of an encrypted entry was read: no hashes, no type, only
        // its name (which the name checks still judge).
        let encrypted = matches!(stopped, Some(Stop::Encrypted | Stop::NotRead(_)));
        // IOC feeds and hash lists name files by md5/sha1, never whole
        // messages, and the raw message is the largest object (every
        // attachment again, in base64): it only gets sha256.
        let is_message_root = is_mail && parent.is_none();
        let file_like = !is_message_root && !encrypted;
        let lists = &engine.rules.hashes;
        let legacy = engine.config.legacy_hashes;
        let hashes = identify::hashes(
            data,
            file_like && (legacy || lists.has_sha1),
            file_like && (legacy || lists.has_md5),
        );
        let sha256 = hex::encode(hashes.sha256);
        let true_type = if is_mail {
            FileType::Mail
        } else if encrypted {
            FileType::Unknown
        } else {
            identify::detect(data)
        };
        state.objects.push(Object {
            id,
            parent,
            depth,
            path,
            name: name.clone(),
            declared_type: declared_type.clone(),
            true_type: true_type.label().to_string(),
            size: data.len() as u64,
            sha256: (!encrypted).then(|| sha256.clone()),
            sha1: hashes.sha1.clone(),
            md5: hashes.md5.clone(),
            outcome: Outcome::Scanned,
        });
        visit(&state.objects[id], data);

        if parent.is_some() || name.is_some() {
            for kind in
                identify::name_findings(name.as_deref(), declared_type.as_deref(), &true_type)
            {
                state.builtin(id, kind);
            }
        }

        match stopped {
            Some(Stop::Encrypted) => {
                state.objects[id].outcome = Outcome::Encrypted;
                state.builtin(id, FindingKind::Encrypted);
                return None;
            }
            Some(Stop::NotRead(outcome)) => {
                state.objects[id].outcome = outcome;
                return None;
            }
            Some(Stop::Limit(kind)) => state.limit(id, kind),
            None => {}
        }

        if let Some(&first) = state.seen.get(&hashes.sha256) {
            // The first copy's findings already speak for this one.
            if state.objects[id].outcome == Outcome::Scanned {
                state.objects[id].outcome = Outcome::Duplicate { of: first };
            }
            // A container holding its own bytes (a zip quine, or one in
            // its own subtree) sends naive unpackers round for ever; no
            // archive made for a person does that.
            let mut up = parent;
            while let Some(p) = up {
                if p == first {
                    state.builtin(
                        p,
                        FindingKind::AmbiguousArchive {
                            reason: "contains itself".into(),
                        },
                    );
                    break;
                }
                up = state.objects[p].parent;
            }
            return None;
        }
        state.seen.insert(hashes.sha256, id);

        let hit =
            engine
                .rules
                .hashes
                .lookup(&sha256, hashes.sha1.as_deref(), hashes.md5.as_deref());
        if hit.as_ref().is_some_and(|h| h.kind == ListKind::Allow) {
            state.objects[id].outcome = Outcome::Allowed;
            return None;
        }
        if state.use_cache
            && parent.is_some()
            && true_type != FileType::Mail
            && engine.cache.wants(data.len() as u64)
            && let Some(entry) = engine.cache.get(&hashes.sha256)
            && state.splice(id, &entry)
        {
            return None;
        }
        // A message's encoded bodies are scanned decoded, as its parts. YARA
        // sees the message itself with them cut out (headers, MIME
        // structure, plain bodies) rather than every attachment twice, once
        // as base64 text that no byte signature can match anyway.
        let early = (true_type == FileType::Mail
            && state.objects[id].outcome == Outcome::Scanned
            && depth < engine.config.limits.max_depth)
            .then(|| extract::extract(&true_type, data, name.as_deref(), &mut state.budget));
        let view = match &early {
            Some(Ok(out)) => out.scan_view.as_deref().unwrap_or(data),
            _ => data,
        };
        // YARA before the hash-list finding so that, on a tie, the rule (the
        // more specific explanation) is the deciding finding.
        self.scan(state, id, view);
        if let Some(hit) = hit {
            let description = hit
                .description
                .clone()
                .unwrap_or_else(|| format!("{} is on block list {}", hit.algorithm, hit.list));
            let kind = FindingKind::HashList {
                list: hit.list,
                algorithm: hit.algorithm.into(),
                hash: hit.hash,
            };
            let score = policy::builtin_score(&kind);
            state.push(id, kind, score, Some(Action::Reject), description);
        }
        // A truncated object is scanned but never unpacked: its structure is
        // cut off, and unpacking it would only produce misleading errors.
        if state.objects[id].outcome != Outcome::Scanned {
            return None;
        }
        let is_container = extract::is_container(&true_type);
        if true_type == FileType::Text {
            let out = extract::text_children(data, &mut state.budget);
            state.builtins(id, out.findings);
            if let Some(kind) = out.stopped {
                state.limit(id, kind);
            }
            return (!out.children.is_empty()).then_some((id, out.children));
        }
        if !is_container {
            return None;
        }
        if depth >= engine.config.limits.max_depth {
            state.limit(id, LimitKind::Depth);
            return None;
        }
        let extracted = early.unwrap_or_else(|| {
            extract::extract(&true_type, data, name.as_deref(), &mut state.budget)
        });
        match extracted {
            Ok(out) => {
                state.builtins(id, out.findings);
                if let Some(kind) = out.stopped {
                    state.limit(id, kind);
                }
                Some((id, out.children))
            }
            Err(ExtractError::Limit(kind)) => {
                state.limit(id, kind);
                None
            }
            Err(ExtractError::Malformed { format, message }) => {
                let detail = format!("{format}: {message}");
                state.unopenable(id, Outcome::Malformed { error: message }, detail);
                None
            }
        }
    }

    fn scan(&mut self, state: &mut State, id: usize, data: &[u8]) {
        let engine = self.engine;
        // yara-x counts whole seconds; never less than one, never past the
        // message's own budget by more than that second.
        let remaining = state.budget.remaining_time();
        let timeout = engine
            .config
            .scan_timeout
            .min(remaining.max(Duration::from_secs(1)));
        self.scanner.set_timeout(timeout);
        match engine.rules.scan(&mut self.scanner, data) {
            Ok(matches) => {
                for m in matches {
                    let description = m
                        .meta
                        .description
                        .clone()
                        .unwrap_or_else(|| format!("YARA rule {} matched", m.rule));
                    let finding = Finding {
                        kind: FindingKind::Yara {
                            namespace: m.namespace,
                            rule: m.rule,
                            tags: m.tags,
                        },
                        object: id,
                        path: state.objects[id].path.clone(),
                        score: m.meta.score,
                        action: m.meta.action,
                        monitor: m.meta.monitor,
                        severity: m.meta.severity,
                        description,
                        reference: m.meta.reference,
                    };
                    state.findings.push(finding);
                }
            }
            Err(yara_x::errors::ScanError::Timeout) => state.limit(id, LimitKind::ScanTimeout),
            Err(e) => {
                tracing::warn!(error = %e, object = id, "yara scan failed");
                state.builtin(
                    id,
                    FindingKind::Unopenable {
                        format: format!("yara: {e}"),
                    },
                );
            }
        }
    }
}

struct State {
    budget: Budget,
    objects: Vec<Object>,
    findings: Vec<Finding>,
    seen: HashMap<[u8; 32], usize>,
    use_cache: bool,
    /// Objects waiting on the stack, for the object limit of a splice.
    pending: usize,
    /// The object just handled came from the cache.
    spliced: bool,
}

/// A subtree whose result may be cached once it is complete.
struct Frame {
    root: usize,
    stack_len: usize,
    first_finding: usize,
    unpacked: u64,
}

impl State {
    /// Puts a cached subtree under object `id` (just identified, nothing
    /// after it yet), as if it had been unpacked and scanned here. False,
    /// touching nothing, when it would not fit this message's remaining
    /// depth, objects or bytes: then it is inspected afresh, and the
    /// limits decide as they would have.
    fn splice(&mut self, id: usize, entry: &cache::Subtree) -> bool {
        let limits = &self.budget.limits;
        let depth = self.objects[id].depth;
        let fits = self.objects.len() == id + 1
            && depth + entry.depth <= limits.max_depth
            && self.objects.len() + self.pending + entry.objects.len() <= limits.max_objects
            && entry.unpacked <= self.budget.remaining_total();
        if !fits {
            return false;
        }
        let root_path = self.objects[id].path.clone();
        if self.objects[id].outcome == Outcome::Scanned {
            self.objects[id].outcome = entry.root_outcome.clone();
        }
        for o in &entry.objects {
            let mut o = o.clone();
            o.id += id;
            o.parent = o.parent.map(|p| p + id);
            o.depth += depth;
            o.path = format!("{root_path}{}", o.path);
            if let Outcome::Duplicate { of } = &mut o.outcome {
                *of += id;
            }
            if o.outcome == Outcome::Scanned
                && let Some(key) = o
                    .sha256
                    .as_deref()
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|h| <[u8; 32]>::try_from(h).ok())
            {
                self.seen.entry(key).or_insert(o.id);
            }
            self.objects.push(o);
        }
        for f in &entry.findings {
            let mut f = f.clone();
            f.object += id;
            f.path = format!("{root_path}{}", f.path);
            self.findings.push(f);
        }
        self.budget.spend(entry.unpacked);
        self.spliced = true;
        true
    }

    fn push(
        &mut self,
        object: usize,
        kind: FindingKind,
        score: i32,
        action: Option<Action>,
        description: String,
    ) {
        self.findings.push(Finding {
            kind,
            object,
            path: self.objects[object].path.clone(),
            score,
            action,
            monitor: false,
            severity: None,
            description,
            reference: None,
        });
    }

    fn builtin(&mut self, object: usize, kind: FindingKind) {
        let score = policy::builtin_score(&kind);
        let description = describe(&kind);
        self.push(object, kind, score, None, description);
    }

    /// A container's findings from its unpacker, at most
    /// [`SAME_KIND_PER_OBJECT`] of one kind: an archive of 20 000 broken
    /// entries is one problem, not 20 000 findings in the report, the
    /// response and the score. The last one kept says how many more there
    /// were.
    fn builtins(&mut self, object: usize, kinds: Vec<FindingKind>) {
        let mut count: HashMap<String, usize> = HashMap::new();
        let mut kept: Vec<FindingKind> = Vec::new();
        for kind in kinds {
            let n = count.entry(kind.name()).or_insert(0);
            *n += 1;
            if *n <= SAME_KIND_PER_OBJECT {
                kept.push(kind);
            }
        }
        // The note goes on the last one kept of each kind.
        for kind in kept.iter_mut().rev() {
            let Some(n) = count.get_mut(&kind.name()) else {
                continue;
            };
            if *n > SAME_KIND_PER_OBJECT {
                let note = format!(" (and {} more like it)", *n - SAME_KIND_PER_OBJECT);
                match kind {
                    FindingKind::Unopenable { format } => format.push_str(&note),
                    FindingKind::MalformedMime { detail } => detail.push_str(&note),
                    FindingKind::AmbiguousArchive { reason } => reason.push_str(&note),
                    _ => {}
                }
            }
            // Noted (or nothing to note): earlier ones of the kind get none.
            *n = 0;
        }
        for kind in kept {
            self.builtin(object, kind);
        }
    }

    /// A container we could not open: its outcome says how, the finding
    /// lets policy decide (`on_unopenable`).
    fn unopenable(&mut self, object: usize, outcome: Outcome, format: String) {
        self.objects[object].outcome = outcome;
        self.builtin(object, FindingKind::Unopenable { format });
    }

    /// Records a limit once per object and kind, and marks the object.
    fn limit(&mut self, object: usize, limit: LimitKind) {
        let kind = FindingKind::Limit { limit };
        if self
            .findings
            .iter()
            .any(|f| f.object == object && f.kind == kind)
        {
            return;
        }
        if matches!(
            self.objects[object].outcome,
            Outcome::Scanned | Outcome::Duplicate { .. }
        ) {
            self.objects[object].outcome = Outcome::Limit { limit };
        }
        self.builtin(object, kind);
    }
}

fn describe(kind: &FindingKind) -> String {
    match kind {
        FindingKind::Yara { rule, .. } => format!("YARA rule {rule} matched"),
        FindingKind::HashList { list, .. } => format!("hash on block list {list}"),
        FindingKind::TypeMismatch { declared, detected } => {
            format!("declared {declared} but the content is {detected}")
        }
        FindingKind::DisguisedExecutable { detected } => {
            format!("{detected} content presented as a document or image")
        }
        FindingKind::DoubleExtension => "a harmless-looking extension hides a dangerous one".into(),
        FindingKind::DeceptiveName { characters } => format!(
            "file name contains invisible or direction-changing characters ({})",
            characters.join(" ")
        ),
        FindingKind::DangerousExtension { extension } => {
            format!(".{extension} files run code when opened")
        }
        FindingKind::Encrypted => "encrypted content could not be inspected".into(),
        FindingKind::Decrypted { format, password } => {
            format!("{format} opened with the password {password:?} found in the message")
        }
        FindingKind::AmbiguousArchive { reason } => {
            format!("archive reads differently in different tools: {reason}")
        }
        FindingKind::Limit { limit } => format!(
            "inspection stopped at the {} limit: content was not fully inspected",
            limit.as_str()
        ),
        FindingKind::Unopenable { format } => format!("could not be opened: {format}"),
        FindingKind::MalformedMime { detail } => format!("malformed MIME: {detail}"),
    }
}
