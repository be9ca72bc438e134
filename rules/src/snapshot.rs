//! The immutable in-memory rule index the workers read, and its lock-free publication.
//!
//! Layout: one table per rule type, each two parallel arrays indexed by slot: 4-byte hash
//! fingerprints (linear probing, load factor at most 3/4) and entries `{ rule_id, custom|state,
//! key }`. Keys are fixed-size arrays for the digests and the Team ID and a shared string for a
//! Signing ID, so a probe hashes the file's bytes directly and never allocates.
//!
//! With a million rules the tables are far larger than the caches, so a probe costs memory
//! accesses, not instructions. Both home addresses of a key follow from its hash alone, so a
//! lookup first computes every hash and loads, for each of the (up to) five tables, the home
//! fingerprint and the home entry — ten independent loads whose cache misses overlap — and only
//! then walks the precedence order. A miss is settled by the fingerprint array (small enough to
//! stay mostly in the last-level cache); a hit at its home slot, the common case, costs no
//! dependent access beyond that first round (a Signing ID hit one more, for its string).
//!
//! Custom messages and URLs are interned once per snapshot and handed to decisions as `Arc<str>`
//! clones, so a decision stays valid after the snapshot it came from has been replaced.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::cel::CelRule;
use crate::identity::{RuleIdentifiers, SigningIdRef};
use crate::model::{CdHash, Rule, RuleIdentifier, RuleState, RuleType, Sha256, SigningId, TeamId};

/// Most rules one snapshot holds. Slot indices are `u32`; at about 100 bytes a rule this bound is
/// also about 1.6 GiB of index, far above any real deployment (Santa starts culling transitive rules
/// at 500,000), so hitting it means a runaway sync rather than a legitimate rule set.
pub const SNAPSHOT_RULES_MAX: usize = 1 << 24;

/// Most distinct custom texts (message, URL, button) per snapshot: their index is packed into
/// 24 bits of a table entry, beside the 8-bit state.
pub const CUSTOM_TEXTS_MAX: usize = (1 << 24) - 1;

/// Smallest slot array (one cache line), so an empty table needs no special case.
const SLOTS_MIN: usize = 8;

/// The user-facing text attached to a rule, interned per snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CustomText {
    /// Message shown when the rule blocks.
    pub msg: Option<Arc<str>>,
    /// URL offered when the rule blocks.
    pub url: Option<Arc<str>>,
    /// Label for the block dialog's button.
    pub button: Option<Arc<str>>,
    /// A CEL rule's expression, compiled.
    pub cel: Option<Arc<CelRule>>,
}

#[derive(Clone, Copy, Debug)]
struct Meta {
    state: RuleState,
    /// Index into `Snapshot::customs`; 0 is "no custom text".
    custom: u32,
    rule_id: i64,
}

fn slots_for(rules: usize) -> usize {
    // Load factor at most 3/4: linear probing then ends within a cache line or two.
    (rules.saturating_mul(4) / 3 + 1)
        .next_power_of_two()
        .max(SLOTS_MIN)
}

/// One rule type's table: an array of 4-byte fingerprints, probed linearly, and a parallel array
/// of entries at the same positions. Both home addresses follow from the hash, so the lookup loads
/// the home fingerprint *and* the home entry at once: a miss is settled by the small fingerprint
/// array (which tends to stay in the last-level cache), and a hit at its home position — the
/// common case at this load factor — costs no second dependent access.
#[derive(Debug)]
struct Table<K> {
    /// Upper 32 bits of the key's hash with the lowest bit forced on; 0 is an empty slot.
    words: Vec<u32>,
    bodies: Vec<Body<K>>,
    len: usize,
}

// Copy where the key is Copy: cloning a table is then a memcpy (std specialises it).
#[derive(Clone, Copy, Debug)]
struct Body<K> {
    rule_id: i64,
    /// Custom-text index (upper 24 bits) and state (lower 8 bits).
    custom_state: u32,
    key: K,
}

