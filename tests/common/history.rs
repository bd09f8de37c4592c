//! Histories of one campaign under concurrent writers and readers, and a
//! linearizability-style checker for them.
//!
//! Tasks record every operation they run (its inputs, its result, and when it
//! was invoked and when it completed, on one clock). The checker rebuilds the
//! committed states of the campaign from the writes alone, then asks of every
//! read whether one committed state explains all of its answers at once, whether
//! that state was still current recently enough for the path the read took, and
//! whether the same reader had already seen something newer.
//!
//! Why this model holds: within one incarnation of the campaign, audience writes
//! hold a lease, so the ones that took effect are totally ordered, and each says
//! which version it produced. Creation and deletion are done by a single task,
//! so incarnations are ordered by its own sequence.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// "Never superseded" and "no staleness bound".
pub const FOREVER: Duration = Duration::MAX;

/// Where a read's answer came from, as the response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Store,
}

/// The question a read asked. It decides how an absent campaign shows and
/// how old an answer from the store may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// Is one user in the campaign? An absent campaign is a 404.
    Member,
    /// Are these users in the campaign, all in one call? An absent campaign is a 404.
    Batch,
    /// Which campaigns is this user in? An absent campaign is simply not
    /// listed, and the store path reads an instance's catalog, which may lag.
    UserCampaigns,
}

impl ReadKind {
    fn absent_reads_as_empty(self) -> bool {
        self == ReadKind::UserCampaigns
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The campaign does not exist (404).
    Absent,
    /// One answer per probed user, in order.
    Members(Vec<bool>),
    /// No answer (a timeout, a 503): it constrains nothing.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Read {
    /// The task that ran it; reads of one reader must not go back in time.
    pub reader: String,
    pub kind: ReadKind,
    pub users: Arc<[u64]>,
    pub invoke: Duration,
    pub complete: Duration,
    pub answer: Answer,
    pub source: Source,
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create,
    Delete,
    Replace(Vec<u64>),
    Add(Vec<u64>),
    Remove(Vec<u64>),
}

impl Change {
    pub fn name(&self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Delete => "delete",
            Change::Replace(_) => "replace",
            Change::Add(_) => "add",
            Change::Remove(_) => "remove",
        }
    }

    fn is_lifecycle(&self) -> bool {
        matches!(self, Change::Create | Change::Delete)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The change was acknowledged. Audience writes report the version they
    /// left, how many IDs they changed (add and remove) and the new size.
    Done {
        version: Option<u64>,
        changed: Option<u64>,
        size: Option<u64>,
    },
    /// Refused with nothing changed (409 busy, 404 absent).
    NoEffect(String),
    /// Anything else: whether it took effect is unknown.
    Unknown(String),
}

#[derive(Debug, Clone)]
pub struct Write {
    pub writer: String,
    pub change: Change,
    pub invoke: Duration,
    pub complete: Duration,
    pub outcome: Outcome,
}

impl Write {
    /// A write that left a new audience version (an add or remove that
    /// changed nothing keeps the version it found).
    fn produced_version(&self) -> Option<u64> {
        match (&self.change, &self.outcome) {
            (
                Change::Replace(_) | Change::Add(_) | Change::Remove(_),
                Outcome::Done {
                    version: Some(v),
                    changed,
                    ..
                },
            ) if *changed != Some(0) || matches!(self.change, Change::Replace(_)) => Some(*v),
            _ => None,
        }
    }

