//! The classifier as map contents (bytes, little-endian host order) and the lookup that
//! walks those bytes exactly as the data path does.
//!
//! Four maps:
//!
//! - `descs`, ARRAY of two *generations* of `max_tables + 1` slots each (one is searched,
//!   the other takes a whole new rule set before it is swapped in, see [`super::edit`]),
//!   key u32 slot, value [`DESC_BYTES`]: `mask[48]` (the key layout below, table id bytes
//!   0) then `u32 best_rule` at 48, `u32 stop` at [`DESC_STOP`] (the smallest best rule of
//!   this table and every later one: the search stops at the first table whose `stop`
//!   cannot beat what it found, so tables need not stay sorted when [`super::edit`] adds a
//!   rule), then the table's *filter* at [`DESC_FILTER`]: a bitmap of [`FILTER_BITS`]
//!   bits, bit [`filter_bit`] of each bucket's masked key set. A header whose bit is clear
//!   has no bucket in the table, so its hash lookup is skipped (most tables hold no bucket
//!   for a given header: a bit test costs far less than hashing 48 bytes). Unused slots
//!   have `best_rule = stop = NO_MATCH`, which stops the search. The last slot of a
//!   generation (`max_tables`, never searched) is its *meta* slot, for changes without
//!   reload: `u32 next_entry` at [`META_NEXT`] (the first free entry), `u32 added` at
//!   [`META_ADDED`], `u32 swapped` at [`META_SWAPPED`] (the set came from a swap), and the
//!   ids of the rules added since the load from [`META_IDS`] on.
//! - `gen`, ARRAY of one u64: `u32 base` (the searched generation's first slot; a table's
//!   id in bucket keys is its slot) and `u32 shift` (the search returns `id >> shift`: the
//!   filter's rule index). Zero (never written) is one generation with unshifted ids.
//! - `buckets`, HASH, key [`BUCKET_KEY_BYTES`] ([`bucket_key`]: `u64` fingerprint of the
//!   masked header at 0, `u32` table slot at 8), value [`BUCKET_BYTES`]: `u32 start`
//!   (index of the bucket's first entry in `entries`), `u32 count` (at most
//!   `bucket_max`). The data path computes the fingerprint anyway (its top bits are the
//!   filter bit), and the kernel hashes and compares 12 bytes instead of the 48 of the
//!   masked header. Entries test every field, so two masked headers with one fingerprint
//!   may share a bucket: the builder counts them as one.
//! - `entries`, ARRAY, key u32, value [`ENTRY_BYTES`], a bucket's rules consecutive and
//!   by ascending rule index: `u32 rule` at 0, `u32 action` at 4, inclusive ranges
//!   `u8 family lo, hi` at 8, `u8 proto lo, hi` at 10, `u16 vlan lo, hi` at 12,
//!   `u16 sport lo, hi` at 16, `u16 dport lo, hi` at 20, then `src[16]` at 24,
//!   `src_mask[16]` at 40, `dst[16]` at 56, `dst_mask[16]` at 72 (an address matches when
//!   `addr & mask == value`).
//!
//! The key layout (the parsed header the data path starts from, and a table's mask):
//! `u32 table` at 0 (zero), `u8 family` at 4, `u8 proto` at 5, `u16 vlan` at 6, `u16 sport` at
//! 8, `u16 dport` at 10, 4 zero bytes, `src[16]` at 16, `dst[16]` at 32 (addresses in
//! network order, IPv4 in the first 4 bytes). A table's bucket key is the fingerprint of
//! the header AND its mask, with the table's slot.

use std::collections::HashMap;

use super::tuplemerge::{self, BucketKey, Classifier, Key};
use super::{mask16, Header, NO_MATCH};

pub const KEY_BYTES: usize = 48;
/// Bits of a table's filter, as a power of two.
pub const FILTER_LOG2: u32 = 16;
pub const FILTER_BITS: usize = 1 << FILTER_LOG2;
pub const DESC_FILTER: usize = 56;
pub const DESC_BYTES: usize = DESC_FILTER + FILTER_BITS / 8;
/// The multipliers of [`fingerprint`], one per folded word (odd, from a 64-bit PRNG).
pub const FINGER_MUL: [u64; 5] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0xd6e8_feb8_6659_fd93,
    0xa076_1d64_78bd_642f,
];
pub const BUCKET_BYTES: usize = 8;
pub const ENTRY_BYTES: usize = 88;