/// A key, with a filler value for empty slots (never read: their word is 0).
trait SlotKey: Clone {
    const FILLER: Self;
}

impl SlotKey for CdHash {
    const FILLER: Self = CdHash([0; 20]);
}

impl SlotKey for Sha256 {
    const FILLER: Self = Sha256([0; 32]);
}

impl SlotKey for TeamId {
    const FILLER: Self = TeamId::SLOT_FILLER;
}

/// Signing IDs are shared strings; `None` fills empty slots without allocating.
impl SlotKey for Option<SigningId> {
    const FILLER: Self = None;
}

impl<K: Clone> Clone for Table<K> {
    fn clone(&self) -> Self {
        Table {
            words: self.words.clone(),
            bodies: self.bodies.clone(),
            len: self.len,
        }
    }
}

impl<K: SlotKey> Body<K> {
    const EMPTY: Body<K> = Body {
        rule_id: 0,
        custom_state: 0,
        key: K::FILLER,
    };
}

#[inline]
fn fingerprint(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

impl<K: SlotKey> Table<K> {
    fn with_capacity(n: usize) -> Self {
        let slots = slots_for(n);
        Table {
            words: vec![0; slots],
            bodies: vec![Body::EMPTY; slots],
            len: 0,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.words.len() - 1
    }

    /// Loads the home fingerprint and the home entry's first word, so that the cache misses of
    /// all tables (and of the likely hit) overlap.
    #[inline]
    fn home(&self, hash: u64) -> u64 {
        let i = hash as usize & self.mask();
        let word = self.words.get(i).copied().unwrap_or(0);
        let body = self.bodies.get(i).map_or(0, |b| b.custom_state);
        u64::from(word) | (u64::from(body) << 32)
    }

    #[inline]
    fn find_from(&self, hash: u64, eq: impl Fn(&K) -> bool) -> Option<(u32, Meta)> {
        let mask = self.mask();
        let fp = fingerprint(hash);
        let mut i = hash as usize & mask;
        for _ in 0..self.words.len() {
            let word = *self.words.get(i)?;
            if word == 0 {
                return None;
            }
            if word == fp {
                let body = self.bodies.get(i)?;
                if eq(&body.key) {
                    let state = RuleState::from_repr(body.custom_state as u8)?;
                    let meta = Meta {
                        state,
                        custom: body.custom_state >> 8,
                        rule_id: body.rule_id,
                    };
                    return Some((i as u32, meta));
                }
            }
            i = (i + 1) & mask;
        }
        None
    }

    fn key(&self, index: u32) -> Option<&K> {
        let i = index as usize;
        (self.words.get(i).copied().unwrap_or(0) != 0)
            .then(|| self.bodies.get(i).map(|b| &b.key))
            .flatten()
    }

    fn place(words: &mut [u32], bodies: &mut [Body<K>], hash: u64, body: Body<K>) {
        let mask = words.len() - 1;
        let mut i = hash as usize & mask;
        while words[i] != 0 {
            i = (i + 1) & mask;
        }
        words[i] = fingerprint(hash);
        bodies[i] = body;
    }

    /// Inserts or replaces. Returns true if the key was new.
    fn upsert(
        &mut self,
        hash: u64,
        key: K,
        meta: Meta,
        eq: impl Fn(&K, &K) -> bool,
        rehash: impl Fn(&K) -> u64,
    ) -> bool {
        let found = self.find_from(hash, |k| eq(k, &key));
        let body = Body {
            rule_id: meta.rule_id,
            custom_state: (meta.custom << 8) | u32::from(meta.state as u8),
            key,
        };
        if let Some((i, _)) = found {
            if let Some(b) = self.bodies.get_mut(i as usize) {
                *b = body;
            }
            return false;
        }
        self.len += 1;
        if slots_for(self.len) > self.words.len() {
            let slots = slots_for(self.len);
            let mut words = vec![0; slots];
            let mut bodies = vec![Body::EMPTY; slots];
            for (w, b) in self.words.iter().zip(&self.bodies) {
                if *w != 0 {
                    Self::place(&mut words, &mut bodies, rehash(&b.key), b.clone());
                }
            }
            self.words = words;
            self.bodies = bodies;
        }
        Self::place(&mut self.words, &mut self.bodies, hash, body);
        true
    }

    /// Deletes the key, if present, closing the gap by shifting later entries of the probe run
    /// back (no tombstones, so lookups stay as short as after a fresh build).
    fn remove(&mut self, hash: u64, eq: impl Fn(&K) -> bool, rehash: impl Fn(&K) -> u64) -> bool {
        let Some((found, _)) = self.find_from(hash, eq) else {
            return false;
        };
        let mask = self.mask();
        let mut hole = found as usize;
        let mut j = hole;
        // The load factor guarantees an empty slot, which ends the run.
        for _ in 0..self.words.len() {
            j = (j + 1) & mask;
            if self.words[j] == 0 {
                break;
            }
            // The entry at j may fill the hole if the hole lies on its probe path (between its
            // home slot and j, cyclically).
            let home = rehash(&self.bodies[j].key) as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.words[hole] = self.words[j];
                self.bodies.swap(hole, j);
                hole = j;
            }
        }
        self.words[hole] = 0;
        self.bodies[hole] = Body::EMPTY;
        self.len -= 1;
        true
    }

    fn heap_bytes(&self) -> usize {
        self.words.capacity() * std::mem::size_of::<u32>()
            + self.bodies.capacity() * std::mem::size_of::<Body<K>>()
    }
}

/// Counts describing a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Rules per type, in [`RuleType::ALL`] order.
    pub rules_by_type: [usize; 5],
    /// Distinct custom texts (message, URL, button) interned.
    pub custom_texts: usize,
    /// Bytes of heap the index holds (tables, entries, strings).
    pub heap_bytes: usize,
}