    fn is_noop(&self) -> bool {
        matches!(
            (&self.change, &self.outcome),
            (
                Change::Add(_) | Change::Remove(_),
                Outcome::Done {
                    version: Some(_),
                    changed: Some(0),
                    ..
                }
            )
        )
    }
}

/// Collects operations from many tasks; timestamps are offsets from its creation.
pub struct Recorder {
    epoch: Instant,
    writes: Mutex<Vec<Write>>,
    reads: Mutex<Vec<Read>>,
    completed: AtomicUsize,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            epoch: Instant::now(),
            writes: Mutex::new(Vec::new()),
            reads: Mutex::new(Vec::new()),
            completed: AtomicUsize::new(0),
        })
    }

    /// Time since the recorder started: what `invoke` and `complete` hold.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub fn write(&self, write: Write) {
        self.writes.lock().expect("recorder poisoned").push(write);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self, read: Read) {
        self.reads.lock().expect("recorder poisoned").push(read);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Operations recorded so far, reads and writes.
    pub fn completed(&self) -> usize {
        self.completed.load(Ordering::Relaxed)
    }

    pub fn history(&self) -> History {
        History {
            writes: self.writes.lock().expect("recorder poisoned").clone(),
            reads: self.reads.lock().expect("recorder poisoned").clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct History {
    pub writes: Vec<Write>,
    pub reads: Vec<Read>,
}

/// How far behind the newest acknowledged write each kind of read may be.
#[derive(Debug, Clone, Copy)]
pub struct Allowances {
    /// Cached answers not flagged stale: the service's `--max-staleness`.
    pub cache: Duration,
    /// "Which campaigns is this user in?" from the store, which goes through
    /// an instance's catalog of campaigns, refreshed by announcement or poll.
    pub catalog: Duration,
}

impl Allowances {
    /// Store reads of one campaign answer from the live data: no allowance.
    /// Reads flagged stale admit it: no bound.
    pub fn for_read(&self, read: &Read) -> Duration {
        if read.stale {
            return FOREVER;
        }
        match (read.source, read.kind) {
            (Source::Cache, _) => self.cache,
            (Source::Store, ReadKind::UserCampaigns) => self.catalog,
            (Source::Store, _) => Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The writes themselves do not form a sequence of versions, or a
    /// write's reply disagrees with the state rebuilt before it.
    Model,
    /// No committed state gives all of the read's answers.
    MixedOrInvented,
    /// Only states superseded too long before the read explain it.
    Stale,
    /// The reader had already seen a newer state.
    WentBack,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::MixedOrInvented => "mixed or invented",
            Kind::Stale => "stale",
            Kind::WentBack => "went back",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub kind: Kind,
    /// The read at fault, if it is a read.
    pub read: Option<usize>,
    pub summary: String,
    /// The smallest piece of history that shows it.
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub states: usize,
    pub incarnations: usize,
    pub reads_checked: usize,
    pub reads_failed: usize,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn count(&self, kind: Kind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }

    /// Counts by kind, the first violation of each kind in full, and the
    /// summaries of a few more.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let kinds = [
            Kind::Model,
            Kind::MixedOrInvented,
            Kind::Stale,
            Kind::WentBack,
        ];
        let counts: Vec<String> = kinds
            .iter()
            .map(|k| format!("{}: {}", k.name(), self.count(*k)))
            .collect();
        let _ = writeln!(
            out,
            "{} violation(s) in {} checked reads over {} states ({})",
            self.violations.len(),
            self.reads_checked,
            self.states,
            counts.join(", ")
        );
        for kind in kinds {
            let mut of_kind = self.violations.iter().filter(|v| v.kind == kind);
            let Some(first) = of_kind.next() else {
                continue;
            };
            let _ = writeln!(out, "\n=== {} ===", kind.name());
            let _ = writeln!(out, "{}", first.summary);
            out.push_str(&first.detail);
            let mut listed = 0;
            let mut more = 0;
            for v in of_kind {
                if !v.detail.is_empty() {
                    let _ = writeln!(out, "{}", v.summary);
                    out.push_str(&v.detail);
                } else if listed < LISTED_PER_KIND {
                    if listed == 0 {
                        let _ = writeln!(out, "--- more {}:", kind.name());
                    }
                    listed += 1;
                    let _ = writeln!(out, "  {}", v.summary);
                } else {
                    more += 1;
                }
            }
            if more > 0 {
                let _ = writeln!(out, "  ... and {more} more");
            }
        }
        out
    }
}

/// Every user ID the history mentions, numbered, so a state is a small bitset.
struct Universe {
    index: HashMap<u64, usize>,
    words: usize,
}

type Bits = Vec<u64>;

impl Universe {
    fn new(history: &History) -> Universe {
        let mut index = HashMap::new();
        let mut add = |id: u64| {
            let next = index.len();
            index.entry(id).or_insert(next);
        };
        for w in &history.writes {
            if let Change::Replace(ids) | Change::Add(ids) | Change::Remove(ids) = &w.change {
                ids.iter().copied().for_each(&mut add);
            }
        }
        for r in &history.reads {
            r.users.iter().copied().for_each(&mut add);
        }
        let words = index.len().div_ceil(64);
        Universe { index, words }
    }

    fn empty(&self) -> Bits {
        vec![0; self.words]
    }

    fn of(&self, ids: &[u64]) -> Bits {
        let mut bits = self.empty();
        for id in ids {
            let i = self.index[id];
            bits[i / 64] |= 1 << (i % 64);
        }
        bits
    }

    fn contains(&self, bits: &Bits, id: u64) -> bool {
        let i = self.index[&id];
        bits[i / 64] >> (i % 64) & 1 == 1
    }
}

fn count(bits: &Bits) -> u64 {
    bits.iter().map(|w| u64::from(w.count_ones())).sum()
}

/// One committed state of the campaign.
struct State {
    /// `None` while the campaign does not exist.
    incarnation: Option<usize>,
    version: u64,
    members: Option<Bits>,
    /// Invocation of the write that produced it: the earliest it can show.
    begin: Duration,
    /// Completion of the write that replaced it: after that, no read may
    /// see it (short of an allowance).
    superseded: Duration,
}

impl State {
    fn label(&self) -> String {
        match self.incarnation {
            None => "absent".to_string(),
            Some(k) => format!("incarnation {k} v{}", self.version),
        }
    }
}

/// The rebuilt sequence of states, plus where each write landed.
struct Model {
    states: Vec<State>,
    /// For each write that produced a state, that state's index.
    produced: HashMap<usize, usize>,
    incarnations: usize,
}

struct Inc {
    create: usize,
    delete: Option<usize>,
}

fn model_violation(summary: String) -> Violation {
    Violation {
        kind: Kind::Model,
        read: None,
        summary,
        detail: String::new(),
    }
}

fn rebuild(history: &History, universe: &Universe, out: &mut Vec<Violation>) -> Option<Model> {
    let w = &history.writes;
    for (i, write) in w.iter().enumerate() {
        if let Outcome::Unknown(why) = &write.outcome {
            out.push(model_violation(format!(
                "write #{i} ({} by {}) ended unexpectedly: {why}",
                write.change.name(),
                write.writer
            )));
        }
    }

    // Incarnations, in the lifecycle task's own order.
    let mut lifecycle: Vec<usize> = (0..w.len())
        .filter(|&i| w[i].change.is_lifecycle() && matches!(w[i].outcome, Outcome::Done { .. }))
        .collect();
    lifecycle.sort_by_key(|&i| w[i].invoke);
    let mut incs: Vec<Inc> = Vec::new();
    for i in lifecycle {
        let present = incs.last().is_some_and(|inc| inc.delete.is_none());
        match (&w[i].change, present) {
            (Change::Create, false) => incs.push(Inc {
                create: i,
                delete: None,
            }),
            (Change::Delete, true) => incs.last_mut().expect("present").delete = Some(i),
            (change, _) => out.push(model_violation(format!(
                "write #{i}: a {} succeeded while the campaign was {}",
                change.name(),
                if present { "present" } else { "absent" }
            ))),
        }
    }
    let window = |inc: &Inc| {
        (
            w[inc.create].invoke,
            inc.delete.map_or(FOREVER, |d| w[d].complete),
        )
    };
    let overlapping = |i: usize| -> Vec<usize> {
        (0..incs.len())
            .filter(|&k| {
                let (start, end) = window(&incs[k]);
                w[i].invoke <= end && w[i].complete >= start
            })
            .collect()
    };

    // Each write that produced a version goes to the incarnation that was
    // live while it ran; when two were, its version says which.
    let mut slots: Vec<BTreeMap<u64, Vec<usize>>> = incs.iter().map(|_| BTreeMap::new()).collect();
    let mut pending = Vec::new();
    for (i, write) in w.iter().enumerate() {
        let Some(version) = write.produced_version() else {
            continue;
        };
        match overlapping(i).as_slice() {
            [] => out.push(model_violation(format!(
                "write #{i} ({} by {}) committed version {version} while the campaign did not exist",
                write.change.name(),
                write.writer
            ))),
            [k] => slots[*k].entry(version).or_default().push(i),
            _ => pending.push(i),
        }
    }
    for i in pending {
        let version = w[i].produced_version().expect("produced");
        let candidates = overlapping(i);
        let free: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&k| !slots[k].contains_key(&version))
            .collect();
        // Prefer the incarnation whose sequence the version continues: one
        // already holding the next version, then one holding the previous.
        // Two empty incarnations around a delete stay ambiguous; the first is
        // taken, which is right when the write committed before the delete.
        let fits = |k: usize, v: u64| v == 0 || slots[k].contains_key(&v);
        let k = free
            .iter()
            .copied()
            .find(|&k| fits(k, version + 1))
            .or_else(|| {
                free.iter()
                    .copied()
                    .find(|&k| version.checked_sub(1).is_none_or(|p| fits(k, p)))
            })
            .or_else(|| free.first().copied())
            .unwrap_or(candidates[0]);
        slots[k].entry(version).or_default().push(i);
    }
    for (k, slot) in slots.iter().enumerate() {
        let mut expected = 1;
        for (&version, writes) in slot {
            if version != expected {
                out.push(model_violation(format!(
                    "incarnation {k}: no acknowledged write produced version {expected} (next is {version})"
                )));
            }
            if writes.len() > 1 {
                let list: Vec<String> = writes
                    .iter()
                    .map(|&i| format!("#{i} {} by {}", w[i].change.name(), w[i].writer))
                    .collect();
                out.push(model_violation(format!(
                    "incarnation {k}: version {version} was acknowledged to {} writes: {}",
                    writes.len(),
                    list.join(", ")
                )));
            }
            expected = version + 1;
        }
    }
    if out.iter().any(|v| v.kind == Kind::Model) {
        return None;
    }

    // Replay.
    let mut states = vec![State {
        incarnation: None,
        version: 0,
        members: None,
        begin: Duration::ZERO,
        superseded: incs.first().map_or(FOREVER, |inc| w[inc.create].complete),
    }];
    let mut produced = HashMap::new();
    for (k, inc) in incs.iter().enumerate() {
        let order: Vec<usize> = slots[k].values().map(|ws| ws[0]).collect();
        let end = inc.delete.map_or(FOREVER, |d| w[d].complete);
        let superseded_by = |pos: usize| order.get(pos).map_or(end, |&i| w[i].complete);
        let mut current = universe.empty();
        states.push(State {
            incarnation: Some(k),
            version: 0,
            members: Some(current.clone()),
            begin: w[inc.create].invoke,
            superseded: superseded_by(0),
        });
        produced.insert(inc.create, states.len() - 1);
        for (pos, &i) in order.iter().enumerate() {
            let (next, changed) = match &w[i].change {
                Change::Replace(ids) => {
                    let next = universe.of(ids);
                    let n = count(&next);
                    (next, n)
                }
                Change::Add(ids) => {
                    let delta = universe.of(ids);
                    let next: Bits = current.iter().zip(&delta).map(|(c, d)| c | d).collect();
                    let n = count(&next) - count(&current);
                    (next, n)
                }
                Change::Remove(ids) => {
                    let delta = universe.of(ids);
                    let next: Bits = current.iter().zip(&delta).map(|(c, d)| c & !d).collect();
                    let n = count(&current) - count(&next);
                    (next, n)
                }
                Change::Create | Change::Delete => unreachable!("audience writes only"),
            };
            if let Outcome::Done {
                version,
                changed: reported,
                size,
            } = &w[i].outcome
            {
                let v = version.unwrap_or(0);
                let is_replace = matches!(w[i].change, Change::Replace(_));
                if size.is_some_and(|s| s != count(&next)) {
                    out.push(model_violation(format!(
                        "write #{i} ({} by {}) reported size {} at incarnation {k} v{v}, but the writes before it leave {}",
                        w[i].change.name(),
                        w[i].writer,
                        size.unwrap_or(0),
                        count(&next)
                    )));
                }
                if !is_replace && reported.is_some_and(|c| c != changed) {
                    out.push(model_violation(format!(
                        "write #{i} ({} by {}) reported {} IDs changed at incarnation {k} v{v}, but the writes before it make it {changed}",
                        w[i].change.name(),
                        w[i].writer,
                        reported.unwrap_or(0)
                    )));
                }
            }
            if pos > 0 && w[i].complete < w[order[pos - 1]].invoke {
                out.push(model_violation(format!(
                    "incarnation {k}: write #{i} (v{}) completed before write #{} (v{}) was invoked",
                    pos + 1,
                    order[pos - 1],
                    pos
                )));
            }
            current = next;
            states.push(State {
                incarnation: Some(k),
                version: pos as u64 + 1,
                members: Some(current.clone()),
                begin: w[i].invoke,
                superseded: superseded_by(pos + 1),
            });
            produced.insert(i, states.len() - 1);
        }
        if let Some(d) = inc.delete {
            states.push(State {
                incarnation: None,
                version: 0,
                members: None,
                begin: w[d].invoke,
                superseded: incs.get(k + 1).map_or(FOREVER, |n| w[n.create].complete),
            });
            produced.insert(d, states.len() - 1);
        }
    }

    // An add or remove that changed nothing claims something about the
    // state it found; check it where its incarnation is certain.
    for (i, write) in w.iter().enumerate() {
        if !write.is_noop() {
            continue;
        }
        let Outcome::Done {
            version: Some(version),
            ..
        } = write.outcome
        else {
            continue;
        };
        let [k] = overlapping(i)[..] else { continue };
        let Some(state) = states
            .iter()
            .find(|s| s.incarnation == Some(k) && s.version == version)
        else {
            out.push(model_violation(format!(
                "write #{i} ({} by {}) changed nothing at incarnation {k} v{version}, a version no write produced",
                write.change.name(),
                write.writer
            )));
            continue;
        };
        let members = state.members.as_ref().expect("present");
        let (ids, adding) = match &write.change {
            Change::Add(ids) => (ids, true),
            Change::Remove(ids) => (ids, false),
            _ => unreachable!("no-ops are adds or removes"),
        };
        if ids
            .iter()
            .any(|&id| universe.contains(members, id) != adding)
        {
            out.push(model_violation(format!(
                "write #{i} ({} {} by {}) changed nothing at incarnation {k} v{version}, which holds {}",
                write.change.name(),
                fmt_ids(ids.iter().copied()),
                write.writer,
                fmt_ids(
                    ids.iter()
                        .copied()
                        .filter(|&id| universe.contains(members, id))
                )
            )));
        }
    }
    if out.iter().any(|v| v.kind == Kind::Model) {
        return None;
    }
    Some(Model {
        states,
        produced,
        incarnations: incs.len(),
    })
}

/// A state seen through a read's probed users: `None` when the campaign is
/// absent and the read can tell.
type Key = Option<Vec<bool>>;

/// The states (by index) giving each answer to one set of probed users.
type Candidates = HashMap<Key, Vec<usize>>;

fn project(state: &State, users: &[u64], universe: &Universe, absent_as_empty: bool) -> Key {
    match &state.members {
        Some(bits) => Some(users.iter().map(|&u| universe.contains(bits, u)).collect()),
        None if absent_as_empty => Some(vec![false; users.len()]),
        None => None,
    }
}

fn answer_key(read: &Read) -> Option<Key> {
    match &read.answer {
        Answer::Members(m) => Some(Some(m.clone())),
        Answer::Absent if read.kind.absent_reads_as_empty() => {
            Some(Some(vec![false; read.users.len()]))
        }
        Answer::Absent => Some(None),
        Answer::Failed(_) => None,
    }
}

/// Checks every read of `history` against the states its writes committed.
pub fn check(history: &History, allowances: &Allowances) -> Report {
    let universe = Universe::new(history);
    let mut violations = Vec::new();
    let Some(model) = rebuild(history, &universe, &mut violations) else {
        return Report {
            violations,
            ..Report::default()
        };
    };
    let states = &model.states;

    // Candidates by answer, computed once per distinct set of probed users.
    let mut projections: HashMap<(&[u64], bool), Candidates> = HashMap::new();
    for r in &history.reads {
        let absent_as_empty = r.kind.absent_reads_as_empty();
        projections
            .entry((&r.users[..], absent_as_empty))
            .or_insert_with(|| {
                let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
                for (s, state) in states.iter().enumerate() {
                    by_key
                        .entry(project(state, &r.users, &universe, absent_as_empty))
                        .or_default()
                        .push(s);
                }
                by_key
            });
    }

    let mut report = Report {
        states: states.len(),
        incarnations: model.incarnations,
        ..Report::default()
    };
    // Acceptable states per read, for the monotonicity pass.
    let mut acceptable: Vec<Option<Vec<usize>>> = vec![None; history.reads.len()];
    let ctx = Render {
        history,
        universe: &universe,
        model: &model,
        allowances,
    };
    let mut detailed = HashMap::new();
    for (ri, r) in history.reads.iter().enumerate() {
        let Some(key) = answer_key(r) else {
            report.reads_failed += 1;
            continue;
        };
        report.reads_checked += 1;
        if key.as_ref().is_some_and(|k| k.len() != r.users.len()) {
            violations.push(ctx.read_violation(
                Kind::MixedOrInvented,
                ri,
                format!(
                    "{} gave {} answers for {} users",
                    ctx.read_title(ri),
                    key.as_ref().map_or(0, Vec::len),
                    r.users.len()
                ),
                None,
                &mut detailed,
            ));
            continue;
        }
        let by_key = &projections[&(&r.users[..], r.kind.absent_reads_as_empty())];
        let Some(candidates) = by_key.get(&key) else {
            violations.push(ctx.read_violation(
                Kind::MixedOrInvented,
                ri,
                format!(
                    "{} answered {}, which no committed state gives",
                    ctx.read_title(ri),
                    ctx.answer(r)
                ),
                None,
                &mut detailed,
            ));
            continue;
        };
        let allowance = allowances.for_read(r);
        let oldest = r.invoke.saturating_sub(allowance);
        let fresh: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&s| states[s].begin <= r.complete && states[s].superseded >= oldest)
            .collect();
        if fresh.is_empty() {
            let newest = candidates
                .iter()
                .copied()
                .filter(|&s| states[s].begin <= r.complete)
                .max();
            let why = match newest {
                Some(s) => format!(
                    "the newest state giving it, {}, was superseded at {}",
                    states[s].label(),
                    ms(states[s].superseded)
                ),
                None => "every state giving it began after the read completed".to_string(),
            };
            violations.push(ctx.read_violation(
                Kind::Stale,
                ri,
                format!(
                    "{} answered {}, but {why} (allowance {})",
                    ctx.read_title(ri),
                    ctx.answer(r),
                    fmt_allowance(allowance)
                ),
                None,
                &mut detailed,
            ));
            continue;
        }
        acceptable[ri] = Some(fresh);
    }

    // Monotonicity: per reader, the earliest state still possible never
    // moves back.
    let mut order: Vec<usize> = (0..history.reads.len())
        .filter(|&i| acceptable[i].is_some())
        .collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (&history.reads[a], &history.reads[b]);
        (&ra.reader, ra.invoke).cmp(&(&rb.reader, rb.invoke))
    });
    let mut floor: HashMap<&str, (usize, usize)> = HashMap::new();
    for ri in order {
        let r = &history.reads[ri];
        let fresh = acceptable[ri].as_ref().expect("filtered");
        let lowest = *fresh.iter().min().expect("non-empty");
        match floor.get(r.reader.as_str()).copied() {
            Some((bound, previous)) => match fresh.iter().copied().filter(|&s| s >= bound).min() {
                // Remember the read that raised the floor, the one a
                // violation is measured against.
                Some(s) if s > bound => {
                    floor.insert(&r.reader, (s, ri));
                }
                Some(_) => {}
                None => {
                    let newest = *fresh.iter().max().expect("non-empty");
                    violations.push(ctx.read_violation(
                        Kind::WentBack,
                        ri,
                        format!(
                            "{} answered {}, at best {}, after the same reader's read #{previous} had already seen {} or later",
                            ctx.read_title(ri),
                            ctx.answer(r),
                            states[newest].label(),
                            states[bound].label()
                        ),
                        Some((previous, bound)),
                        &mut detailed,
                    ));
                    floor.insert(&r.reader, (lowest, ri));
                }
            },
            None => {
                floor.insert(&r.reader, (lowest, ri));
            }
        }
    }
    violations.sort_by_key(|v| (v.kind, v.read));
    report.violations = violations;
    report
}

