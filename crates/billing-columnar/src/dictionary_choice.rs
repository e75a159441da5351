//! Whether a column chunk keeps a dictionary, decided on the first batch of its row group.

use crate::chunk::DICTIONARY_LIMIT;
use crate::columns::{ColBuf, Values};
use crate::dict::{fixed_hash, fx};

/// Whether a dictionary would not pay for this column in a row group of `group_rows` rows,
/// judged on a sample spread over the whole batch. A sample at most half distinct keeps the
/// dictionary (a column whose sample is a single value too: files clustered by customer or
/// subscription make low-cardinality columns look constant over the first rows); one all
/// distinct (UUID-like strings, amounts) goes PLAIN, where a dictionary costs a hash per
/// value and holds every value again for no saving. In between, the sample's repeats tell
/// how many distinct values the whole row group would hold (drawn from `D` values equally
/// likely, `n` draws give `D(1 - e^(-n/D))` distinct): a dictionary pays when that is at most
/// half the rows and fits half the dictionary limit. A batch sees a few thousand rows, so a
/// column of a few thousand JSON texts (`AdditionalInfo`) looked unique in it, yet repeats
/// all over a row group: as PLAIN it was a quarter of the bytes zstd compressed. Amounts and
/// other fixed-width values are judged on the sample alone: their repeats are skewed (zeros
/// and round amounts repeat, most do not), which the model does not fit (measured on the
/// bench's partition: dictionaries of amounts came out larger than PLAIN).
pub(crate) fn useless(col: &ColBuf, group_rows: usize) -> bool {
    let n = match &col.values {
        Values::Str { ends, .. } => ends.len(),
        Values::Dec(v) => v.len(),
        Values::Int(v) | Values::Ts(v) => v.len(),
        Values::Date(v) => v.len(),
    };
    if n < MIN_VALUES_FOR_PLAIN {
        return false;
    }
    let sample = (0..n).step_by(n.div_ceil(DICTIONARY_SAMPLE));
    // Hashes of the sample, counted distinct by sorting (no hash set per column and row
    // group), and for strings the sample's bytes.
    let (mut seen, bytes): (Vec<u64>, Option<usize>) = match &col.values {
        Values::Str { .. } => {
            let mut bytes = 0;
            let seen = sample
                .map(|i| {
                    let v = col.str_at(i);
                    bytes += v.len() + 4;
                    fx(v)
                })
                .collect();
            (seen, Some(bytes))
        }
        Values::Dec(v) => (sample.map(|i| fixed_hash(v[i] as u128)).collect(), None),
        Values::Int(v) | Values::Ts(v) => {
            (sample.map(|i| fixed_hash(v[i] as u128)).collect(), None)
        }
        Values::Date(v) => (sample.map(|i| fixed_hash(v[i] as u128)).collect(), None),
    };
    let taken = seen.len();
    seen.sort_unstable();
    seen.dedup();
    let distinct = seen.len();
    if distinct * 2 <= taken {
        return false;
    }
    let Some(bytes) = bytes.filter(|_| distinct < taken) else {
        return true;
    };
    let in_group = expected_distinct(distinct as f64, taken as f64, group_rows as f64);
    let dictionary_bytes = in_group * bytes as f64 / taken as f64;
    in_group * 2.0 > group_rows as f64 || dictionary_bytes > (DICTIONARY_LIMIT / 2) as f64
}

/// Distinct values among `rows` draws from `D` equally likely values, where `D` is what makes
/// `sampled` draws show `distinct` values (`0 < distinct < sampled`).
fn expected_distinct(distinct: f64, sampled: f64, rows: f64) -> f64 {
    let seen = |d: f64, n: f64| d * (1.0 - (-n / d).exp());
    // `seen` grows with `D`: bisect between `distinct` and a bound far past any row group.
    let (mut lo, mut hi) = (distinct, 1e12);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if seen(mid, sampled) < distinct {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    seen(hi, rows)
}

/// Below this many values in a row group's first batch a column keeps its dictionary.
const MIN_VALUES_FOR_PLAIN: usize = 64;
/// How many values, spread evenly over a row group's first batch, decide whether a column
/// keeps its dictionary in that row group.
const DICTIONARY_SAMPLE: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnType;

    fn strings(values: impl Iterator<Item = String>) -> ColBuf {
        let mut col = ColBuf::new(ColumnType::String);
        for v in values {
            col.push_str(v.as_bytes());
        }
        col
    }

    #[test]
    fn a_dictionary_where_values_repeat_over_the_row_group() {
        let rows = 64 * 1024;
        // Repeats within the batch: a dictionary.
        let few = strings((0..1500).map(|i| format!("customer-{}", i % 40)));
        assert!(!useless(&few, rows));
        // All distinct: PLAIN.
        let unique = strings((0..1500).map(|i| format!("/subscriptions/{i:08}/vm")));
        assert!(useless(&unique, rows));
        // 3,000 JSON texts drawn at random: a batch of 1,500 rows shows most once, yet the
        // row group repeats each about 20 times and their dictionary is small: a dictionary.
        let mut x: u64 = 7;
        let mut draw = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % 3000
        };
        let info =
            strings((0..1500).map(|_| format!("{{\"VMName\":\"vm-{:04}\",\"VCPUs\":2}}", draw())));
        assert!(!useless(&info, rows));
        // The same kind of column in a row group too small for values to repeat: PLAIN.
        assert!(useless(&info, 2000));
        // 30,000 texts of 60 bytes: most of them in a row group, a dictionary past half the
        // limit: PLAIN.
        let wide = strings((0..1500).map(|_| format!("{:060}", draw() * 10 + draw() % 10)));
        assert!(useless(&wide, rows));
        // Amounts are judged on the sample alone (skewed: a few repeat, most do not).
        let mut amounts = ColBuf::new(ColumnType::Decimal);
        for i in 0..1500i128 {
            if let Values::Dec(v) = &mut amounts.values {
                v.push(if i % 3 == 0 { 0 } else { i * 7919 });
            }
            amounts.defs.push(1);
        }
        assert!(useless(&amounts, rows));
    }

    #[test]
    fn the_expected_distinct_count_inverts_the_sample() {
        // 1,180 distinct of 1,500 draws: about 3,000 values, all seen in 64k rows.
        let d = expected_distinct(1180.0, 1500.0, 65536.0);
        assert!((2900.0..3100.0).contains(&d), "{d}");
        // Nearly all distinct: far more values than rows.
        let d = expected_distinct(1499.0, 1500.0, 65536.0);
        assert!(d > 60000.0, "{d}");
    }
}