impl SnapshotStats {
    /// All rules.
    pub fn rules(&self) -> usize {
        self.rules_by_type.iter().sum()
    }
}

/// An immutable index of every rule, answering "which rule applies to these identifiers".
#[derive(Clone, Debug)]
pub struct Snapshot {
    generation: u64,
    hasher: foldhash::quality::RandomState,
    cdhash: Table<CdHash>,
    binary: Table<Sha256>,
    signing_id: Table<Option<SigningId>>,
    certificate: Table<Sha256>,
    team_id: Table<TeamId>,
    customs: Vec<CustomText>,
    signing_id_bytes: usize,
}

/// The rule a lookup found, borrowed from the snapshot.
#[derive(Clone, Copy, Debug)]
pub struct RuleMatch<'s> {
    snapshot: &'s Snapshot,
    rule_type: RuleType,
    index: u32,
    meta: Meta,
}

impl<'s> RuleMatch<'s> {
    /// The matched rule's type.
    pub fn rule_type(&self) -> RuleType {
        self.rule_type
    }

    /// The matched rule's state.
    pub fn state(&self) -> RuleState {
        self.meta.state
    }

    /// The sync server's id of the matched rule.
    pub fn rule_id(&self) -> i64 {
        self.meta.rule_id
    }

    /// The matched rule's custom message, URL and button label.
    pub fn custom(&self) -> &'s CustomText {
        self.snapshot
            .customs
            .get(self.meta.custom as usize)
            .unwrap_or(&EMPTY_CUSTOM)
    }

    /// The matched rule's identifier. Cheap: a copy of a digest or a reference-count increment.
    pub fn identifier(&self) -> Option<RuleIdentifier> {
        let s = self.snapshot;
        Some(match self.rule_type {
            RuleType::CdHash => RuleIdentifier::CdHash(*s.cdhash.key(self.index)?),
            RuleType::Binary => RuleIdentifier::Binary(*s.binary.key(self.index)?),
            RuleType::SigningId => {
                RuleIdentifier::SigningId(s.signing_id.key(self.index)?.clone()?)
            }
            RuleType::Certificate => RuleIdentifier::Certificate(*s.certificate.key(self.index)?),
            RuleType::TeamId => RuleIdentifier::TeamId(*s.team_id.key(self.index)?),
        })
    }
}

