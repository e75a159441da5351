//! Exact parsing of the scalar values Microsoft writes: decimals into scaled integers, ISO 8601
//! days and instants into Parquet's integer encodings. No floating point anywhere.

use std::fmt;

use crate::bytes16::digit_run;
use crate::schema::DECIMAL_SCALE;

/// A decimal with [`DECIMAL_SCALE`] fractional digits (value = `scaled` / 10^DECIMAL_SCALE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal {
    scaled: i128,
}

const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

const ONE: i128 = POW10[DECIMAL_SCALE as usize];
/// Exclusive bound of `scaled`: the 38 digits of DECIMAL(38, s).
const LIMIT: i128 = POW10[38];

/// Why a value could not be read as its column's type (the caller adds line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValueError {
    NotANumber,
    OutOfRange,
    NotIntegral,
    NotADate,
    NotMidnight,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueError::NotANumber => "not a decimal number",
            ValueError::OutOfRange => "out of the DECIMAL(38) / INT64 range",
            ValueError::NotIntegral => "not a whole number",
            ValueError::NotADate => "not an ISO 8601 date or date-time",
            ValueError::NotMidnight => "a date column with a time other than midnight",
        })
    }
}

impl Decimal {
    pub const ZERO: Decimal = Decimal { scaled: 0 };
    pub const ONE: Decimal = Decimal { scaled: ONE };

    /// From the integer holding value × 10^[`DECIMAL_SCALE`].
    pub fn from_scaled(scaled: i128) -> Self {
        Self { scaled }
    }

    /// A whole number.
    pub fn from_integer(n: i64) -> Self {
        Self {
            scaled: i128::from(n) * ONE,
        }
    }

