//! Changes without reload (issue 11 §4): one rule added to, or deleted from, a running
//! classifier, touching only the map entries it needs.
//!
//! A rule goes into the bucket of the first table that fits it and has room (as the
//! builder places it), else a new table in the first unused slot. Its bucket's entries are
//! written again, in order, into free entries past the meta slot's `next_entry`, and then
//! the bucket's value `{start, count}` is replaced in one map update: a packet sees the old
//! run or the new one, never half of each. Then the table's filter bit is set and its best
//! rule and `stop` lowered, and the `stop` of the tables before it (a table's `stop` is the
//! smallest best rule from it on, so tables need not stay sorted). Until those writes land
//! a packet simply does not see the new rule yet. A deletion writes the run without the
//! rule (or deletes the bucket) and leaves filter bits and stops as they are: a stale bit
//! costs one hash lookup, a stale stop one table more, never a wrong answer. The old run's
//! entries are not reused; [`room`] sizes the maps for changes and [`EditError::NoRoom`]
//! says when a reload is due.
//!
//! Rule ids: a filter's rule `i` has id `i << PRIO_SHIFT` (see [`super::PRIO_SHIFT`]); a
//! rule added after it takes a free id below `(i + 1) << PRIO_SHIFT`.

use super::maps::{
    entry, filter_bit, key_table, u32_at, BUCKET_BYTES, DESC_BEST, DESC_BYTES, DESC_FILTER,
    DESC_STOP, ENTRY_BYTES, ENTRY_RULE, GEN_HEAD_OFF, KEY_BYTES, META_ADDED, META_IDS,
    META_MAX_ADDED, META_NEXT, META_SWAPPED,
};
use super::tuplemerge::{
    self, covers, fits, header_bytes, relax, representative, rule_lens, BucketKey, Classifier,
    Config, Key, Lens, FIELDS,
};
use super::{Rule, RuleProblem, NO_MATCH};

/// Slots of a map sized for `n` entries at load, with room for changes.
pub fn room(n: usize) -> usize {
    n + (n / 2).max(1024)
}

/// The classifier's maps, read and written one element at a time (the kernel's pinned
/// maps, or [`Mem`]). Errors are sentences.
pub trait Store {
    fn desc(&mut self, slot: u32) -> Result<Box<[u8; DESC_BYTES]>, String>;
    fn set_desc(&mut self, slot: u32, d: &[u8; DESC_BYTES]) -> Result<(), String>;
    fn bucket(&mut self, key: &BucketKey) -> Result<Option<[u8; BUCKET_BYTES]>, String>;
    fn set_bucket(&mut self, key: &BucketKey, v: &[u8; BUCKET_BYTES]) -> Result<(), String>;
    fn del_bucket(&mut self, key: &BucketKey) -> Result<(), String>;
    fn entry(&mut self, i: u32) -> Result<[u8; ENTRY_BYTES], String>;
    fn set_entry(&mut self, i: u32, e: &[u8; ENTRY_BYTES]) -> Result<(), String>;
    /// How many entries the entries map holds (both generations: each has half).
    fn entries_max(&self) -> u32;
    /// The `gen` map: the searched generation's first descriptor slot and its id shift.
    fn gen(&mut self) -> Result<(u32, u32), String>;
    fn set_gen(&mut self, base: u32, shift: u32) -> Result<(), String>;
    /// Every key of the bucket map.
    fn bucket_keys(&mut self) -> Result<Vec<BucketKey>, String>;
}

/// Why a change cannot be made without reload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    Store(String),
    #[error("the classifier cannot hold this rule: {0}")]
    BadRule(RuleProblem),
    #[error("the classifier's maps have no room left for changes ({used} of {max} entries written); reload the filter to compact them")]
    NoRoom { used: u32, max: u32 },
    #[error("the new set needs {entries} classifier entries and a generation holds {max} (sized when the filter was loaded); load a file with a larger classifier instead")]
    SetTooLarge { entries: usize, max: u32 },
    #[error("{0} rules were added since the load, as many as the classifier keeps track of; put them in the file and reload")]
    TooManyAdded(usize),
    #[error("the rule shares every bit the classifier hashes with {0} other rules, as many as a bucket holds; put it in the file and reload")]
    BucketFull(usize),
    #[error(
        "the rule needs a new table and all {0} tables are in use; put it in the file and reload"
    )]
    NoTable(usize),
}

impl From<String> for EditError {
    fn from(s: String) -> EditError {
        EditError::Store(s)
    }
}