#[inline]
fn signing_id_eq(stored: &SigningId, probe: &SigningIdRef<'_>) -> bool {
    stored.prefix() == probe.prefix && stored.ident() == probe.ident
}

static EMPTY_CUSTOM: CustomText = CustomText {
    msg: None,
    url: None,
    button: None,
    cel: None,
};

impl Snapshot {
    /// A snapshot with no rules.
    pub fn empty(generation: u64) -> Snapshot {
        SnapshotBuilder::new(generation).build()
    }

    /// Builds a snapshot from rules; a later rule with the same type and identifier replaces an
    /// earlier one.
    pub fn from_rules<'r>(
        generation: u64,
        rules: impl IntoIterator<Item = &'r Rule>,
    ) -> Result<Snapshot, SnapshotError> {
        let mut b = SnapshotBuilder::new(generation);
        for r in rules {
            b.insert(r)?;
        }
        Ok(b.build())
    }

    /// A new snapshot: this one with `changes` applied in order (the same upserts and removals
    /// the store just committed), without reading the store. For a million rules this costs a
    /// copy of the tables, a fraction of a rebuild from SQLite. After a cleanup (`--clean`),
    /// rebuild from the store instead.
    pub fn with_changes(
        &self,
        generation: u64,
        changes: &[crate::model::RuleChange],
    ) -> Result<Snapshot, SnapshotError> {
        let mut b = SnapshotBuilder::from_snapshot(self, generation);
        for change in changes {
            match change {
                crate::model::RuleChange::Upsert(rule) => b.insert(rule)?,
                crate::model::RuleChange::Remove(id) => {
                    b.remove(id);
                }
            }
        }
        Ok(b.build())
    }

    /// True when it holds no rule.
    pub fn is_empty(&self) -> bool {
        self.cdhash.len == 0
            && self.binary.len == 0
            && self.signing_id.len == 0
            && self.certificate.len == 0
            && self.team_id.len == 0
    }

    /// The generation it was built with (the store's change counter); decisions carry it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    #[inline]
    fn hash_bytes(&self, bytes: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(bytes);
        h.finish()
    }

    #[inline]
    fn hash_signing_id(&self, prefix: &str, ident: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(prefix.as_bytes());
        h.write_u8(b':');
        h.write(ident.as_bytes());
        h.finish()
    }

    #[inline]
    fn found(&self, rule_type: RuleType, hit: Option<(u32, Meta)>) -> Option<RuleMatch<'_>> {
        hit.map(|(index, meta)| RuleMatch {
            snapshot: self,
            rule_type,
            index,
            meta,
        })
    }

    /// The highest-precedence rule over all of the given identifiers: CDHash > Binary > Signing ID
    /// > Certificate > Team ID > transitive Binary (Santa's `executionRuleForIdentifiers:`).
    ///
    /// A transitive Binary rule ranks below every configured type because it is not policy an
    /// operator wrote: a compiler happened to produce the file.
    #[inline]
    pub fn lookup(&self, ids: &RuleIdentifiers<'_>) -> Option<RuleMatch<'_>> {
        // Phase 1: hashes and home slots, no branches between the loads so they overlap.
        let h_cd = ids.cdhash.map(|k| self.hash_bytes(&k.0));
        let h_bin = ids.binary.map(|k| self.hash_bytes(&k.0));
        let h_sid = ids
            .signing_id
            .map(|s| self.hash_signing_id(s.prefix.as_str(), s.ident));
        let h_cert = ids.certificate.map(|k| self.hash_bytes(&k.0));
        let h_team = ids.team_id.map(|k| self.hash_bytes(k.as_bytes()));
        // black_box makes the loads happen here, before the branches below need them.
        std::hint::black_box([
            h_cd.map_or(0, |h| self.cdhash.home(h)),
            h_bin.map_or(0, |h| self.binary.home(h)),
            h_sid.map_or(0, |h| self.signing_id.home(h)),
            h_cert.map_or(0, |h| self.certificate.home(h)),
            h_team.map_or(0, |h| self.team_id.home(h)),
        ]);

        // Phase 2: precedence order.
        if let (Some(k), Some(h)) = (ids.cdhash, h_cd) {
            let hit = self.cdhash.find_from(h, |x| *x == k);
            if let Some(m) = self.found(RuleType::CdHash, hit) {
                return Some(m);
            }
        }
        let mut transitive = None;
        if let (Some(k), Some(h)) = (ids.binary, h_bin) {
            let hit = self.binary.find_from(h, |x| *x == k);
            match self.found(RuleType::Binary, hit) {
                Some(m) if m.state() != RuleState::AllowTransitive => return Some(m),
                other => transitive = other,
            }
        }
        if let (Some(sid), Some(h)) = (ids.signing_id, h_sid) {
            let hit = self
                .signing_id
                .find_from(h, |x| x.as_ref().is_some_and(|x| signing_id_eq(x, &sid)));
            if let Some(m) = self.found(RuleType::SigningId, hit) {
                return Some(m);
            }
        }
        if let (Some(k), Some(h)) = (ids.certificate, h_cert) {
            let hit = self.certificate.find_from(h, |x| *x == k);
            if let Some(m) = self.found(RuleType::Certificate, hit) {
                return Some(m);
            }
        }
        if let (Some(k), Some(h)) = (ids.team_id, h_team) {
            let hit = self.team_id.find_from(h, |x| *x == k);
            if let Some(m) = self.found(RuleType::TeamId, hit) {
                return Some(m);
            }
        }
        transitive
    }

    /// Counts and memory.
    pub fn stats(&self) -> SnapshotStats {
        let custom_bytes: usize = self
            .customs
            .iter()
            .map(|c| {
                [&c.msg, &c.url, &c.button]
                    .iter()
                    .filter_map(|s| s.as_ref().map(|s| s.len() + 16))
                    .sum::<usize>()
                    + c.cel.as_ref().map_or(0, |r| r.text().len() * 8)
            })
            .sum();
        SnapshotStats {
            rules_by_type: [
                self.cdhash.len,
                self.binary.len,
                self.signing_id.len,
                self.certificate.len,
                self.team_id.len,
            ],
            custom_texts: self.customs.len().saturating_sub(1),
            heap_bytes: self.cdhash.heap_bytes()
                + self.binary.heap_bytes()
                + self.signing_id.heap_bytes()
                + self.certificate.heap_bytes()
                + self.team_id.heap_bytes()
                + self.signing_id_bytes
                + self.customs.capacity() * std::mem::size_of::<CustomText>()
                + custom_bytes,
        }
    }
}