pub const BUCKET_KEY_BYTES: usize = 12;

/// The fingerprint of a masked header (its table id bytes ignored): its little-endian
/// 64-bit words `w0..w5` as five words (`w0 ^ w1` first: w0's low half is the table id,
/// w1's high half the 4 zero bytes, so nothing is lost, then the four address words), each
/// multiplied by its own constant, the products xor-ed. The products are independent, so
/// the data path's multiplies overlap (a chain `h = (h ^ w) * M` waited on each); each is
/// a bijection of its word, so headers differing in one word never collide, and two
/// masked headers with one fingerprint merely share a bucket.
pub fn fingerprint(masked: &Key) -> u64 {
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&masked[8 * i..8 * i + 8]);
        if i == 0 {
            b[..4].fill(0);
        }
        u64::from_le_bytes(b)
    };
    [word(0) ^ word(1), word(2), word(3), word(4), word(5)]
        .iter()
        .zip(FINGER_MUL)
        .fold(0, |h, (w, m)| h ^ w.wrapping_mul(m))
}

/// The bucket map's key for a masked header in table slot `table`.
pub fn bucket_key(masked: &Key, table: u32) -> BucketKey {
    let mut k = [0u8; BUCKET_KEY_BYTES];
    k[..8].copy_from_slice(&fingerprint(masked).to_le_bytes());
    k[8..].copy_from_slice(&table.to_le_bytes());
    k
}

/// The table slot of a bucket key.
pub fn key_table(k: &BucketKey) -> u32 {
    u32_at(&k[..], 8)
}

/// The filter bit of a bucket key: the top bits of its fingerprint.
pub fn filter_bit(k: &BucketKey) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[..8]);
    (u64::from_le_bytes(b) >> (64 - FILTER_LOG2)) as usize
}

/// Set in the `gen` map's shift word by a swap: the rules swapped in have no head, so the
/// data path skips the file's (its code stays in the program).
pub const GEN_HEAD_OFF: u32 = 1 << 31;

/// Offsets inside a descriptor and an entry (shared with [`super::datapath`]).
pub const DESC_BEST: usize = 48;
pub const DESC_STOP: usize = 52;
/// Offsets in the meta slot (descriptor `max_tables`).
pub const META_NEXT: usize = 0;
pub const META_ADDED: usize = 4;
pub const META_SWAPPED: usize = 8;
pub const META_IDS: usize = 12;
/// Rules added without reload the meta slot can list.
pub const META_MAX_ADDED: usize = (DESC_BYTES - META_IDS) / 4;
pub const ENTRY_RULE: usize = 0;
pub const ENTRY_ACTION: usize = 4;
pub const ENTRY_FAMILY: usize = 8;
pub const ENTRY_PROTO: usize = 10;
pub const ENTRY_VLAN: usize = 12;
pub const ENTRY_SPORT: usize = 16;
pub const ENTRY_DPORT: usize = 20;
pub const ENTRY_SRC: usize = 24;
pub const ENTRY_DST: usize = 56;

/// The contents of the three maps.
#[derive(Debug, Clone)]
pub struct Maps {
    /// `max_tables` descriptors (unused ones stop the search), then the meta slot.
    pub descs: Vec<Box<[u8; DESC_BYTES]>>,
    /// Sorted by key, so fills are reproducible.
    pub buckets: Vec<(BucketKey, [u8; BUCKET_BYTES])>,
    pub entries: Vec<[u8; ENTRY_BYTES]>,
    /// The head's rules as entries ([`super::head`]): tested in order before the walk.
    pub head: Vec<[u8; ENTRY_BYTES]>,
    /// The generation's first descriptor slot: its tables' ids in bucket keys start there
    /// (0 for [`Maps::with_ids`]; see [`super::edit`]'s swap).
    pub base: u32,
}