/// The prefix lengths a table's mask hashes.
pub fn lens_of(mask: &Key) -> Lens {
    let ones16 = |at: usize| u16::from_le_bytes([mask[at], mask[at + 1]]).leading_ones() as u8;
    let ones128 = |at: usize| {
        mask[at..at + 16]
            .iter()
            .map(|b| b.count_ones())
            .sum::<u32>() as u8
    };
    [
        mask[4].leading_ones() as u8,
        mask[5].leading_ones() as u8,
        ones16(6),
        ones16(8),
        ones16(10),
        ones128(16),
        ones128(32),
    ]
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// The compiled rules a classifier left out (an earlier rule in their bucket covers them),
/// each with its id: a deletion may have to put them back.
pub fn left_out(c: &Classifier, id: impl Fn(u32) -> u32) -> Vec<(u32, Rule)> {
    // The head's rules are the program's code, never put back into the tables.
    let mut placed: Vec<bool> = (0..c.rules.len()).map(|k| k < c.head).collect();
    for members in c.buckets.values() {
        for &k in members {
            if let Some(p) = placed.get_mut(k as usize) {
                *p = true;
            }
        }
    }
    placed
        .iter()
        .enumerate()
        .filter(|(_, p)| !**p)
        .map(|(k, _)| (id(k as u32), c.rules[k]))
        .collect()
}

/// A running classifier opened for changes: its descriptors read once.
pub struct Editor<'a, S: Store> {
    store: &'a mut S,
    cfg: Config,
    /// The searched generation's first slot, and its id shift.
    base: u32,
    shift: u32,
    /// Its `max_tables` descriptors, then its meta slot.
    descs: Vec<Box<[u8; DESC_BYTES]>>,
}

/// One bucket a rule could live in: its table, key and entries.
struct Home {
    table: usize,
    key: BucketKey,
    run: Vec<[u8; ENTRY_BYTES]>,
}