/// The snapshot could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// More rules than [`SNAPSHOT_RULES_MAX`].
    TooManyRules {
        /// The bound that was reached.
        max: usize,
    },
    /// More distinct custom texts than [`CUSTOM_TEXTS_MAX`].
    TooManyCustomTexts {
        /// The bound that was reached.
        max: usize,
    },
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::TooManyRules { max } => {
                write!(
                    f,
                    "more than {max} rules: refusing to build a rules snapshot"
                )
            }
            SnapshotError::TooManyCustomTexts { max } => write!(
                f,
                "more than {max} distinct custom messages: refusing to build a rules snapshot"
            ),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Hashes keys the way [`Snapshot::lookup`] does, for building.
struct KeyHasher(foldhash::quality::RandomState);

impl KeyHasher {
    fn bytes(&self, b: &[u8]) -> u64 {
        let mut h = self.0.build_hasher();
        h.write(b);
        h.finish()
    }

    fn sid(&self, sid: &Option<SigningId>) -> u64 {
        let mut h = self.0.build_hasher();
        if let Some(sid) = sid {
            h.write(sid.prefix().as_str().as_bytes());
            h.write_u8(b':');
            h.write(sid.ident().as_bytes());
        }
        h.finish()
    }
}

/// Accumulates rules into a [`Snapshot`].
#[derive(Debug)]
pub struct SnapshotBuilder {
    snapshot: Snapshot,
    custom_ids: HashMap<CustomText, u32>,
    /// Compiled expressions by text, so a rule set with one expression many times compiles it
    /// once.
    cels: HashMap<Arc<str>, Arc<CelRule>>,
    rules: usize,
}

