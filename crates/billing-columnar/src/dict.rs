//! A column chunk's dictionary: entries are interned as the chunk's values arrive, their
//! PLAIN bytes kept ready to become the dictionary page. Keys are short strings and
//! fixed-width values, so hashing and comparing are done inline here rather than through
//! `std`'s generic paths (profiled: both were hot in a conversion).

use hashbrown::HashTable;

/// A small fast hash (FxHash's rounds, then a folded multiply): keys are short strings and
/// fixed-width values, hashed once per value of a dictionary column. The tail is read as
/// overlapping words, not copied into a zero-padded buffer: that copy's store, reloaded at
/// once, stalled the multiply after it (profiled: 14% of writing a chunk).
pub(crate) fn fx(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let n = bytes.len();
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let half = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let mut h = n as u64;
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            h = mix(h, word(i));
            i += 8;
        }
        h = mix(h, word(n - 8));
    } else if n >= 4 {
        h = mix(h, u64::from(half(0)) | u64::from(half(n - 4)) << 32);
    } else if n > 0 {
        let b = |i: usize| u64::from(bytes[i]);
        h = mix(h, b(0) | b(n / 2) << 8 | b(n - 1) << 16);
    }
    fold(h)
}

/// A folded multiply: the high half of the product goes into the low. A multiply carries input
/// bits only upwards, and the table indexes by the low bits (a big-endian decimal's varying
/// bytes are its last).
fn fold(h: u64) -> u64 {
    let wide = u128::from(h) * u128::from(0x9e37_79b9_7f4a_7c15u64);
    (wide as u64) ^ ((wide >> 64) as u64)
}

/// The hash of a fixed-width key (a value's bits, widened to 128).
#[inline]
pub(crate) fn fixed_hash(key: u128) -> u64 {
    fold(key as u64 ^ (key >> 64) as u64 ^ (key >> 96) as u64)
}

/// Whether two byte strings are equal, inline: dictionary keys are mostly short, and for them
/// a call to `memcmp` cost more than the comparison (profiled: 5% of a conversion). Lengths
/// of 4 to 32 bytes compare as two overlapping words, up to 64 (GUIDs are 36) as up to four,
/// longer ones word by word.
#[inline(always)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
        s[at..at + N].try_into().expect("N bytes")
    }
    match n {
        0..=3 => a == b,
        4..=7 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => {
            u64::from_ne_bytes(word(a, 0)) == u64::from_ne_bytes(word(b, 0))
                && u64::from_ne_bytes(word(a, n - 8)) == u64::from_ne_bytes(word(b, n - 8))
        }
        17..=32 => {
            u128::from_ne_bytes(word(a, 0)) == u128::from_ne_bytes(word(b, 0))
                && u128::from_ne_bytes(word(a, n - 16)) == u128::from_ne_bytes(word(b, n - 16))
        }
        33..=64 => {
            let w = |s: &[u8], at: usize| u128::from_ne_bytes(word(s, at));
            w(a, 0) == w(b, 0)
                && w(a, 16) == w(b, 16)
                && w(a, n.min(48) - 16) == w(b, n.min(48) - 16)
                && w(a, n - 16) == w(b, n - 16)
        }
        // Longer keys (JSON texts of `AdditionalInfo`): the scanner's word-by-word prefix
        // test, still without a call (of equal lengths, a prefix is the whole key).
        _ => crate::scan::starts_with(a, b),
    }
}

/// A chunk's dictionary: the dictionary page's PLAIN bytes as entries are added, and a hash
/// table of entries whose keys are read back from those bytes.
#[derive(Clone)]
pub(crate) struct Dict {
    /// A string entry as (start of its value bytes in `plain`, entry index): its length is the
    /// PLAIN length prefix just before, so a probe reads the key in one place and the table
    /// holds 8 bytes per slot. A stored hash and a separate span list made each lookup two or
    /// three dependent cache misses on large dictionaries (perf: the probe was a third of
    /// writing a chunk). Fixed-width entries hold their index twice.
    table: HashTable<(u32, u32)>,
    pub plain: Vec<u8>,
    /// The number of entries.
    entries: u32,
    /// A fixed-width dictionary's entries as integers (numbers, dates, timestamps): compared
    /// and hashed as one value instead of as bytes.
    keys: Vec<u128>,
    /// The entry of the previous value, as the table holds it: billing rows come clustered by
    /// customer and subscription, and many columns are constant, so a value often repeats the
    /// one before and costs a comparison instead of a hash.
    last: Option<(u32, u32)>,
    /// While the dictionary is small, string entries by [`quick`] key (start 0: none). Most
    /// string columns hold a few to a few hundred values in no set order (customers, meters,
    /// subscriptions), and a compare to confirm the entry here costs a third of hashing the
    /// value and probing the table (callgrind: lookups were a fifth of encoding the typed
    /// view; 8 KiB a dictionary, 3 MiB more at the peak of the bench's conversion).
    hints: Box<[(u32, u32); HINTS]>,
}