    /// The integer holding value × 10^[`DECIMAL_SCALE`].
    pub fn scaled(self) -> i128 {
        self.scaled
    }

    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        self.scaled
            .checked_add(other.scaled)
            .map(Decimal::from_scaled)
    }

    /// Parses a JSON number (`-12.5`, `1E-3`, `3.5999999999999998E-06`); `+` and surrounding
    /// whitespace are rejected like JSON does. Digits past [`DECIMAL_SCALE`] places are rounded
    /// half to even (the flag says so); anything else is exact.
    pub(crate) fn parse(s: &[u8]) -> Result<(Decimal, bool), ValueError> {
        let (neg, rest) = match s.split_first() {
            Some((b'-', r)) => (true, r),
            _ => (false, s),
        };
        if let Some((scaled, rounded)) = parse_short(rest) {
            return Ok((
                Decimal::from_scaled(if neg { -scaled } else { scaled }),
                rounded,
            ));
        }
        Self::parse_long(neg, rest)
    }

    /// [`Self::parse`] for any number (after its sign): digits gathered 18 at a time, any
    /// exponent, rounding and range checks.
    fn parse_long(neg: bool, mut rest: &[u8]) -> Result<(Decimal, bool), ValueError> {
        // Digits gather in a u64 (18 at a time), cheaper than an i128 step per digit.
        let mut mantissa = Digits::default();
        let mut digits = 0usize;
        let mut frac_digits: i64 = 0;
        // Leading zeros do not count against the 38-digit budget.
        let mut significant = 0usize;
        let mut push = |d: u8, mantissa: &mut Digits| -> Result<(), ValueError> {
            if !mantissa.is_zero() || d != 0 {
                significant += 1;
            }
            if significant > 38 {
                return Err(ValueError::OutOfRange);
            }
            mantissa.push(d);
            Ok(())
        };
        while let Some((&b, r)) = rest.split_first() {
            if !b.is_ascii_digit() {
                break;
            }
            push(b - b'0', &mut mantissa)?;
            digits += 1;
            rest = r;
        }
        if digits == 0 {
            return Err(ValueError::NotANumber);
        }
        if let Some((b'.', r)) = rest.split_first() {
            rest = r;
            let before = digits;
            while let Some((&b, r)) = rest.split_first() {
                if !b.is_ascii_digit() {
                    break;
                }
                push(b - b'0', &mut mantissa)?;
                digits += 1;
                frac_digits += 1;
                rest = r;
            }
            if digits == before {
                return Err(ValueError::NotANumber);
            }
        }
        let mut exp: i64 = 0;
        if let Some((b'e' | b'E', r)) = rest.split_first() {
            rest = r;
            let eneg = match rest.split_first() {
                Some((b'-', r)) => {
                    rest = r;
                    true
                }
                Some((b'+', r)) => {
                    rest = r;
                    false
                }
                _ => false,
            };
            let mut n = 0usize;
            while let Some((&b, r)) = rest.split_first() {
                if !b.is_ascii_digit() {
                    break;
                }
                exp = (exp * 10 + i64::from(b - b'0')).min(10_000);
                n += 1;
                rest = r;
            }
            if n == 0 {
                return Err(ValueError::NotANumber);
            }
            if eneg {
                exp = -exp;
            }
        }
        if !rest.is_empty() {
            return Err(ValueError::NotANumber);
        }
        let shift = i64::from(DECIMAL_SCALE) - frac_digits + exp;
        let (scaled, rounded) = rescale(mantissa.value(), shift)?;
        if scaled >= LIMIT {
            return Err(ValueError::OutOfRange);
        }
        Ok((
            Decimal::from_scaled(if neg { -scaled } else { scaled }),
            rounded,
        ))
    }

    /// A whole number of at most 18 digits after an optional minus, read in `i64` arithmetic;
    /// `None` for anything else (a fraction, an exponent, more digits), which [`Self::parse`]
    /// and [`Self::to_integer`] then read. Percentages are such integers on every row, and
    /// through those two each cost two `i128` divisions (perf: 1.3% of the parser's thread).
    #[inline]
    pub(crate) fn parse_whole(s: &[u8]) -> Option<i64> {
        let (neg, digits) = match s.split_first() {
            Some((b'-', r)) => (true, r),
            _ => (false, s),
        };
        if digits.is_empty() || digits.len() > 18 || digit_run(digits) != digits.len() {
            return None;
        }
        // Below 10^18: within i64, either sign.
        let n = digits_value(0, digits) as i64;
        Some(if neg { -n } else { n })
    }

    /// The value as a whole number, if it is one.
    pub(crate) fn to_integer(self) -> Result<i64, ValueError> {
        if self.scaled % ONE != 0 {
            return Err(ValueError::NotIntegral);
        }
        i64::try_from(self.scaled / ONE).map_err(|_| ValueError::OutOfRange)
    }

    /// The product of `factors` left to right, each step as [`Self::checked_mul`] rounds it;
    /// `None` when there are none, one is missing, or the product overflows. The first
    /// factor starts the product (multiplying by one would cost a 128-bit division).
    pub fn product(factors: impl IntoIterator<Item = Option<Decimal>>) -> Option<Decimal> {
        let mut factors = factors.into_iter();
        let first = factors.next()??;
        factors.try_fold(first, |acc, f| acc.checked_mul(f?))
    }

    /// `self × other`, rounded half away from zero to [`DECIMAL_SCALE`] places; `None` when
    /// the product has more than 38 digits.
    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        let neg = (self.scaled < 0) != (other.scaled < 0);
        let (hi, lo) = mul_u128(self.scaled.unsigned_abs(), other.scaled.unsigned_abs());
        // Products of ordinary prices and quantities fit in 128 bits: the long division is
        // only for the rest.
        let (q, r) = if hi == 0 {
            (lo / ONE as u128, lo % ONE as u128)
        } else {
            div_u256(hi, lo, ONE as u128)?
        };
        let q = if r * 2 >= ONE as u128 { q + 1 } else { q };
        let q = i128::try_from(q).ok().filter(|q| *q < LIMIT)?;
        Some(Decimal::from_scaled(if neg { -q } else { q }))
    }
}

