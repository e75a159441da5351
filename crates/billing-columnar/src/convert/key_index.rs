//! An index from byte keys to small integers, hashed with the dictionaries' inline hash.

use hashbrown::HashTable;

use crate::dict::{fx, same};

/// Keys and their indices (the order of first insertion). The invoice check looks up every
/// row's customer total here: through `HashMap`'s SipHash that lookup was 3% of the parser's
/// thread (callgrind), for keys of about 70 bytes. The hash is not keyed, so input written to
/// collide could slow the lookups down, as it could the column dictionaries' (which hash
/// every value with it); either is bounded by the partition's size.
#[derive(Default)]
pub(super) struct KeyIndex {
    table: HashTable<(u64, usize)>,
    keys: Vec<Box<[u8]>>,
}

impl KeyIndex {
    /// The index of `key`, if it was inserted.
    pub fn get(&self, key: &[u8]) -> Option<usize> {
        let hash = fx(key);
        self.table
            .find(hash, |&(h, i)| h == hash && same(&self.keys[i], key))
            .map(|&(_, i)| i)
    }

    /// Inserts `key` (not present yet) as the next index; returns it.
    pub fn insert(&mut self, key: &[u8]) -> usize {
        let i = self.keys.len();
        let hash = fx(key);
        self.keys.push(key.into());
        self.table.insert_unique(hash, (hash, i), |&(h, _)| h);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_get_their_insertion_index_back() {
        let mut index = KeyIndex::default();
        let keys: Vec<Vec<u8>> = (0..500u32)
            .map(|k| format!("customer-{k}\u{ff}EUR").into_bytes())
            .collect();
        for (k, key) in keys.iter().enumerate() {
            assert_eq!(index.get(key), None);
            assert_eq!(index.insert(key), k);
        }
        for (k, key) in keys.iter().enumerate() {
            assert_eq!(index.get(key), Some(k));
        }
        assert_eq!(index.get(b"customer-500\xffEUR"), None);
    }
}