fn opt_arc(s: &Option<String>) -> Option<Arc<str>> {
    s.as_deref().filter(|s| !s.is_empty()).map(Arc::from)
}

impl SnapshotBuilder {
    /// An empty builder.
    pub fn new(generation: u64) -> SnapshotBuilder {
        SnapshotBuilder::with_capacity(generation, [0; 5])
    }

    /// An empty builder sized for the given number of rules per type ([`RuleType::ALL`] order),
    /// which saves rehashing while a large rule set is loaded.
    pub fn with_capacity(generation: u64, per_type: [usize; 5]) -> SnapshotBuilder {
        let cap = |n: usize| n.min(SNAPSHOT_RULES_MAX);
        SnapshotBuilder {
            snapshot: Snapshot {
                generation,
                hasher: foldhash::quality::RandomState::default(),
                cdhash: Table::with_capacity(cap(per_type[0])),
                binary: Table::with_capacity(cap(per_type[1])),
                signing_id: Table::with_capacity(cap(per_type[2])),
                certificate: Table::with_capacity(cap(per_type[3])),
                team_id: Table::with_capacity(cap(per_type[4])),
                customs: vec![CustomText::default()],
                signing_id_bytes: 0,
            },
            custom_ids: HashMap::new(),
            cels: HashMap::new(),
            rules: 0,
        }
    }

    fn intern(&mut self, rule: &Rule) -> Result<u32, SnapshotError> {
        let cel = match (&rule.state, rule.cel_expr.as_deref()) {
            (RuleState::Cel, Some(text)) => Some(match self.cels.get(text) {
                Some(c) => Arc::clone(c),
                None => {
                    let c = Arc::new(CelRule::compile(text));
                    self.cels.insert(Arc::from(text), Arc::clone(&c));
                    c
                }
            }),
            _ => None,
        };
        let custom = CustomText {
            msg: opt_arc(&rule.custom_msg),
            url: opt_arc(&rule.custom_url),
            button: opt_arc(&rule.event_detail_button_text),
            cel,
        };
        if custom == CustomText::default() {
            return Ok(0);
        }
        if let Some(&i) = self.custom_ids.get(&custom) {
            return Ok(i);
        }
        let i = self.snapshot.customs.len();
        if i > CUSTOM_TEXTS_MAX {
            return Err(SnapshotError::TooManyCustomTexts {
                max: CUSTOM_TEXTS_MAX,
            });
        }
        self.snapshot.customs.push(custom.clone());
        self.custom_ids.insert(custom, i as u32);
        Ok(i as u32)
    }

