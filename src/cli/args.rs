//! What `export` accepts on its command line, and what its exit codes mean.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use time::Month;

use crate::billing::{AttributeSet, BillingPeriod, CurrencyCode, ExportKind, InvoiceId, PartnerId};

/// `partner-billing-export export`: run exports end to end from this machine.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Partner tenant (an id from PARTNERS / PARTNERS_FILE) to export for; required when the
    /// configuration lists several. Its kinds, currencies and folder apply.
    #[arg(long, value_name = "ID")]
    pub partner: Option<PartnerId>,
    /// Export kind (repeatable or comma-separated): billedUsage, billedReconciliation,
    /// unbilledUsage, unbilledReconciliation. Default: all four.
    #[arg(long = "kind", value_name = "KIND", value_delimiter = ',')]
    pub kinds: Vec<ExportKind>,
    /// Invoice id for billed exports (repeatable or comma-separated), e.g. G016907411.
    #[arg(long = "invoice", value_name = "ID", value_delimiter = ',')]
    pub invoices: Vec<InvoiceId>,
    /// Billing months whose invoices to export, discovered in Partner Center: 2026-10 or
    /// 2025-09..2026-10. Default (without --invoice): last month.
    #[arg(long, value_name = "FROM..TO", conflicts_with = "invoices")]
    pub months: Option<MonthRange>,
    /// Unbilled billing period (repeatable): current or last. Default: EXPORT_UNBILLED_PERIODS (current).
    #[arg(long = "period", value_name = "PERIOD", value_delimiter = ',')]
    pub periods: Vec<BillingPeriod>,
    /// Currency of unbilled exports (repeatable). Default: EXPORT_UNBILLED_CURRENCIES (USD).
    #[arg(long = "currency", value_name = "CODE", value_delimiter = ',')]
    pub currencies: Vec<CurrencyCode>,
    /// full or basic. Default: EXPORT_ATTRIBUTE_SET (full).
    #[arg(long, value_name = "SET")]
    pub attribute_set: Option<AttributeSet>,
    /// Output folder (data, _manifest.json per run, the run ledger, events.jsonl). Default:
    /// ./billing-exports, or the blob destination when DESTINATION_KIND=blob is set.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the plan (what would be exported, what is already in the ledger) and start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable progress: one JSON object per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Partitions copied at the same time.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

/// The process exit codes of `export` (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every export completed (or Graph had no data for it).
    Completed,
    /// At least one export failed.
    SomeFailed,
    /// Bad arguments or settings, not signed in, destination not writable.
    Usage,
    /// Stopped by Ctrl-C (or SIGTERM); a rerun continues.
    Interrupted,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Completed => 0,
            ExitStatus::SomeFailed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Interrupted => 130,
        }
    }
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct YearMonth {
    pub year: i32,
    pub month: Month,
}

impl YearMonth {
    pub fn next(self) -> Self {
        match self.month {
            Month::December => Self {
                year: self.year + 1,
                month: Month::January,
            },
            m => Self {
                year: self.year,
                month: m.next(),
            },
        }
    }
}

impl FromStr for YearMonth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a month; expected YYYY-MM, e.g. 2026-10");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        if !(2000..=2100).contains(&year) || y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let month = Month::try_from(month).map_err(|_| bad())?;
        Ok(Self { year, month })
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, u8::from(self.month))
    }
}

/// `2026-10` or `2025-09..2026-10` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthRange {
    pub from: YearMonth,
    pub to: YearMonth,
}

/// A backfill longer than this is almost certainly a typo.
pub const MAX_MONTHS: usize = 120;

impl MonthRange {
    pub fn single(m: YearMonth) -> Self {
        Self { from: m, to: m }
    }

    /// Every month from `from` to `to`, in order.
    pub fn months(&self) -> Vec<YearMonth> {
        let mut out = vec![self.from];
        while let Some(last) = out.last().copied().filter(|m| *m < self.to) {
            out.push(last.next());
        }
        out
    }
}

impl FromStr for MonthRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let range = match s.split_once("..") {
            Some((a, b)) => Self {
                from: a.parse()?,
                to: b.parse()?,
            },
            None => Self::single(s.parse()?),
        };
        if range.from > range.to {
            return Err(format!(
                "{s:?}: the range ends ({}) before it starts ({})",
                range.to, range.from
            ));
        }
        if range.months().len() > MAX_MONTHS {
            return Err(format!("{s:?}: more than {MAX_MONTHS} months"));
        }
        Ok(range)
    }
}

impl fmt::Display for MonthRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}..{}", self.from, self.to)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_ranges() {
        let r: MonthRange = "2025-11..2026-02".parse().unwrap();
        let shown: Vec<String> = r.months().iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["2025-11", "2025-12", "2026-01", "2026-02"]);
        assert_eq!("2026-10".parse::<MonthRange>().unwrap().months().len(), 1);
        for bad in [
            "2026-13",
            "2026-1",
            "26-10",
            "2026-10..2026-09",
            "x",
            "2000-01..2020-01",
        ] {
            assert!(bad.parse::<MonthRange>().is_err(), "{bad}");
        }
        assert_eq!(r.to_string(), "2025-11..2026-02");
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            ExitStatus::Completed,
            ExitStatus::SomeFailed,
            ExitStatus::Usage,
            ExitStatus::Interrupted,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 130]);
    }
}