impl<'a, S: Store> Editor<'a, S> {
    pub fn open(store: &'a mut S, cfg: Config) -> Result<Editor<'a, S>, EditError> {
        let (base, shift) = store.gen()?;
        let shift = shift & !GEN_HEAD_OFF;
        let per = cfg.max_tables as u32 + 1;
        if base != 0 && base != per {
            return Err(EditError::Store(format!(
                "the classifier's generation map says slot {base}, which starts no generation"
            )));
        }
        let mut descs = Vec::with_capacity(cfg.max_tables + 1);
        for t in 0..per {
            descs.push(store.desc(base + t)?);
        }
        Ok(Editor {
            store,
            cfg,
            base,
            shift,
            descs,
        })
    }

    /// How the searched generation's ids relate to the filter's rule indices:
    /// `index = id >> shift`.
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// Whether the searched rule set came from [`Editor::swap`] (not from the file).
    pub fn swapped(&self) -> bool {
        u32_at(&self.meta()[..], META_SWAPPED) != 0
    }

    /// The entries this generation may write: `[first, end)`.
    fn entry_range(&self) -> (u32, u32) {
        let half = self.store.entries_max() / 2;
        if self.base == 0 {
            (0, half)
        } else {
            (half, 2 * half)
        }
    }

    fn meta(&self) -> &[u8; DESC_BYTES] {
        &self.descs[self.cfg.max_tables]
    }

    /// The ids of the rules added since the load, in the order they were added.
    pub fn added(&self) -> Vec<u32> {
        let n = (u32_at(&self.meta()[..], META_ADDED) as usize).min(META_MAX_ADDED);
        (0..n)
            .map(|i| u32_at(&self.meta()[..], META_IDS + 4 * i))
            .collect()
    }

    fn write_meta(&mut self) -> Result<(), EditError> {
        let m = self.cfg.max_tables;
        self.store.set_desc(self.base + m as u32, &self.descs[m])?;
        Ok(())
    }

    fn set_added(&mut self, ids: &[u32]) -> Result<(), EditError> {
        if ids.len() > META_MAX_ADDED {
            return Err(EditError::TooManyAdded(META_MAX_ADDED));
        }
        let m = self.cfg.max_tables;
        let meta = &mut self.descs[m];
        put32(&mut meta[..], META_ADDED, ids.len() as u32);
        for (i, id) in ids.iter().enumerate() {
            put32(&mut meta[..], META_IDS + 4 * i, *id);
        }
        self.write_meta()
    }

    fn used(&self, t: usize) -> bool {
        u32_at(&self.descs[t][..], DESC_BEST) != NO_MATCH
    }

    fn mask(&self, t: usize) -> Key {
        let mut m = [0u8; KEY_BYTES];
        m.copy_from_slice(&self.descs[t][..KEY_BYTES]);
        m
    }

    /// The entries of bucket `key`, in order.
    fn run(&mut self, key: &BucketKey) -> Result<Vec<[u8; ENTRY_BYTES]>, EditError> {
        let Some(v) = self.store.bucket(key)? else {
            return Ok(Vec::new());
        };
        let (start, count) = (u32_at(&v, 0), u32_at(&v, 4));
        let mut run = Vec::with_capacity(count as usize);
        for k in 0..count {
            run.push(self.store.entry(start + k)?);
        }
        Ok(run)
    }

    /// The buckets `r`'s entries can be in: one per used table that fits it.
    fn homes(&mut self, r: &Rule) -> Result<Vec<Home>, EditError> {
        let lens = rule_lens(r);
        let rep = header_bytes(&representative(r));
        let mut homes = Vec::new();
        for t in 0..self.cfg.max_tables {
            if !self.used(t) || !fits(&lens_of(&self.mask(t)), &lens) {
                continue;
            }
            let key = tuplemerge::key(&rep, &self.mask(t), self.base + t as u32);
            let run = self.run(&key)?;
            homes.push(Home { table: t, key, run });
        }
        Ok(homes)
    }

    /// The ids of the entries that test exactly what `r` tests (whatever their action).
    pub fn find(&mut self, r: &Rule) -> Result<Vec<u32>, EditError> {
        let want = entry(0, r);
        let mut ids: Vec<u32> = self
            .homes(r)?
            .iter()
            .flat_map(|h| h.run.iter())
            .filter(|e| e[8..] == want[8..])
            .map(|e| u32_at(&e[..], ENTRY_RULE))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Adds the variants of one rule under `id` (`added`: a rule from outside the file,
    /// listed in the meta slot). Returns how many entries were written (0: it was there).
    pub fn add(&mut self, variants: &[Rule], id: u32, added: bool) -> Result<usize, EditError> {
        for r in variants {
            r.check().map_err(EditError::BadRule)?;
        }
        let mut written = 0;
        for r in variants {
            written += self.add_one(r, id)?;
        }
        if added && written > 0 {
            let mut ids = self.added();
            ids.push(id);
            self.set_added(&ids)?;
        }
        Ok(written)
    }

    fn add_one(&mut self, r: &Rule, id: u32) -> Result<usize, EditError> {
        let cfg = self.cfg;
        let e = entry(id, r);
        let homes = self.homes(r)?;
        if homes.iter().any(|h| h.run.contains(&e)) {
            return Ok(0);
        }
        let pick = homes
            .iter()
            .position(|h| h.run.len() < cfg.bucket_target)
            .or_else(|| {
                (0..homes.len())
                    .filter(|&i| homes[i].run.len() < cfg.bucket_max)
                    .min_by_key(|&i| homes[i].run.len())
            });
        if let Some(i) = pick {
            let Home { table, key, run } = &homes[i];
            return self.place(*table, None, key, run.clone(), e);
        }
        // A new table in the first unused slot, with lengths as the builder would choose;
        // the last slot hashes nothing, so every rule fits it.
        let Some(t) = (0..cfg.max_tables).find(|&t| !self.used(t)) else {
            return Err(EditError::NoTable(cfg.max_tables));
        };
        let lens = rule_lens(r);
        let relaxed = relax(&lens, &cfg);
        let mut ports = relaxed;
        ports[3] = lens[3];
        ports[4] = lens[4];
        let candidates = if t + 1 == cfg.max_tables {
            vec![[0; FIELDS]]
        } else {
            vec![relaxed, ports, lens]
        };
        let taken: Vec<Lens> = (0..cfg.max_tables)
            .filter(|&s| self.used(s))
            .map(|s| lens_of(&self.mask(s)))
            .collect();
        let Some(l) = candidates.into_iter().find(|l| !taken.contains(l)) else {
            return Err(EditError::BucketFull(cfg.bucket_max));
        };
        let mask = tuplemerge::mask(&l);
        let rep = header_bytes(&representative(r));
        let key = tuplemerge::key(&rep, &mask, self.base + t as u32);
        self.place(t, Some(mask), &key, Vec::new(), e)
    }

    /// Writes bucket `key` of table `t` with `e` among `run`, then the table's descriptor
    /// (`fresh`: a new table with this mask) and the stops before it.
    fn place(
        &mut self,
        t: usize,
        fresh: Option<Key>,
        key: &BucketKey,
        mut run: Vec<[u8; ENTRY_BYTES]>,
        e: [u8; ENTRY_BYTES],
    ) -> Result<usize, EditError> {
        let id = u32_at(&e[..], ENTRY_RULE);
        let at = run
            .iter()
            .position(|x| u32_at(&x[..], ENTRY_RULE) > id)
            .unwrap_or(run.len());
        run.insert(at, e);
        self.write_run(key, &run)?;
        let d = &mut self.descs[t];
        if let Some(mask) = fresh {
            d.fill(0);
            d[..KEY_BYTES].copy_from_slice(&mask);
            put32(&mut d[..], DESC_BEST, NO_MATCH);
            put32(&mut d[..], DESC_STOP, NO_MATCH);
        }
        let bit = filter_bit(key);
        d[DESC_FILTER + bit / 8] |= 1 << (bit % 8);
        let best = u32_at(&d[..], DESC_BEST).min(id);
        put32(&mut d[..], DESC_BEST, best);
        let stop = u32_at(&d[..], DESC_STOP).min(id);
        put32(&mut d[..], DESC_STOP, stop);
        self.store.set_desc(self.base + t as u32, &self.descs[t])?;
        // Earlier stops, from the nearest: once one is no higher, none before it is.
        for s in (0..t).rev() {
            if u32_at(&self.descs[s][..], DESC_STOP) <= id {
                break;
            }
            put32(&mut self.descs[s][..], DESC_STOP, id);
            self.store.set_desc(self.base + s as u32, &self.descs[s])?;
        }
        Ok(1)
    }

    /// Writes `run` into free entries and points bucket `key` at it (deletes the bucket
    /// when `run` is empty).
    fn write_run(&mut self, key: &BucketKey, run: &[[u8; ENTRY_BYTES]]) -> Result<(), EditError> {
        if run.is_empty() {
            self.store.del_bucket(key)?;
            return Ok(());
        }
        let next = u32_at(&self.meta()[..], META_NEXT);
        let (first, max) = self.entry_range();
        let end = next.saturating_add(run.len() as u32);
        if next < first || end > max {
            return Err(EditError::NoRoom {
                used: next.saturating_sub(first),
                max: max - first,
            });
        }
        for (k, x) in run.iter().enumerate() {
            self.store.set_entry(next + k as u32, x)?;
        }
        let m = self.cfg.max_tables;
        put32(&mut self.descs[m][..], META_NEXT, end);
        self.write_meta()?;
        let mut v = [0u8; BUCKET_BYTES];
        put32(&mut v, 0, next);
        put32(&mut v, 4, run.len() as u32);
        self.store.set_bucket(key, &v)?;
        Ok(())
    }

    /// Deletes the entries of id `id` that test what one of `variants` tests. First the
    /// rules of `left_out` (compiled rules the classifier left out because an earlier rule
    /// covered them) that a deleted variant covers are put back: until the deletion they
    /// never decide, and if one cannot be put back nothing is deleted. Returns the entries
    /// deleted.
    pub fn delete(
        &mut self,
        variants: &[Rule],
        id: u32,
        left_out: &[(u32, Rule)],
    ) -> Result<usize, EditError> {
        let mut doomed = Vec::new();
        for r in variants {
            let want = entry(id, r);
            for h in self.homes(r)? {
                let keep = |x: &[u8; ENTRY_BYTES]| {
                    !(u32_at(&x[..], ENTRY_RULE) == id && x[8..] == want[8..])
                };
                if !h.run.iter().all(keep) {
                    doomed.push((*r, h.key));
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        for (lid, l) in left_out {
            if *lid > id && variants.iter().any(|v| covers(v, l)) {
                self.add_one(l, *lid)?;
            }
        }
        let mut deleted = 0;
        for (r, key) in doomed {
            // Read again: putting a rule back may have rewritten this bucket.
            let want = entry(id, &r);
            let run = self.run(&key)?;
            let before = run.len();
            let run: Vec<_> = run
                .into_iter()
                .filter(|x| !(u32_at(&x[..], ENTRY_RULE) == id && x[8..] == want[8..]))
                .collect();
            if run.len() < before {
                deleted += before - run.len();
                self.write_run(&key, &run)?;
            }
        }
        let ids = self.added();
        if ids.contains(&id) {
            let rest: Vec<u32> = ids.into_iter().filter(|x| *x != id).collect();
            self.set_added(&rest)?;
        }
        Ok(deleted)
    }
}

impl<S: Store> Editor<'_, S> {
    /// Writes the rule set `new` (built with its ids) into the generation not searched,
    /// then switches the search to it with one update of the `gen` map: a packet walks one
    /// generation or the other, never a mix. The generation left behind stays as it is
    /// until the next swap clears it (by then no packet that read the old `gen` value is
    /// still running: a program run takes microseconds). `shift`: the new ids' shift.
    pub fn swap(&mut self, new: &super::maps::Maps, shift: u32) -> Result<Swapped, EditError> {
        let per = self.cfg.max_tables as u32 + 1;
        if new.descs.len() != per as usize {
            return Err(EditError::Store(format!(
                "the new rule set has {} descriptor slots, the classifier {per}",
                new.descs.len()
            )));
        }
        if !new.head.is_empty() {
            return Err(EditError::Store(
                "a rule set swapped in has no head: the program's code holds the file's".into(),
            ));
        }
        let nbase = if self.base == 0 { per } else { 0 };
        let half = self.store.entries_max() / 2;
        let first = if nbase == 0 { 0 } else { half };
        if new.entries.len() > half as usize {
            return Err(EditError::SetTooLarge {
                entries: new.entries.len(),
                max: half,
            });
        }
        // What the other generation held, two swaps ago.
        let mut cleared = 0;
        for k in self.store.bucket_keys()? {
            let t = key_table(&k);
            if (nbase..nbase + per).contains(&t) {
                self.store.del_bucket(&k)?;
                cleared += 1;
            }
        }
        for (i, e) in new.entries.iter().enumerate() {
            self.store.set_entry(first + i as u32, e)?;
        }
        for (k, v) in &new.buckets {
            let mut k2 = *k;
            put32(&mut k2, 8, nbase + key_table(k) - new.base);
            let mut v2 = *v;
            put32(&mut v2, 0, first + u32_at(&v[..], 0));
            self.store.set_bucket(&k2, &v2)?;
        }
        let last = per as usize - 1;
        for (i, d) in new.descs.iter().enumerate() {
            let mut d = d.clone();
            if i == last {
                d.fill(0);
                put32(&mut d[..], DESC_BEST, NO_MATCH);
                put32(&mut d[..], DESC_STOP, NO_MATCH);
                put32(&mut d[..], META_NEXT, first + new.entries.len() as u32);
                put32(&mut d[..], META_SWAPPED, 1);
            }
            self.store.set_desc(nbase + i as u32, &d)?;
        }
        // The set swapped in has no head: the file's head code is skipped from now on.
        self.store.set_gen(nbase, shift | GEN_HEAD_OFF)?;
        self.base = nbase;
        self.shift = shift;
        for (t, d) in new.descs.iter().enumerate() {
            self.descs[t] = d.clone();
        }
        self.descs[last] = self.store.desc(nbase + last as u32)?;
        Ok(Swapped {
            entries: new.entries.len(),
            buckets: new.buckets.len(),
            cleared,
        })
    }
}

/// What a swap wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swapped {
    pub entries: usize,
    pub buckets: usize,
    /// Buckets of the generation before last, deleted.
    pub cleared: usize,
}

/// The maps in memory (tests, and `pol build`-time checks of a change).
#[derive(Debug, Clone)]
pub struct Mem {
    pub descs: Vec<Box<[u8; DESC_BYTES]>>,
    pub buckets: std::collections::HashMap<BucketKey, [u8; BUCKET_BYTES]>,
    pub entries: Vec<[u8; ENTRY_BYTES]>,
    pub entries_max: u32,
    pub gen: (u32, u32),
    /// The head the program's code holds (searched while `gen` says so).
    pub head: Vec<[u8; ENTRY_BYTES]>,
}

impl Mem {
    /// The maps of `m` (generation 0, ids shifted by `shift`) with room for
    /// `entries_max` entries and a second generation of descriptors.
    pub fn of(m: &super::maps::Maps, entries_max: u32, shift: u32) -> Mem {
        let mut descs = m.descs.clone();
        descs.extend(m.descs.iter().map(|_| Box::new([0u8; DESC_BYTES])));
        Mem {
            descs,
            buckets: m.buckets.iter().copied().collect(),
            entries: m.entries.clone(),
            head: m.head.clone(),
            entries_max,
            gen: (0, shift),
        }
    }

    /// The same bytes as [`super::maps::Maps`], to search them.
    pub fn maps(&self) -> super::maps::Maps {
        let mut buckets: Vec<(BucketKey, [u8; BUCKET_BYTES])> =
            self.buckets.iter().map(|(k, v)| (*k, *v)).collect();
        buckets.sort_unstable();
        let per = self.descs.len() / 2;
        let base = self.gen.0 as usize;
        super::maps::Maps {
            descs: self.descs[base..base + per].to_vec(),
            buckets,
            entries: self.entries.clone(),
            head: if self.gen.1 & GEN_HEAD_OFF == 0 {
                self.head.clone()
            } else {
                Vec::new()
            },
            base: self.gen.0,
        }
    }
}

impl Store for Mem {
    fn desc(&mut self, slot: u32) -> Result<Box<[u8; DESC_BYTES]>, String> {
        self.descs
            .get(slot as usize)
            .cloned()
            .ok_or_else(|| format!("no descriptor {slot}"))
    }
    fn set_desc(&mut self, slot: u32, d: &[u8; DESC_BYTES]) -> Result<(), String> {
        let s = self
            .descs
            .get_mut(slot as usize)
            .ok_or_else(|| format!("no descriptor {slot}"))?;
        s.copy_from_slice(d);
        Ok(())
    }
    fn bucket(&mut self, key: &BucketKey) -> Result<Option<[u8; BUCKET_BYTES]>, String> {
        Ok(self.buckets.get(key).copied())
    }
    fn set_bucket(&mut self, key: &BucketKey, v: &[u8; BUCKET_BYTES]) -> Result<(), String> {
        self.buckets.insert(*key, *v);
        Ok(())
    }
    fn del_bucket(&mut self, key: &BucketKey) -> Result<(), String> {
        self.buckets.remove(key);
        Ok(())
    }
    fn entry(&mut self, i: u32) -> Result<[u8; ENTRY_BYTES], String> {
        Ok(self
            .entries
            .get(i as usize)
            .copied()
            .unwrap_or([0; ENTRY_BYTES]))
    }
    fn set_entry(&mut self, i: u32, e: &[u8; ENTRY_BYTES]) -> Result<(), String> {
        if i >= self.entries_max {
            return Err(format!("entry {i} is past the map's {}", self.entries_max));
        }
        let i = i as usize;
        if self.entries.len() <= i {
            self.entries.resize(i + 1, [0; ENTRY_BYTES]);
        }
        self.entries[i] = *e;
        Ok(())
    }
    fn entries_max(&self) -> u32 {
        self.entries_max
    }
    fn gen(&mut self) -> Result<(u32, u32), String> {
        Ok(self.gen)
    }
    fn set_gen(&mut self, base: u32, shift: u32) -> Result<(), String> {
        self.gen = (base, shift);
        Ok(())
    }
    fn bucket_keys(&mut self) -> Result<Vec<BucketKey>, String> {
        Ok(self.buckets.keys().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::maps::Maps;
    use super::super::tuplemerge::build;
    use super::super::{gen, Header, Prefix, Range, V4};
    use super::*;

    /// A small deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    fn rule(rng: &mut Rng) -> Rule {
        let a = |rng: &mut Rng| {
            [
                10,
                rng.below(3) as u8,
                rng.below(4) as u8,
                rng.below(4) as u8,
            ]
        };
        let lens = [0u8, 8, 16, 24, 32];
        let p = rng.below(4) as u16;
        Rule {
            family: Range::exact(V4 | super::super::L4),
            proto: if rng.below(4) == 0 {
                Range::<u8>::ANY
            } else {
                Range::exact(6)
            },
            src: Prefix::v4(a(rng), lens[rng.below(5) as usize]),
            dst: Prefix::v4(a(rng), lens[rng.below(5) as usize]),
            dport: match rng.below(3) {
                0 => Range::<u16>::ANY,
                1 => Range::exact(80 + p),
                _ => Range::new(80, 80 + 2 * p),
            },
            action: rng.below(3) as u32,
            ..Rule::default()
        }
    }

    fn header(rng: &mut Rng) -> Header {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&[
            10,
            rng.below(3) as u8,
            rng.below(4) as u8,
            rng.below(4) as u8,
        ]);
        dst[..4].copy_from_slice(&[
            10,
            rng.below(3) as u8,
            rng.below(4) as u8,
            rng.below(4) as u8,
        ]);
        Header {
            family: V4 | super::super::L4,
            proto: if rng.below(5) == 0 { 17 } else { 6 },
            dport: 78 + rng.below(10) as u16,
            src,
            dst,
            ..Header::default()
        }
    }

    /// The first rule by id that matches: (id, action).
    fn reference(rules: &[(u32, Rule)], h: &Header) -> Option<u32> {
        rules
            .iter()
            .filter(|(_, r)| r.matches(h))
            .map(|(id, _)| *id)
            .min()
    }

    /// Random adds and deletes on a built classifier; after each, every header's answer
    /// from the edited maps equals the first-match reference over the current rules.
    #[test]
    fn adds_and_deletes_keep_first_match_exact() {
        for (seed, cfg) in [
            (1u64, Config::default()),
            (
                7,
                Config {
                    bucket_target: 2,
                    bucket_max: 3,
                    max_tables: 12,
                    addr_step: 8,
                },
            ),
            (
                3,
                Config {
                    bucket_target: 1,
                    bucket_max: 2,
                    max_tables: 64,
                    addr_step: 16,
                },
            ),
        ] {
            let mut rng = Rng(seed * 0x9e37_79b9 + 1);
            let base: Vec<Rule> = (0..60).map(|_| rule(&mut rng)).collect();
            let c = build(&base, cfg).expect("builds");
            let shift = super::super::PRIO_SHIFT;
            let maps = Maps::with_ids(&c, |i| i << shift);
            let mut mem = Mem::of(&maps, 2 * room(maps.entries.len()) as u32, shift);
            let outs = left_out(&c, |i| i << shift);
            let mut live: Vec<(u32, Rule)> = base
                .iter()
                .enumerate()
                .map(|(i, r)| ((i as u32) << shift, *r))
                .collect();
            let heads: Vec<Header> = (0..400).map(|_| header(&mut rng)).collect();
            let mut changed = 0;
            for step in 0..80 {
                if rng.below(2) == 0 && !live.is_empty() {
                    let k = rng.below(live.len() as u64) as usize;
                    let (id, r) = live.remove(k);
                    let mut ed = Editor::open(&mut mem, cfg).expect("opens");
                    let outs_now: Vec<(u32, Rule)> = outs
                        .iter()
                        .filter(|(i, _)| live.iter().any(|(j, _)| j == i))
                        .copied()
                        .collect();
                    match ed.delete(&[r], id, &outs_now) {
                        Ok(_) => {}
                        // A covered rule could not be put back: nothing was deleted.
                        Err(EditError::BucketFull(_) | EditError::NoTable(_)) => {
                            live.insert(k, (id, r));
                        }
                        Err(e) => panic!("step {step}: {e}"),
                    }
                } else {
                    let after = rng.below(60) as u32;
                    let used: Vec<u32> = live.iter().map(|(i, _)| *i).collect();
                    let Some(id) =
                        ((after << shift) + 1..(after + 1) << shift).find(|i| !used.contains(i))
                    else {
                        continue;
                    };
                    let r = rule(&mut rng);
                    let mut ed = Editor::open(&mut mem, cfg).expect("opens");
                    match ed.add(&[r], id, true) {
                        Ok(_) => live.push((id, r)),
                        Err(EditError::BucketFull(_) | EditError::NoTable(_)) => continue,
                        Err(e) => panic!("step {step}: {e}"),
                    }
                }
                changed += 1;
                let m = mem.maps();
                let index = m.index(cfg.bucket_max);
                for h in &heads {
                    let got = m.lookup(&index, h).rule.map(|r| r as u32);
                    assert_eq!(
                        got,
                        reference(&live, h),
                        "seed {seed} step {step}: header {h:?}"
                    );
                }
            }
            assert!(changed > 40, "seed {seed}: only {changed} changes made");
        }
    }

    /// An added rule is found by its tests and listed; deleting it takes it off the list;
    /// a run that does not fit in the room left is refused and changes nothing.
    #[test]
    fn added_rules_are_listed_found_and_room_is_checked() {
        let rules = gen::rules(gen::Shape::Acl, 300, 2);
        let c = build(&rules, Config::default()).expect("builds");
        let maps = Maps::with_ids(&c, |i| i << 8);
        let mut mem = Mem::of(&maps, 2 * (maps.entries.len() as u32 + 20), 8);
        let mut r = rules[0];
        r.dport = Range::exact(4242);
        let mut ed = Editor::open(&mut mem, Config::default()).expect("opens");
        assert_eq!(ed.add(&[r], (5 << 8) + 1, true), Ok(1));
        assert_eq!(ed.added(), vec![(5 << 8) + 1]);
        assert_eq!(ed.find(&r), Ok(vec![(5 << 8) + 1]));
        assert_eq!(ed.add(&[r], (5 << 8) + 1, true), Ok(0), "already there");
        assert_eq!(ed.delete(&[r], (5 << 8) + 1, &[]), Ok(1));
        assert!(ed.added().is_empty());
        assert_eq!(ed.find(&r), Ok(vec![]));
        // 20 entries of room: each change rewrites its bucket, so it runs out.
        let mut err = None;
        for k in 0..40u16 {
            let mut x = rules[1];
            x.sport = Range::exact(1000 + k);
            if let Err(e) = ed.add(&[x], (7 << 8) + 1 + u32::from(k), true) {
                err = Some(e);
                break;
            }
        }
        match err {
            Some(EditError::NoRoom { max, .. }) => assert_eq!(max, maps.entries.len() as u32 + 20),
            other => panic!("expected NoRoom, got {other:?}"),
        }
    }

    /// Swaps between two rule sets: after each, the search over the maps answers as the
    /// set swapped in (its ids), the other generation's buckets are cleared at the next
    /// swap, and a rule added after a swap lands in the searched generation.
    #[test]
    fn swaps_switch_whole_rule_sets() {
        let cfg = Config::default();
        let mut rng = Rng(99);
        let a: Vec<Rule> = (0..200).map(|_| rule(&mut rng)).collect();
        let b: Vec<Rule> = (0..300).map(|_| rule(&mut rng)).collect();
        let ca = build(&a, cfg).expect("a builds");
        let cb = build(&b, cfg).expect("b builds");
        let ma = Maps::with_ids(&ca, |i| i << 8);
        let mb = Maps::with_ids(&cb, |i| (i << 12) + 7);
        let mut mem = Mem::of(&ma, 2 * room(300) as u32, 8);
        let heads: Vec<Header> = (0..500).map(|_| header(&mut rng)).collect();
        let ids = |rules: &[Rule], id: &dyn Fn(u32) -> u32| -> Vec<(u32, Rule)> {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| (id(i as u32), *r))
                .collect()
        };
        let la = ids(&a, &|i| i << 8);
        let lb = ids(&b, &|i| (i << 12) + 7);
        let check = |mem: &Mem, live: &[(u32, Rule)], what: &str| {
            let m = mem.maps();
            let index = m.index(cfg.bucket_max);
            for h in &heads {
                let got = m.lookup(&index, h).rule.map(|r| r as u32);
                assert_eq!(got, reference(live, h), "{what}: {h:?}");
            }
        };
        check(&mem, &la, "a at load");
        let mut cleared = Vec::new();
        for (k, (m, live, shift)) in [(&mb, &lb, 12), (&ma, &la, 8), (&mb, &lb, 12)]
            .into_iter()
            .enumerate()
        {
            let mut ed = Editor::open(&mut mem, cfg).expect("opens");
            let sw = ed.swap(m, shift).expect("swaps");
            assert!(ed.swapped() && ed.shift() == shift);
            cleared.push(sw.cleared);
            check(&mem, live, &format!("swap {k}"));
        }
        assert_eq!(cleared[0], 0, "nothing in generation 1 at first");
        assert_eq!(cleared[1], ma.buckets.len(), "set a's first copy cleared");
        assert_eq!(cleared[2], mb.buckets.len());
        // Set b searched, in generation 1: an added rule goes there and decides.
        let mut x = b[0];
        x.action = 5;
        let mut ed = Editor::open(&mut mem, cfg).expect("opens");
        assert_eq!(ed.add(&[x], 1, true), Ok(1));
        let mut live = lb.clone();
        live.push((1, x));
        check(&mem, &live, "added after the swaps");
    }

    /// A head (the first rules as code, `super::super::head`) decides before the tables;
    /// a rule added before a head rule still wins (its table's stop lets the walk reach
    /// it); a deletion never puts head rules into the tables; a swap turns the head off.
    #[test]
    fn a_head_decides_first_until_a_swap() {
        let cfg = Config::default();
        let a = gen::rules(gen::Shape::Fw, 2000, 3);
        let ca = super::super::tuplemerge::build_from(&a, cfg, 64).expect("a builds");
        assert_eq!(ca.head, 64);
        assert!(left_out(&ca, |i| i).iter().all(|(i, _)| *i >= 64));
        let ma = Maps::with_ids(&ca, |i| i << 8);
        assert_eq!(ma.head.len(), 64);
        let mut mem = Mem::of(&ma, 2 * room(2000) as u32, 8);
        let heads = gen::trace(&a, 600, 3);
        let ids = |rules: &[Rule], id: &dyn Fn(u32) -> u32| -> Vec<(u32, Rule)> {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| (id(i as u32), *r))
                .collect()
        };
        let check = |mem: &Mem, live: &[(u32, Rule)], what: &str| -> usize {
            let m = mem.maps();
            let index = m.index(cfg.bucket_max);
            let mut early = 0;
            for h in &heads {
                let got = m.lookup(&index, h).rule.map(|r| r as u32);
                let want = reference(live, h);
                assert_eq!(got, want, "{what}: {h:?}");
                early += usize::from(want.is_some_and(|w| w < 64 << 8));
            }
            early
        };
        let mut live = ids(&a, &|i| i << 8);
        let early = check(&mem, &live, "at load");
        assert!(early > heads.len() / 4, "the head decides {early} headers");
        // Added right after rule 5, a copy of a rule from deep in the list.
        let mut x = a[1500];
        x.action = 9;
        let mut ed = Editor::open(&mut mem, cfg).expect("opens");
        assert_eq!(ed.add(&[x], (5 << 8) + 1, true), Ok(1));
        live.push(((5 << 8) + 1, x));
        check(&mem, &live, "added before head rule 6");
        let b = gen::rules(gen::Shape::Acl, 500, 4);
        let mb = Maps::with_ids(&build(&b, cfg).expect("b builds"), |i| (i << 12) + 7);
        let mut ed = Editor::open(&mut mem, cfg).expect("opens");
        ed.swap(&mb, 12).expect("swaps");
        assert!(mem.maps().head.is_empty(), "a swap turns the head off");
        let lb = ids(&b, &|i| (i << 12) + 7);
        let heads_b = gen::trace(&b, 300, 4);
        let m = mem.maps();
        let index = m.index(cfg.bucket_max);
        for h in heads_b.iter().chain(&heads) {
            let got = m.lookup(&index, h).rule.map(|r| r as u32);
            assert_eq!(got, reference(&lb, h), "after the swap: {h:?}");
        }
        let mut ed = Editor::open(&mut mem, cfg).expect("opens");
        assert!(
            ed.swap(&ma, 8).is_err(),
            "a set with a head cannot be swapped in"
        );
    }

    #[test]
    fn lens_of_inverts_mask() {
        let l: Lens = [8, 0, 16, 0, 8, 24, 128];
        assert_eq!(lens_of(&tuplemerge::mask(&l)), l);
    }
}