    /// A builder that starts from an existing snapshot (same hash seed, same rules), for
    /// applying a batch of changes without reading the store again.
    pub fn from_snapshot(base: &Snapshot, generation: u64) -> SnapshotBuilder {
        let mut snapshot = base.clone();
        snapshot.generation = generation;
        let custom_ids = snapshot
            .customs
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, c)| (c.clone(), i as u32))
            .collect();
        let cels = snapshot
            .customs
            .iter()
            .filter_map(|c| c.cel.as_ref())
            .map(|c| (Arc::from(c.text()), Arc::clone(c)))
            .collect();
        let rules = snapshot.stats().rules();
        SnapshotBuilder {
            snapshot,
            custom_ids,
            cels,
            rules,
        }
    }

    /// Adds a rule, replacing one with the same type and identifier.
    pub fn insert(&mut self, rule: &Rule) -> Result<(), SnapshotError> {
        if self.rules >= SNAPSHOT_RULES_MAX {
            return Err(SnapshotError::TooManyRules {
                max: SNAPSHOT_RULES_MAX,
            });
        }
        let meta = Meta {
            state: rule.state,
            custom: self.intern(rule)?,
            rule_id: rule.rule_id,
        };
        let s = &mut self.snapshot;
        let kh = KeyHasher(s.hasher.clone());
        let added = match &rule.identifier {
            RuleIdentifier::CdHash(k) => {
                s.cdhash
                    .upsert(kh.bytes(&k.0), *k, meta, |a, b| a == b, |k| kh.bytes(&k.0))
            }
            RuleIdentifier::Binary(k) => {
                s.binary
                    .upsert(kh.bytes(&k.0), *k, meta, |a, b| a == b, |k| kh.bytes(&k.0))
            }
            RuleIdentifier::Certificate(k) => {
                s.certificate
                    .upsert(kh.bytes(&k.0), *k, meta, |a, b| a == b, |k| kh.bytes(&k.0))
            }
            RuleIdentifier::TeamId(k) => s.team_id.upsert(
                kh.bytes(k.as_bytes()),
                *k,
                meta,
                |a, b| a == b,
                |k| kh.bytes(k.as_bytes()),
            ),
            RuleIdentifier::SigningId(k) => {
                let key = Some(k.clone());
                let added =
                    s.signing_id
                        .upsert(kh.sid(&key), key, meta, |a, b| a == b, |k| kh.sid(k));
                if added {
                    s.signing_id_bytes += k.as_str().len() + 16;
                }
                added
            }
        };
        if added {
            self.rules += 1;
        }
        Ok(())
    }

    /// Removes the rule with this identifier (and type); returns whether there was one. Its
    /// custom text stays interned until the next full build.
    pub fn remove(&mut self, id: &RuleIdentifier) -> bool {
        let s = &mut self.snapshot;
        let kh = KeyHasher(s.hasher.clone());
        let removed = match id {
            RuleIdentifier::CdHash(k) => {
                s.cdhash
                    .remove(kh.bytes(&k.0), |x| x == k, |x| kh.bytes(&x.0))
            }
            RuleIdentifier::Binary(k) => {
                s.binary
                    .remove(kh.bytes(&k.0), |x| x == k, |x| kh.bytes(&x.0))
            }
            RuleIdentifier::Certificate(k) => {
                s.certificate
                    .remove(kh.bytes(&k.0), |x| x == k, |x| kh.bytes(&x.0))
            }
            RuleIdentifier::TeamId(k) => s.team_id.remove(
                kh.bytes(k.as_bytes()),
                |x| x == k,
                |x| kh.bytes(x.as_bytes()),
            ),
            RuleIdentifier::SigningId(k) => {
                let key = Some(k.clone());
                let removed = s
                    .signing_id
                    .remove(kh.sid(&key), |x| *x == key, |x| kh.sid(x));
                if removed {
                    s.signing_id_bytes = s.signing_id_bytes.saturating_sub(k.as_str().len() + 16);
                }
                removed
            }
        };
        if removed {
            self.rules -= 1;
        }
        removed
    }

    /// Finishes the snapshot.
    pub fn build(self) -> Snapshot {
        let mut s = self.snapshot;
        s.customs.shrink_to_fit();
        s
    }
}

/// Where the current snapshot is published. Readers `load` without locking (arc-swap); the
/// control thread `publish`es a new one atomically.
#[derive(Debug)]
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
}

impl SnapshotCell {
    /// Publishes `initial`.
    pub fn new(initial: Snapshot) -> SnapshotCell {
        SnapshotCell {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// The current snapshot, for the duration of one decision. Lock-free and allocation-free.
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, for holding longer.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot; returns the previous one. Readers in flight finish on the old one.
    pub fn publish(&self, next: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(next))
    }
}

#[cfg(test)]
mod tests;
