//! Exact money amounts as the invoice events carry them: decimal strings.

use billing_columnar as columnar;
use serde::{Deserialize, Serialize};

/// An amount with the converter's decimal scale (`columnar::DECIMAL_SCALE` fractional digits),
/// as a string in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Amount(i128);

impl Amount {
    pub const SCALE: u32 = columnar::DECIMAL_SCALE;

    pub fn from_decimal(d: columnar::Decimal) -> Self {
        Self(d.scaled())
    }

    pub fn checked_add(self, o: Amount) -> Option<Amount> {
        self.0.checked_add(o.0).map(Amount)
    }

    pub fn checked_sub(self, o: Amount) -> Option<Amount> {
        self.0.checked_sub(o.0).map(Amount)
    }

    pub fn abs_diff(self, o: Amount) -> Option<Amount> {
        self.0.checked_sub(o.0).map(|d| Amount(d.abs()))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn from_int(n: u64) -> Self {
        Self(i128::from(n) * 10i128.pow(Self::SCALE))
    }

    /// `self × o`, rounded half away from zero to the scale.
    pub fn checked_mul(self, o: Amount) -> Option<Amount> {
        columnar::Decimal::from_scaled(self.0)
            .checked_mul(columnar::Decimal::from_scaled(o.0))
            .map(|d| Amount(d.scaled()))
    }
}

impl std::str::FromStr for Amount {
    type Err = String;
    /// Plain decimal notation (`-12840.55`), or a JSON number with an exponent.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a decimal amount");
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i32>().map_err(|_| bad())?),
            None => (s, 0),
        };
        let (neg, digits) = match mantissa.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            || int.len() + frac.len() > 36
        {
            return Err(bad());
        }
        let shift = Self::SCALE as i32 - frac.len() as i32 + exp;
        let mut v: i128 = format!("{int}{frac}").parse().unwrap_or(0);
        if shift >= 0 {
            v = v
                .checked_mul(10i128.checked_pow(shift as u32).ok_or_else(bad)?)
                .ok_or_else(bad)?;
        } else {
            // More digits than we keep: round half away from zero.
            let p = 10i128.checked_pow((-shift) as u32).ok_or_else(bad)?;
            v = (v + p / 2) / p;
        }
        Ok(Self(if neg { -v } else { v }))
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", columnar::Decimal::from_scaled(self.0))
    }
}

impl TryFrom<String> for Amount {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Amount> for String {
    fn from(a: Amount) -> String {
        a.to_string()
    }
}