impl Maps {
    /// The maps of `c`, each rule known by its position in the list.
    pub fn of(c: &Classifier) -> Maps {
        Maps::with_ids(c, |i| i)
    }

    /// The maps of `c`, rule `i` known by `id(i)` (what the search compares and returns).
    /// `id` must not decrease with `i`: first match is decided on ids. Equal ids are one
    /// rule of the caller's split into several (an IPv4 and an IPv6 variant, say).
    pub fn with_ids(c: &Classifier, id: impl Fn(u32) -> u32) -> Maps {
        let mut descs = Vec::with_capacity(c.config.max_tables);
        for t in &c.tables {
            let mut d = Box::new([0u8; DESC_BYTES]);
            d[..KEY_BYTES].copy_from_slice(&tuplemerge::mask(&t.lens));
            d[DESC_BEST..DESC_BEST + 4].copy_from_slice(&id(t.min_rule).to_le_bytes());
            descs.push(d);
        }
        while descs.len() < c.config.max_tables {
            let mut d = Box::new([0u8; DESC_BYTES]);
            d[DESC_BEST..DESC_BEST + 4].copy_from_slice(&NO_MATCH.to_le_bytes());
            descs.push(d);
        }
        // Each table's stop: the smallest best rule from it on (tables come sorted, so
        // this is its own best rule until an edit adds a better rule to a later table).
        let mut stop = NO_MATCH;
        for d in descs.iter_mut().rev() {
            stop = stop.min(u32_at(&d[..], DESC_BEST));
            d[DESC_STOP..DESC_STOP + 4].copy_from_slice(&stop.to_le_bytes());
        }
        let mut keys: Vec<&BucketKey> = c.buckets.keys().collect();
        keys.sort_unstable();
        for k in &keys {
            let t = key_table(k) as usize;
            if let Some(d) = descs.get_mut(t) {
                let bit = filter_bit(k);
                d[DESC_FILTER + bit / 8] |= 1 << (bit % 8);
            }
        }
        let mut buckets = Vec::with_capacity(keys.len());
        let mut entries = Vec::with_capacity(c.rules.len());
        for k in keys {
            let rules = &c.buckets[k];
            let mut v = [0u8; BUCKET_BYTES];
            v[..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
            v[4..].copy_from_slice(&(rules.len() as u32).to_le_bytes());
            buckets.push((*k, v));
            for &i in rules {
                entries.push(entry(id(i), &c.rules[i as usize]));
            }
        }
        let mut meta = Box::new([0u8; DESC_BYTES]);
        meta[DESC_BEST..DESC_BEST + 4].copy_from_slice(&NO_MATCH.to_le_bytes());
        meta[DESC_STOP..DESC_STOP + 4].copy_from_slice(&NO_MATCH.to_le_bytes());
        meta[META_NEXT..META_NEXT + 4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        descs.push(meta);
        let head = (0..c.head)
            .map(|i| entry(id(i as u32), &c.rules[i]))
            .collect();
        Maps {
            descs,
            buckets,
            entries,
            head,
            base: 0,
        }
    }

    /// Bytes of keys and values held (what the maps store, before kernel overhead).
    pub fn bytes(&self) -> usize {
        self.descs.len() * (4 + DESC_BYTES)
            + self.buckets.len() * (BUCKET_KEY_BYTES + BUCKET_BYTES)
            + self.entries.len() * (4 + ENTRY_BYTES)
    }

    /// The search over these bytes, step for step as [`super::datapath`] does it.
    pub fn lookup(&self, index: &Index<'_>, h: &Header) -> Lookup {
        let bytes = tuplemerge::header_bytes(h);
        let mut best = NO_MATCH;
        let mut probes = 0;
        let mut hits = 0;
        let mut filtered = 0;
        let mut scanned = 0;
        if let Some(e) = self.head.iter().find(|e| entry_matches(e, &bytes)) {
            best = u32_at(e, ENTRY_RULE);
        }
        for (t, d) in self.descs.iter().enumerate() {
            if u32_at(&d[..], DESC_STOP) >= best {
                break;
            }
            let mut m = [0u8; KEY_BYTES];
            m.copy_from_slice(&d[..KEY_BYTES]);
            let key = tuplemerge::key(&bytes, &m, self.base + t as u32);
            let bit = filter_bit(&key);
            if d[DESC_FILTER + bit / 8] & (1 << (bit % 8)) == 0 {
                filtered += 1;
                continue;
            }
            probes += 1;
            let Some(v) = index.buckets.get(&key) else {
                continue;
            };
            hits += 1;
            let (start, count) = (u32_at(&v[..], 0), u32_at(&v[..], 4));
            for k in 0..count.min(index.bucket_max) {
                let Some(e) = self.entries.get((start + k) as usize) else {
                    break;
                };
                scanned += 1;
                let rule = u32_at(e, ENTRY_RULE);
                if rule >= best {
                    break;
                }
                if entry_matches(e, &bytes) {
                    best = rule;
                    break;
                }
            }
        }
        Lookup {
            rule: (best != NO_MATCH).then_some(best as usize),
            probes,
            hits,
            filtered,
            scanned,
        }
    }

    /// The bucket map as a hash map, for [`Maps::lookup`].
    pub fn index(&self, bucket_max: usize) -> Index<'_> {
        Index {
            buckets: self.buckets.iter().map(|(k, v)| (*k, v)).collect(),
            bucket_max: bucket_max as u32,
        }
    }
}

/// The bucket map keyed for lookups.
pub struct Index<'a> {
    buckets: HashMap<BucketKey, &'a [u8; BUCKET_BYTES]>,
    bucket_max: u32,
}