/// Formats a history around one read for a human.
struct Render<'a> {
    history: &'a History,
    universe: &'a Universe,
    model: &'a Model,
    allowances: &'a Allowances,
}

/// Violations of one kind shown in full; rendering one costs a pass over
/// every state, and the rest are usually more of the same.
const DETAILED_PER_KIND: usize = 3;
/// Further violations of one kind listed by their summary alone.
const LISTED_PER_KIND: usize = 8;
/// Writes this long before a read are shown with it, beyond its allowance.
const CONTEXT: Duration = Duration::from_secs(1);
/// Reads flagged stale have no bound; show this much history before them.
const UNBOUNDED_CONTEXT: Duration = Duration::from_secs(5);

impl Render<'_> {
    fn read_title(&self, ri: usize) -> String {
        let r = &self.history.reads[ri];
        let what = match (r.kind, &r.users[..]) {
            (ReadKind::Member, [u]) => format!("member check of user {u}"),
            (ReadKind::UserCampaigns, [u]) => format!("campaigns of user {u}"),
            (kind, users) => format!("{kind:?} of {} users", users.len()),
        };
        format!(
            "read #{ri} by {} ({what}, source {:?}{}, {}..{})",
            r.reader,
            r.source,
            if r.stale { ", stale" } else { "" },
            ms(r.invoke),
            ms(r.complete)
        )
    }

    fn answer(&self, r: &Read) -> String {
        match &r.answer {
            Answer::Absent => "absent (404)".to_string(),
            Answer::Failed(why) => format!("nothing ({why})"),
            Answer::Members(m) if r.users.len() == 1 => {
                let yes = if r.kind == ReadKind::UserCampaigns {
                    "listed"
                } else {
                    "member"
                };
                if m.first() == Some(&true) {
                    yes.to_string()
                } else {
                    format!("not {yes}")
                }
            }
            Answer::Members(m) => format!(
                "members {}",
                fmt_ids(
                    r.users
                        .iter()
                        .zip(m)
                        .filter(|(_, yes)| **yes)
                        .map(|(u, _)| *u)
                )
            ),
        }
    }

    /// A state's members among `users`.
    fn among(&self, state: &State, users: &[u64]) -> String {
        match &state.members {
            None => "absent".to_string(),
            Some(bits) => fmt_ids(
                users
                    .iter()
                    .copied()
                    .filter(|&u| self.universe.contains(bits, u)),
            ),
        }
    }

    fn state_line(&self, s: usize, users: &[u64]) -> String {
        let state = &self.model.states[s];
        format!(
            "{} [begin {}, superseded {}]: {}",
            state.label(),
            ms(state.begin),
            ms_or_never(state.superseded),
            self.among(state, users)
        )
    }

    fn read_violation(
        &self,
        kind: Kind,
        ri: usize,
        summary: String,
        previous: Option<(usize, usize)>,
        detailed: &mut HashMap<Kind, usize>,
    ) -> Violation {
        let shown = detailed.entry(kind).or_insert(0);
        *shown += 1;
        if *shown > DETAILED_PER_KIND {
            return Violation {
                kind,
                read: Some(ri),
                summary,
                detail: String::new(),
            };
        }
        let r = &self.history.reads[ri];
        let states = &self.model.states;
        let users = &r.users[..];
        let mut d = String::new();
        let _ = writeln!(d, "  read:      {}", self.read_title(ri));
        let _ = writeln!(d, "  probed:    {}", fmt_ids(users.iter().copied()));
        let _ = writeln!(d, "  answered:  {}", self.answer(r));
        if let Some((pi, bound)) = previous {
            let p = &self.history.reads[pi];
            let _ = writeln!(d, "  before it: {}", self.read_title(pi));
            let _ = writeln!(d, "             answered {}", self.answer(p));
            let _ = writeln!(
                d,
                "             so this reader was at {} or later",
                states[bound].label()
            );
        }
        let allowance = self.allowances.for_read(r);
        let oldest = r.invoke.saturating_sub(allowance);
        // Where the history worth showing starts: the newest state that gives
        // the answer, the state the reader had reached, the states current
        // during the read, whichever began first.
        let mut relevant: Vec<Duration> = Vec::new();
        let current: Vec<usize> = (0..states.len())
            .filter(|&s| states[s].begin <= r.complete && states[s].superseded >= oldest)
            .collect();
        let _ = writeln!(
            d,
            "  states current during it (allowance {}): {}",
            fmt_allowance(allowance),
            current.len()
        );
        for &s in current.iter().rev().take(6).rev() {
            let _ = writeln!(d, "    {}", self.state_line(s, users));
        }
        relevant.extend(current.iter().rev().take(6).map(|&s| states[s].begin));
        if let Some((_, bound)) = previous {
            relevant.push(states[bound].begin);
        }
        if let Some(Some(key)) = answer_key(r) {
            let matching: Vec<usize> = (0..states.len())
                .filter(|&s| {
                    project(
                        &states[s],
                        users,
                        self.universe,
                        r.kind.absent_reads_as_empty(),
                    )
                    .as_ref()
                        == Some(&key)
                })
                .collect();
            // The matching states nearest the read in time say the most.
            let near: Vec<usize> = {
                let mut by_distance = matching.clone();
                by_distance.sort_by_key(|&s| {
                    let st = &states[s];
                    if st.superseded < r.invoke {
                        r.invoke - st.superseded
                    } else if st.begin > r.complete {
                        st.begin - r.complete
                    } else {
                        Duration::ZERO
                    }
                });
                by_distance.truncate(4);
                by_distance.sort_unstable();
                by_distance
            };
            let _ = writeln!(
                d,
                "  states giving that answer: {} of {}; nearest in time:",
                matching.len(),
                states.len()
            );
            for &s in &near {
                let _ = writeln!(d, "    {}", self.state_line(s, users));
            }
            if let Some(&newest) = matching
                .iter()
                .filter(|&&s| states[s].begin <= r.complete)
                .max()
            {
                relevant.push(states[newest].begin);
            }
        }
        let window = r
            .invoke
            .saturating_sub(self.allowance_shown(r))
            .saturating_sub(CONTEXT);
        let from = relevant.into_iter().min().map_or(window, |t| t.max(window));
        let _ = writeln!(
            d,
            "  writes overlapping [{}, {}] (effect and resulting state over the probed users){}:",
            ms(from),
            ms(r.complete),
            if from > window {
                format!(
                    "; those between {} and {} precede every state that matters here and are left out",
                    ms(window),
                    ms(from)
                )
            } else {
                String::new()
            }
        );
        let mut skipped = 0;
        for (i, w) in self.history.writes.iter().enumerate() {
            if w.complete < from || w.invoke > r.complete {
                continue;
            }
            let Some(&s) = self.model.produced.get(&i) else {
                skipped += 1;
                continue;
            };
            let state = &states[s];
            let before = s.checked_sub(1).map(|p| &states[p]);
            let effect = match (&w.change, before.and_then(|b| b.members.as_ref())) {
                (Change::Create | Change::Delete, _) => String::new(),
                (_, Some(old)) => {
                    let new = state.members.as_ref().expect("present");
                    let added: Vec<u64> = users
                        .iter()
                        .copied()
                        .filter(|&u| {
                            self.universe.contains(new, u) && !self.universe.contains(old, u)
                        })
                        .collect();
                    let removed: Vec<u64> = users
                        .iter()
                        .copied()
                        .filter(|&u| {
                            !self.universe.contains(new, u) && self.universe.contains(old, u)
                        })
                        .collect();
                    format!(
                        " +{} -{}",
                        fmt_ids(added.into_iter()),
                        fmt_ids(removed.into_iter())
                    )
                }
                (_, None) => String::new(),
            };
            let _ = writeln!(
                d,
                "    #{i} [{}..{}] {} {}{effect} -> {}",
                ms(w.invoke),
                ms(w.complete),
                w.writer,
                w.change.name(),
                self.state_line(s, users)
            );
        }
        if skipped > 0 {
            let _ = writeln!(
                d,
                "    ({skipped} more in that span changed nothing: refused or no-op)"
            );
        }
        Violation {
            kind,
            read: Some(ri),
            summary,
            detail: d,
        }
    }

    fn allowance_shown(&self, r: &Read) -> Duration {
        let allowance = self.allowances.for_read(r);
        if allowance == FOREVER {
            UNBOUNDED_CONTEXT
        } else {
            allowance
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

fn ms_or_never(d: Duration) -> String {
    if d == FOREVER {
        "never".to_string()
    } else {
        ms(d)
    }
}

fn fmt_allowance(d: Duration) -> String {
    if d == FOREVER {
        "unbounded".to_string()
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `{0, 3, 5-7}`: sorted, runs collapsed, so a thousand fillers take one range.
pub fn fmt_ids(ids: impl Iterator<Item = u64>) -> String {
    let mut ids: Vec<u64> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", ids[i], ids[j])
        } else {
            ids[i].to_string()
        });
        i = j + 1;
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    const ALLOW: Allowances = Allowances {
        cache: Duration::from_millis(2_000),
        catalog: Duration::from_millis(3_000),
    };

    fn write(change: Change, invoke: u64, complete: u64, outcome: Outcome) -> Write {
        Write {
            writer: "w".into(),
            change,
            invoke: t(invoke),
            complete: t(complete),
            outcome,
        }
    }

    fn done(version: u64, changed: Option<u64>) -> Outcome {
        Outcome::Done {
            version: Some(version),
            changed,
            size: None,
        }
    }

    fn lifecycle_done() -> Outcome {
        Outcome::Done {
            version: None,
            changed: None,
            size: None,
        }
    }

    fn read(
        reader: &str,
        kind: ReadKind,
        users: &[u64],
        (invoke, complete): (u64, u64),
        answer: Answer,
        source: Source,
    ) -> Read {
        Read {
            reader: reader.into(),
            kind,
            users: users.into(),
            invoke: t(invoke),
            complete: t(complete),
            answer,
            source,
            stale: false,
        }
    }

    fn yes(v: &[bool]) -> Answer {
        Answer::Members(v.to_vec())
    }

    /// create at 0-1; v1 = {1, 2} at 10-20; v2 = {3, 4} at 30-40; v3 = v2 - {3} at 50-60.
    fn writes() -> Vec<Write> {
        vec![
            write(Change::Create, 0, 1, lifecycle_done()),
            write(Change::Replace(vec![1, 2]), 10, 20, done(1, None)),
            write(Change::Replace(vec![3, 4]), 30, 40, done(2, None)),
            write(
                Change::Add(vec![9]),
                32,
                33,
                Outcome::NoEffect("409 busy".into()),
            ),
            write(Change::Remove(vec![3]), 50, 60, done(3, Some(1))),
            write(Change::Remove(vec![1]), 61, 62, done(3, Some(0))),
        ]
    }

    fn run(reads: Vec<Read>) -> Report {
        check(
            &History {
                writes: writes(),
                reads,
            },
            &ALLOW,
        )
    }

    fn kinds(report: &Report) -> Vec<Kind> {
        report.violations.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_consistent_history_passes() {
        let report = run(vec![
            // Before any audience: empty.
            read(
                "a",
                ReadKind::Batch,
                &[1, 3],
                (2, 3),
                yes(&[false, false]),
                Source::Store,
            ),
            // Concurrent with v1's write: either answer is fine.
            read(
                "a",
                ReadKind::Member,
                &[1],
                (15, 16),
                yes(&[true]),
                Source::Store,
            ),
            read(
                "a",
                ReadKind::Batch,
                &[1, 3],
                (25, 26),
                yes(&[true, false]),
                Source::Store,
            ),
            read(
                "a",
                ReadKind::Batch,
                &[1, 3, 4],
                (70, 71),
                yes(&[false, false, true]),
                Source::Store,
            ),
            // A cache may lag within its bound.
            read(
                "b",
                ReadKind::Member,
                &[3],
                (45, 46),
                yes(&[true]),
                Source::Cache,
            ),
            read(
                "b",
                ReadKind::Member,
                &[1],
                (100, 101),
                yes(&[false]),
                Source::Cache,
            ),
            read(
                "c",
                ReadKind::UserCampaigns,
                &[4],
                (65, 66),
                yes(&[true]),
                Source::Store,
            ),
        ]);
        assert!(report.violations.is_empty(), "{}", report.render());
        assert_eq!(report.reads_checked, 7);
        assert_eq!(report.states, 5, "absent, v0, v1, v2, v3");
    }

    #[test]
    fn a_mixed_batch_is_rejected() {
        // 1 only in v1, 3 only in v2 (and not v3): no state holds both.
        let report = run(vec![read(
            "a",
            ReadKind::Batch,
            &[1, 3],
            (25, 45),
            yes(&[true, true]),
            Source::Store,
        )]);
        assert_eq!(
            kinds(&report),
            [Kind::MixedOrInvented],
            "{}",
            report.render()
        );
    }

    #[test]
    fn an_invented_member_is_rejected() {
        let report = run(vec![read(
            "a",
            ReadKind::Member,
            &[9],
            (70, 71),
            yes(&[true]),
            Source::Cache,
        )]);
        assert_eq!(
            kinds(&report),
            [Kind::MixedOrInvented],
            "{}",
            report.render()
        );
    }

    #[test]
    fn a_read_older_than_an_acknowledged_write_is_rejected() {
        // v1 (1 a member) was superseded at 40; a store read invoked at 41
        // may not see it.
        let report = run(vec![read(
            "a",
            ReadKind::Member,
            &[1],
            (41, 42),
            yes(&[true]),
            Source::Store,
        )]);
        assert_eq!(kinds(&report), [Kind::Stale], "{}", report.render());
        let text = report.render();
        assert!(text.contains("superseded at 40.0ms"), "{text}");

        // The same answer from a cache within its bound, or flagged stale, is fine.
        let mut cached = read(
            "a",
            ReadKind::Member,
            &[1],
            (41, 42),
            yes(&[true]),
            Source::Cache,
        );
        assert!(run(vec![cached.clone()]).violations.is_empty());
        cached.invoke = t(2_041);
        cached.complete = t(2_042);
        assert_eq!(kinds(&run(vec![cached.clone()])), [Kind::Stale]);
        cached.stale = true;
        assert!(run(vec![cached]).violations.is_empty());
    }

    #[test]
    fn a_read_going_back_in_time_is_rejected() {
        // Both answers are within the cache's bound, but after seeing v2
        // the reader may not see v1 again.
        let report = run(vec![
            read(
                "b",
                ReadKind::Batch,
                &[1, 3],
                (45, 46),
                yes(&[false, true]),
                Source::Cache,
            ),
            read(
                "b",
                ReadKind::Batch,
                &[1, 3],
                (47, 48),
                yes(&[true, false]),
                Source::Cache,
            ),
            // Another reader is not bound by b's past.
            read(
                "c",
                ReadKind::Batch,
                &[1, 3],
                (47, 48),
                yes(&[true, false]),
                Source::Cache,
            ),
        ]);
        assert_eq!(kinds(&report), [Kind::WentBack], "{}", report.render());
        assert_eq!(report.violations[0].read, Some(1));
    }

    #[test]
    fn absence_is_a_state_of_its_own() {
        let mut writes = writes();
        writes.push(write(Change::Delete, 100, 110, lifecycle_done()));
        writes.push(write(Change::Create, 200, 210, lifecycle_done()));
        writes.push(write(Change::Add(vec![1]), 220, 230, done(1, Some(1))));
        let history = |reads| History {
            writes: writes.clone(),
            reads,
        };
        let ok = check(
            &history(vec![
                read(
                    "a",
                    ReadKind::Member,
                    &[4],
                    (105, 106),
                    Answer::Absent,
                    Source::Store,
                ),
                read(
                    "a",
                    ReadKind::Member,
                    &[4],
                    (150, 151),
                    Answer::Absent,
                    Source::Store,
                ),
                // Re-created empty, then 1 added.
                read(
                    "a",
                    ReadKind::Member,
                    &[4],
                    (215, 216),
                    yes(&[false]),
                    Source::Store,
                ),
                read(
                    "a",
                    ReadKind::Member,
                    &[1],
                    (240, 241),
                    yes(&[true]),
                    Source::Store,
                ),
                // Not listed: absent and empty look alike here.
                read(
                    "c",
                    ReadKind::UserCampaigns,
                    &[4],
                    (150, 151),
                    yes(&[false]),
                    Source::Store,
                ),
            ]),
            &ALLOW,
        );
        assert!(ok.violations.is_empty(), "{}", ok.render());
        assert_eq!(ok.incarnations, 2);

        let bad = check(
            &history(vec![
                // The old audience after the delete was acknowledged.
                read(
                    "a",
                    ReadKind::Member,
                    &[4],
                    (150, 151),
                    yes(&[true]),
                    Source::Store,
                ),
                // Absent after the re-creation was acknowledged.
                read(
                    "b",
                    ReadKind::Member,
                    &[4],
                    (250, 251),
                    Answer::Absent,
                    Source::Store,
                ),
                // An empty audience is not an absent campaign for a batch.
                read(
                    "d",
                    ReadKind::Batch,
                    &[1, 2],
                    (150, 151),
                    yes(&[false, false]),
                    Source::Store,
                ),
            ]),
            &ALLOW,
        );
        assert_eq!(
            kinds(&bad),
            [Kind::Stale, Kind::Stale, Kind::Stale],
            "{}",
            bad.render()
        );
    }

    #[test]
    fn writes_that_do_not_form_a_sequence_are_reported() {
        let mut gap = writes();
        // v3 lost: the remove at 50-60 now claims v4.
        gap[4].outcome = done(4, Some(1));
        gap.pop();
        let report = check(
            &History {
                writes: gap,
                reads: Vec::new(),
            },
            &ALLOW,
        );
        assert_eq!(kinds(&report), [Kind::Model], "{}", report.render());
        assert!(report.violations[0].summary.contains("version 3"));

        let mut twice = writes();
        twice[2].outcome = done(1, None);
        let report = check(
            &History {
                writes: twice,
                reads: Vec::new(),
            },
            &ALLOW,
        );
        assert!(report.count(Kind::Model) > 0, "{}", report.render());

        // A no-op remove of an ID the rebuilt state holds.
        let mut lying = writes();
        lying[5].change = Change::Remove(vec![4]);
        let report = check(
            &History {
                writes: lying,
                reads: Vec::new(),
            },
            &ALLOW,
        );
        assert_eq!(kinds(&report), [Kind::Model], "{}", report.render());
    }

    #[test]
    fn ids_print_as_runs() {
        assert_eq!(fmt_ids([5, 1, 2, 3, 9].into_iter()), "{1-3, 5, 9}");
        assert_eq!(fmt_ids(std::iter::empty()), "{}");
    }
}