/// Slots of [`Dict::hints`].
const HINTS: usize = 1024;
/// Dictionaries up to this many entries look values up through their hints first; larger
/// ones would mostly miss them.
const HINTED: u32 = 512;

/// A cheap key of a string for [`Dict::hints`]: its length and its first and last eight
/// bytes, mixed into a slot.
#[inline(always)]
fn quick(key: &[u8]) -> usize {
    let n = key.len();
    let w = if n >= 8 {
        let word = |i: usize| u64::from_le_bytes(key[i..i + 8].try_into().expect("8 bytes"));
        word(0) ^ word(n - 8).rotate_left(29)
    } else if n >= 4 {
        let half = |i: usize| u32::from_le_bytes(key[i..i + 4].try_into().expect("4 bytes"));
        u64::from(half(0)) | u64::from(half(n - 4)) << 32
    } else {
        key.iter().fold(0, |w, &b| w << 8 | u64::from(b))
    };
    ((w ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize
}

impl Dict {
    pub fn new() -> Self {
        Self {
            table: HashTable::new(),
            plain: Vec::new(),
            entries: 0,
            keys: Vec::new(),
            last: None,
            hints: Box::new([(0, 0); HINTS]),
        }
    }

    pub fn len(&self) -> usize {
        self.entries as usize
    }

    /// The entry of a fixed-width value: `key` is the value, `bytes` its PLAIN encoding.
    #[inline]
    pub fn intern_fixed(&mut self, key: u128, bytes: &[u8]) -> u32 {
        if let Some((_, i)) = self.last {
            if self.keys[i as usize] == key {
                return i;
            }
        }
        let hash = fixed_hash(key);
        let keys = &self.keys;
        let i = match self.table.find(hash, |&(_, i)| keys[i as usize] == key) {
            Some(&(_, i)) => i,
            None => {
                let index = self.entries;
                self.entries += 1;
                self.keys.push(key);
                self.plain.extend_from_slice(bytes);
                let keys = &self.keys;
                self.table
                    .insert_unique(hash, (index, index), |&(_, i)| fixed_hash(keys[i as usize]));
                index
            }
        };
        self.last = Some((i, i));
        i
    }

    /// The entry of string `key`, added if new (after its length, as PLAIN writes a string);
    /// whether it is new.
    #[inline]
    pub fn intern(&mut self, key: &[u8]) -> (u32, bool) {
        if let Some((start, i)) = self.last {
            if same(entry(&self.plain, start), key) {
                return (i, false);
            }
        }
        if self.entries > HINTED {
            let (start, i, new) = self.lookup(key);
            self.last = Some((start, i));
            return (i, new);
        }
        let q = quick(key);
        let (start, i) = self.hints[q];
        if start != 0 && same(entry(&self.plain, start), key) {
            self.last = Some((start, i));
            return (i, false);
        }
        let (start, i, new) = self.lookup(key);
        self.hints[q] = (start, i);
        self.last = Some((start, i));
        (i, new)
    }

    fn lookup(&mut self, key: &[u8]) -> (u32, u32, bool) {
        let hash = fx(key);
        let plain = &self.plain;
        let found = self
            .table
            .find(hash, |&(start, _)| same(entry(plain, start), key));
        if let Some(&(start, i)) = found {
            return (start, i, false);
        }
        self.plain
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        let start = self.plain.len() as u32;
        self.plain.extend_from_slice(key);
        let index = self.entries;
        self.entries += 1;
        let plain = &self.plain;
        // Growing the table hashes its keys again (a few times per chunk, not per value).
        self.table
            .insert_unique(hash, (start, index), |&(start, _)| fx(entry(plain, start)));
        (start, index, true)
    }
}

/// The string entry whose value bytes start at `start` in a dictionary's PLAIN bytes (after
/// their 4-byte length).
#[inline(always)]
fn entry(plain: &[u8], start: u32) -> &[u8] {
    let start = start as usize;
    let len = u32::from_le_bytes(plain[start - 4..start].try_into().expect("4 bytes")) as usize;
    &plain[start..start + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_equality_matches_the_slice_method() {
        let text: Vec<u8> = (0..200u8).map(|k| b'a' + k % 11).collect();
        for n in 0..text.len() {
            let a = &text[..n];
            let mut b = a.to_vec();
            assert!(same(a, &b));
            assert!(!same(a, &text[..n + 1]));
            for k in 0..n {
                b[k] ^= 1;
                assert!(!same(a, &b), "{n} {k}");
                b[k] ^= 1;
            }
        }
    }

    #[test]
    fn equal_keys_hash_alike_and_near_keys_apart() {
        let text: Vec<u8> = (0..40u8).map(|k| b'0' + k % 10).collect();
        let mut seen = std::collections::HashSet::new();
        for n in 0..text.len() {
            let copy = text[..n].to_vec();
            assert_eq!(fx(&text[..n]), fx(&copy));
            assert!(seen.insert(fx(&text[..n])), "length {n} collides");
        }
    }

    #[test]
    fn hinted_and_hashed_lookups_agree() {
        // Past `HINTED` entries the hints are no longer used; keys that share their first and
        // last eight bytes and length share a hint slot.
        let mut d = Dict::new();
        let key = |k: usize| format!("01234567-{k:05}-89abcdef").into_bytes();
        let order: Vec<usize> = (0..2_000).map(|k| k * 7919 % 2_000).collect();
        let mut first = vec![None; 2_000];
        for &k in &order {
            let (i, new) = d.intern(&key(k));
            assert!(new);
            first[k] = Some(i);
        }
        for &k in order.iter().rev() {
            assert_eq!(d.intern(&key(k)), (first[k].unwrap(), false));
        }
        let mut small = Dict::new();
        for round in 0..3 {
            for k in [5, 1, 5, 9, 1, 0] {
                let (i, _) = small.intern(&key(k));
                assert_eq!(
                    entry(&small.plain, small.last.unwrap().0),
                    &key(k)[..],
                    "{round}"
                );
                assert!(i < 4);
            }
        }
        assert_eq!(small.len(), 4);
    }

    #[test]
    fn interning_finds_each_key_once() {
        let mut d = Dict::new();
        let keys = [
            "a",
            "bb",
            "Microsoft.Compute",
            "a",
            "",
            "bb",
            "",
            "Microsoft.Compute",
        ];
        let got: Vec<(u32, bool)> = keys.iter().map(|k| d.intern(k.as_bytes())).collect();
        assert_eq!(
            got,
            [
                (0, true),
                (1, true),
                (2, true),
                (0, false),
                (3, true),
                (1, false),
                (3, false),
                (2, false)
            ]
        );
        assert_eq!(d.len(), 4);
        assert_eq!(&d.plain[..5], &[1, 0, 0, 0, b'a']);
    }

    #[test]
    fn entries_survive_the_table_growing() {
        // The table keeps no hashes: growing it hashes the keys again from the PLAIN bytes.
        let (mut strings, mut fixed) = (Dict::new(), Dict::new());
        let key = |k: u32| format!("{k:0width$}", width = (k % 40) as usize);
        for round in 0..2 {
            for k in 0..5_000u32 {
                let new = round == 0;
                assert_eq!(strings.intern(key(k).as_bytes()), (k, new), "{k}");
                let v = u128::from(k) << 70 | 7;
                assert_eq!(fixed.intern_fixed(v, &v.to_le_bytes()), k, "{k}");
            }
        }
        assert_eq!((strings.len(), fixed.len()), (5_000, 5_000));
        assert_eq!(fixed.plain.len(), 5_000 * 16);
    }
}
