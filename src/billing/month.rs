//! A billing month (`2026-10`): what invoices belong to, what a backfill ranges over.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, Month};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BillingMonth {
    pub year: i32,
    pub month: Month,
}

impl BillingMonth {
    pub fn new(year: i32, month: Month) -> Self {
        Self { year, month }
    }

    /// The month `d` falls in.
    pub fn of(d: Date) -> Self {
        Self::new(d.year(), d.month())
    }

    pub fn next(self) -> Self {
        match self.month {
            Month::December => Self::new(self.year + 1, Month::January),
            m => Self::new(self.year, m.next()),
        }
    }

    pub fn previous(self) -> Self {
        match self.month {
            Month::January => Self::new(self.year - 1, Month::December),
            m => Self::new(self.year, m.previous()),
        }
    }

    /// `yyyyMM`, as Microsoft's folders (`BillingMonth=202610`) and our output paths write it.
    pub fn compact(self) -> String {
        format!("{:04}{:02}", self.year, u8::from(self.month))
    }

    /// Every month from `self` to `to`, both included (empty when `to` is earlier).
    pub fn through(self, to: Self) -> Vec<Self> {
        let mut out = Vec::new();
        let mut m = self;
        while m <= to {
            out.push(m);
            m = m.next();
        }
        out
    }
}

impl FromStr for BillingMonth {
    type Err = String;
    /// `2026-10` or `202610`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("{s:?} is not a month; expected YYYY-MM, e.g. 2026-10");
        let (y, m) = match s.split_once('-') {
            Some(parts) => parts,
            None if s.len() == 6 => s.split_at(4),
            None => return Err(bad()),
        };
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        if !(2000..=2100).contains(&year) {
            return Err(bad());
        }
        Ok(Self::new(year, Month::try_from(month).map_err(|_| bad())?))
    }
}

impl TryFrom<String> for BillingMonth {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BillingMonth> for String {
    fn from(m: BillingMonth) -> String {
        m.to_string()
    }
}

impl fmt::Display for BillingMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, u8::from(self.month))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn parses_steps_and_ranges() {
        let m: BillingMonth = "2026-01".parse().unwrap();
        assert_eq!(m, "202601".parse().unwrap());
        assert_eq!(m.previous().to_string(), "2025-12");
        assert_eq!(m.previous().next(), m);
        assert_eq!(m.compact(), "202601");
        assert_eq!(BillingMonth::of(date!(2026 - 01 - 31)), m);
        assert_eq!(m.previous().previous().through(m).len(), 3);
        assert!(m.through(m.previous()).is_empty());
        for bad in ["2026-13", "26-01", "2026/01", "", "1999-01"] {
            assert!(bad.parse::<BillingMonth>().is_err(), "{bad}");
        }
    }
}