/// The scaled value (and whether digits were rounded off) of `digits[.digits][e[±]digits]`
/// with at most 19 digits before the exponent (every amount Microsoft writes, including .NET
/// doubles such as `3.5999999999999998E-06`), in u64 arithmetic: the general parser's i128
/// division was a third of reading such a value. `None` for anything else, which the general
/// parser then reads, rounds or rejects.
#[inline]
fn parse_short(s: &[u8]) -> Option<(i128, bool)> {
    if s.len() > 26 {
        return None;
    }
    // Digit runs found 16 bytes at a time and read 8 digits at a time (a .NET double has 17).
    let int_digits = digit_run(s);
    let mut i = int_digits;
    let mut frac: &[u8] = &[];
    if s.get(i) == Some(&b'.') {
        frac = &s[i + 1..][..digit_run(&s[i + 1..])];
        if frac.is_empty() {
            return None;
        }
        i += 1 + frac.len();
    }
    let frac_digits = frac.len();
    if int_digits == 0 || int_digits + frac_digits > 19 {
        return None;
    }
    // At most 19 digits: below 10^19, within u64.
    let mantissa = digits_value(digits_value(0, &s[..int_digits]), frac);
    if i < s.len() && !matches!(s[i], b'e' | b'E') {
        return None;
    }
    let mut exp = 0i64;
    if i < s.len() {
        let (neg, digits) = match &s[i + 1..] {
            [b'-', d @ ..] => (true, d),
            [b'+', d @ ..] => (false, d),
            d => (false, d),
        };
        if digits.is_empty() || digits.len() > 3 {
            return None;
        }
        for &b in digits {
            if !b.is_ascii_digit() {
                return None;
            }
            exp = exp * 10 + i64::from(b - b'0');
        }
        if neg {
            exp = -exp;
        }
    }
    let shift = i64::from(DECIMAL_SCALE) - frac_digits as i64 + exp;
    match shift {
        // Below 10^19 × 10^19: within DECIMAL(38).
        0..=19 => Some((i128::from(mantissa) * POW10[shift as usize], false)),
        -19..=-1 => {
            let p = 10u64.pow((-shift) as u32);
            let (q, r) = (mantissa / p, mantissa % p);
            // Half to even, as the general parser rounds.
            let up = match (u128::from(r) * 2).cmp(&u128::from(p)) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => q % 2 == 1,
                std::cmp::Ordering::Less => false,
            };
            Some((i128::from(q) + i128::from(up), r != 0))
        }
        _ => None,
    }
}

/// `m` followed by the decimal digits `d` (the caller keeps the result below 2^64).
#[inline]
fn digits_value(mut m: u64, mut d: &[u8]) -> u64 {
    while let Some((eight, rest)) = d.split_first_chunk::<8>() {
        m = m * 100_000_000 + eight_digits(eight);
        d = rest;
    }
    d.iter().fold(m, |m, &b| m * 10 + u64::from(b - b'0'))
}

/// The value of eight ASCII digits, most significant first, by three multiplications that
/// combine neighbouring digits, then pairs, then quadruples (bytes are little-endian, so the
/// first digit is the lowest byte).
#[inline]
fn eight_digits(d: &[u8; 8]) -> u64 {
    let v = u64::from_le_bytes(*d) & 0x0F0F_0F0F_0F0F_0F0F;
    let v = v.wrapping_mul(1 + (10 << 8)) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(1 + (100 << 16)) >> 16;
    (v & 0x0000_FFFF_0000_FFFF).wrapping_mul(1 + (10_000 << 32)) >> 32
}

/// Full 256-bit product of two u128 as (high, low).
fn mul_u128(a: u128, b: u128) -> (u128, u128) {
    let mask = u128::from(u64::MAX);
    let (a1, a0) = (a >> 64, a & mask);
    let (b1, b0) = (b >> 64, b & mask);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & mask) + (p10 & mask);
    let lo = (p00 & mask) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