/// A search's result and how many hash lookups it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    pub rule: Option<usize>,
    pub probes: usize,
    /// Probes that found a bucket.
    pub hits: usize,
    /// Tables whose filter said "no bucket" (no hash lookup made).
    pub filtered: usize,
    /// Entries read in the buckets found.
    pub scanned: usize,
}

pub(super) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

pub(super) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

pub fn entry(index: u32, r: &super::Rule) -> [u8; ENTRY_BYTES] {
    let mut e = [0u8; ENTRY_BYTES];
    e[ENTRY_RULE..4].copy_from_slice(&index.to_le_bytes());
    e[ENTRY_ACTION..8].copy_from_slice(&r.action.to_le_bytes());
    e[ENTRY_FAMILY] = r.family.lo;
    e[ENTRY_FAMILY + 1] = r.family.hi;
    e[ENTRY_PROTO] = r.proto.lo;
    e[ENTRY_PROTO + 1] = r.proto.hi;
    for (off, rg) in [
        (ENTRY_VLAN, r.vlan),
        (ENTRY_SPORT, r.sport),
        (ENTRY_DPORT, r.dport),
    ] {
        e[off..off + 2].copy_from_slice(&rg.lo.to_le_bytes());
        e[off + 2..off + 4].copy_from_slice(&rg.hi.to_le_bytes());
    }
    for (off, p) in [(ENTRY_SRC, r.src), (ENTRY_DST, r.dst)] {
        e[off..off + 16].copy_from_slice(&p.canonical().addr);
        e[off + 16..off + 32].copy_from_slice(&mask16(p.len));
    }
    e
}

/// An entry's tests against a header in the key layout.
pub(super) fn entry_matches(e: &[u8; ENTRY_BYTES], h: &Key) -> bool {
    let in8 = |off: usize, v: u8| e[off] <= v && v <= e[off + 1];
    let in16 = |off: usize, v: u16| u16_at(e, off) <= v && v <= u16_at(e, off + 2);
    let addr = |off: usize, at: usize| (0..16).all(|i| h[at + i] & e[off + 16 + i] == e[off + i]);
    in8(ENTRY_FAMILY, h[4])
        && in8(ENTRY_PROTO, h[5])
        && in16(ENTRY_VLAN, u16_at(h, 6))
        && in16(ENTRY_SPORT, u16_at(h, 8))
        && in16(ENTRY_DPORT, u16_at(h, 10))
        && addr(ENTRY_SRC, 16)
        && addr(ENTRY_DST, 32)
}