/// (hi:lo) / d as (quotient, remainder) when the quotient fits in u128.
fn div_u256(hi: u128, lo: u128, d: u128) -> Option<(u128, u128)> {
    if hi >= d {
        return None;
    }
    // Bit-by-bit long division: only used for derived FOCUS costs, never on the hot path of
    // the typed output.
    let (mut rem, mut q) = (hi, 0u128);
    for i in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((lo >> i) & 1);
        q <<= 1;
        if carry == 1 || rem >= d {
            rem = rem.wrapping_sub(d);
            q |= 1;
        }
    }
    Some((q, rem))
}

impl fmt::Display for Decimal {
    /// Shortest exact form: `-12.5`, `0`, `0.000168`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let abs = self.scaled.unsigned_abs();
        let int = abs / ONE as u128;
        let frac = abs % ONE as u128;
        if self.scaled < 0 {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        if frac != 0 {
            let s = format!("{frac:0width$}", width = DECIMAL_SCALE as usize);
            write!(f, ".{}", s.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

/// A decimal mantissa being read digit by digit: up to 18 digits in `low`, earlier ones in
/// `high` (at most 38 significant digits in all, so `high * 10^18 + low` cannot overflow).
#[derive(Default)]
struct Digits {
    high: i128,
    low: u64,
    low_digits: usize,
}

impl Digits {
    #[inline]
    fn push(&mut self, d: u8) {
        if self.low_digits == 18 {
            self.high = self.high * POW10[18] + i128::from(self.low);
            self.low = 0;
            self.low_digits = 0;
        }
        self.low = self.low * 10 + u64::from(d);
        self.low_digits += 1;
    }

    fn is_zero(&self) -> bool {
        self.low == 0 && self.high == 0
    }

    fn value(&self) -> i128 {
        self.high * POW10[self.low_digits] + i128::from(self.low)
    }
}

/// `mantissa × 10^shift` as a scaled integer, rounded half to even when `shift` drops digits
/// (the flag says whether any non-zero digit went).
fn rescale(mantissa: i128, shift: i64) -> Result<(i128, bool), ValueError> {
    if mantissa == 0 {
        return Ok((0, false));
    }
    if shift >= 0 {
        let p = *POW10.get(shift as usize).ok_or(ValueError::OutOfRange)?;
        return Ok((
            mantissa.checked_mul(p).ok_or(ValueError::OutOfRange)?,
            false,
        ));
    }
    Ok(match POW10.get((-shift) as usize) {
        Some(&p) => {
            let (q, r) = (mantissa / p, mantissa % p);
            // Half to even: the rounding that does not drift sums of many values.
            let up = match (2 * r).cmp(&p) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => q % 2 == 1,
                std::cmp::Ordering::Less => false,
            };
            (q + i128::from(up), r != 0)
        }
        // 10^39 or more: a mantissa below 10^38 rounds to zero.
        None => (0, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Result<String, ValueError> {
        Decimal::parse(s.as_bytes()).map(|(d, _)| d.to_string())
    }

    fn rounded(s: &str) -> bool {
        Decimal::parse(s.as_bytes()).unwrap().1
    }

    /// The short path must agree with the general parser wherever it answers: values,
    /// rounding (half to even, ties included) and the rounded flag; it answers nothing for
    /// text that is not a number; and `Decimal::parse`, which tries it first, answers as the
    /// general parser does.
    #[test]
    fn the_short_path_agrees_with_the_general_one() {
        let mut answered = 0;
        let mut check = |text: &str| {
            let general = Decimal::parse_long(false, text.as_bytes());
            let short = parse_short(text.as_bytes());
            if let Some((v, rounded)) = short {
                answered += 1;
                assert_eq!(general, Ok((Decimal::from_scaled(v), rounded)), "{text}");
            }
            if text.contains('a') || text.is_empty() {
                assert_eq!(short, None, "{text}");
            }
            assert_eq!(Decimal::parse(text.as_bytes()), general, "{text}");
        };
        for text in [
            "0.1037807862",
            "000.5",
            "12345678901234567.8",
            "0.123456789012345678",
            "99999999999999999.9",
            "1.",
            ".5",
            "1..2",
            "1.2.3",
            "",
            "12a",
        ] {
            check(text);
        }
        let mantissas = [
            "0",
            "5",
            "25",
            "35",
            "1234567890123456789",
            "9999999999999999999",
            "36",
            "35999999999999998",
            "5000000000",
            "15000000000",
            "25000000000",
            "25000000001",
        ];
        for m in mantissas {
            for dot in 0..=m.len() {
                let (int, frac) = m.split_at(dot);
                let int = if int.is_empty() { "0" } else { int };
                let body = if frac.is_empty() {
                    int.to_string()
                } else {
                    format!("{int}.{frac}")
                };
                for exp in ["", "E-06", "e+3", "E-19", "e-7", "E0", "E-30", "E25", "e-1"] {
                    check(&format!("{body}{exp}"));
                }
            }
        }
        assert!(answered > 300, "the short path answered {answered} cases");
    }

    #[test]
    fn eight_digits_at_once_read_as_one_at_a_time() {
        for n in [
            0u64, 1, 9, 10, 12_345_678, 99_999_999, 10_000_001, 90_000_009, 31_415_926,
        ] {
            let text = format!("{n:08}");
            assert_eq!(
                eight_digits(text.as_bytes().try_into().unwrap()),
                n,
                "{text}"
            );
        }
        assert_eq!(
            digits_value(7, b"1234567890123456789"[..18].as_ref()),
            7_123_456_789_012_345_678
        );
    }

    #[test]
    fn products_start_from_their_first_factor() {
        let d = |t: &str| Decimal::parse(t.as_bytes()).unwrap().0;
        let all = [Some(d("0.02")), Some(d("0.9213")), Some(d("3.5"))];
        let by_steps = d("0.02")
            .checked_mul(d("0.9213"))
            .unwrap()
            .checked_mul(d("3.5"));
        assert_eq!(Decimal::product(all), by_steps);
        assert_eq!(Decimal::product([Some(d("-1.5"))]), Some(d("-1.5")));
        assert_eq!(Decimal::product([Some(d("2")), None]), None);
        assert_eq!(Decimal::product([None, Some(d("2"))]), None);
        assert_eq!(Decimal::product(std::iter::empty()), None);
        let big = d("99999999999999999999");
        assert_eq!(Decimal::product([Some(big), Some(big)]), None);
    }

    #[test]
    fn decimals_are_exact_to_the_scale() {
        assert_eq!(
            DECIMAL_SCALE, 12,
            "the tests below are written for 12 places"
        );
        assert_eq!(dec("0.1").unwrap(), "0.1");
        assert_eq!(dec("-12.500").unwrap(), "-12.5");
        assert_eq!(dec("1E-3").unwrap(), "0.001");
        assert_eq!(dec("2.5e2").unwrap(), "250");
        assert_eq!(dec("0.000000000001").unwrap(), "0.000000000001");
        assert_eq!(dec("0.0000000000010").unwrap(), "0.000000000001");
        assert!(!rounded("0.0000000000010"), "trailing zeros are exact");
        assert_eq!(dec("-0").unwrap(), "0");
        assert_eq!(dec("1e25").unwrap(), "10000000000000000000000000");
        assert_eq!(
            dec("1e26"),
            Err(ValueError::OutOfRange),
            "39 digits at scale 12"
        );
        for bad in ["", "-", "1.", ".5", "+1", "1e", "0x10", " 1", "1 ", "NaN"] {
            assert_eq!(dec(bad), Err(ValueError::NotANumber), "{bad:?}");
        }
        assert_eq!(Decimal::parse(b"15").unwrap().0.to_integer(), Ok(15));
        assert_eq!(
            Decimal::parse(b"1.5").unwrap().0.to_integer(),
            Err(ValueError::NotIntegral)
        );
    }

    #[test]
    fn whole_numbers_read_fast_as_the_general_parser_reads_them() {
        let general = |s: &str| {
            Decimal::parse(s.as_bytes()).and_then(|(d, rounded)| {
                if rounded {
                    Err(ValueError::NotIntegral)
                } else {
                    d.to_integer()
                }
            })
        };
        let max18 = "999999999999999999";
        for s in [
            "0",
            "-0",
            "7",
            "-7",
            "007",
            "15",
            "100",
            max18,
            &format!("-{max18}"),
        ] {
            assert_eq!(
                Decimal::parse_whole(s.as_bytes()).map(Ok),
                Some(general(s)),
                "{s}"
            );
        }
        // The rest is left to the general parser, which reads, rounds or rejects it.
        for s in [
            "",
            "-",
            "+1",
            "1.0",
            "1.5",
            "1e2",
            "1E-3",
            " 1",
            "1 ",
            "--1",
            "1-",
            "1a",
            "1000000000000000000",
            "-9223372036854775808",
        ] {
            assert_eq!(Decimal::parse_whole(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn extra_places_round_half_to_even() {
        // .NET prints doubles with up to 17 significant digits and exponents.
        assert_eq!(dec("3.5999999999999998E-06").unwrap(), "0.0000036");
        assert!(rounded("3.5999999999999998E-06"));
        assert_eq!(dec("0.10000000000000001").unwrap(), "0.1");
        assert_eq!(dec("-1.2345678901234567E-05").unwrap(), "-0.000012345679");
        // Ties go to the even neighbour, in both directions.
        assert_eq!(dec("0.0000000000005").unwrap(), "0");
        assert_eq!(dec("0.0000000000015").unwrap(), "0.000000000002");
        assert_eq!(dec("0.0000000000025").unwrap(), "0.000000000002");
        assert_eq!(dec("-0.0000000000025").unwrap(), "-0.000000000002");
        assert_eq!(dec("0.00000000000250001").unwrap(), "0.000000000003");
        assert_eq!(dec("2.4999999999999E-12").unwrap(), "0.000000000002");
        // System.Decimal's 28 digits and far-off exponents.
        assert_eq!(
            dec("0.1234567890123456789012345678").unwrap(),
            "0.123456789012"
        );
        assert_eq!(dec("1E-50").unwrap(), "0");
        assert!(rounded("1E-50"));
        assert!(!rounded("0E-50"));
    }

    #[test]
    fn long_mantissas_are_exact() {
        // Every length up to the 38-digit limit, with leading zeros and a fraction, against
        // the scaled value computed with i128 arithmetic directly.
        for len in 1..=38usize {
            let digits: String = (0..len)
                .map(|k| char::from(b'1' + (k * 7 % 9) as u8))
                .collect();
            let whole: i128 = digits.parse().unwrap();
            let frac = len.min(DECIMAL_SCALE as usize);
            let text = format!("000{}.{}", &digits[..len - frac], &digits[len - frac..]);
            let text = text.replace("000.", "0.");
            let parsed = Decimal::parse(text.as_bytes()).map(|(d, _)| d.scaled());
            let expected = whole.checked_mul(POW10[DECIMAL_SCALE as usize - frac]);
            match expected {
                Some(v) if len <= 38 => assert_eq!(parsed, Ok(v), "{text}"),
                _ => assert_eq!(parsed, Err(ValueError::OutOfRange), "{text}"),
            }
        }
        assert_eq!(
            Decimal::parse(b"123456789012345678901234567890123456789"),
            Err(ValueError::OutOfRange)
        );
        assert_eq!(
            Decimal::parse(b"-0.000000000000000000000").map(|(d, r)| (d.scaled(), r)),
            Ok((0, false))
        );
    }

    #[test]
    fn multiplication_rounds_half_away_from_zero() {
        let m = |a: &str, b: &str| {
            Decimal::parse(a.as_bytes())
                .unwrap()
                .0
                .checked_mul(Decimal::parse(b.as_bytes()).unwrap().0)
                .unwrap()
                .to_string()
        };
        assert_eq!(m("0.096", "47.5"), "4.56");
        assert_eq!(m("-2", "0.9213"), "-1.8426");
        assert_eq!(m("0.000000000001", "0.5"), "0.000000000001");
        assert_eq!(m("123456789012.5", "1000000"), "123456789012500000");
    }
}
