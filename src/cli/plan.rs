//! What `export` asks the shared planner for: its arguments become a [`PlanScope`], so the
//! command plans exactly as the timers do (history floor, not-invoiced-yet guard, the ledger's
//! finished and running exports), and `--force` exports finished work again.

use std::collections::BTreeSet;

use time::Date;

use super::args::ExportArgs;
use crate::billing::ExportKind;
use crate::config::PlanConfig;
use crate::planner::{PlanScope, Skipped};

/// Whether the plan needs Partner Center to find invoices (billed kinds, no invoice ids).
pub fn needs_discovery(args: &ExportArgs, cfg: &PlanConfig) -> bool {
    kinds(args, cfg).iter().any(|k| k.is_billed())
        && args.invoices.is_empty()
        && cfg.invoice_ids.is_empty()
        && cfg.discover_invoices
}

fn kinds(args: &ExportArgs, cfg: &PlanConfig) -> Vec<ExportKind> {
    if args.kinds.is_empty() {
        cfg.kinds.clone()
    } else {
        args.kinds
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// The scope `args` select for a partner planned with `cfg` on `today`, and the months it
/// leaves out with the reason (`--months` before the history floor, or not invoiced yet).
/// `--months` selects invoices; the unbilled periods are `--period` or the configured ones.
pub fn scope(args: &ExportArgs, cfg: &PlanConfig, today: Date) -> (PlanScope, Vec<Skipped>) {
    let kinds = kinds(args, cfg);
    let mut scope = PlanScope {
        kinds: kinds.clone(),
        ..PlanScope::both_timers(cfg, today)
    };
    let mut skipped = Vec::new();
    if let Some(range) = args.months {
        let billed = kinds.iter().copied().filter(|k| k.is_billed()).collect();
        let (months, month_skips) =
            PlanScope::backfill(cfg, range.from, range.to, Some(billed), today);
        scope.months = months.months;
        skipped = month_skips;
    }
    if !args.periods.is_empty() {
        scope.periods = args.periods.clone();
    }
    scope.invoices = args.invoices.clone();
    scope.currencies = args.currencies.clone();
    scope.attribute_set = args.attribute_set;
    scope.force = args.force;
    (scope, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::BillingPeriod;
    use crate::cli::args::parse_for_test;
    use time::macros::date;

    fn cfg() -> PlanConfig {
        crate::config::Config::load(&crate::config::Settings::new(|k| {
            (k == crate::settings::DESTINATION_ACCOUNT_URL)
                .then(|| "https://acct.blob.core.windows.net".to_string())
        }))
        .expect("defaults load")
        .partners[0]
            .plan
            .clone()
    }

    #[test]
    fn the_command_plans_the_timers_window_unless_told_otherwise() {
        let today = date!(2026 - 12 - 05);
        let (s, skipped) = scope(&parse_for_test(&[]), &cfg(), today);
        let months: Vec<String> = s.months.iter().map(ToString::to_string).collect();
        assert_eq!(months, ["2026-09", "2026-10", "2026-11"]);
        assert_eq!(s.periods, vec![BillingPeriod::Current]);
        assert!(skipped.is_empty() && !s.force);

        let (s, skipped) = scope(
            &parse_for_test(&["--months", "2022-07..2026-12", "--force"]),
            &cfg(),
            today,
        );
        assert_eq!(s.months.first().unwrap().to_string(), "2022-09");
        assert_eq!(s.months.last().unwrap().to_string(), "2026-11");
        assert!(s.force);
        assert!(skipped
            .iter()
            .any(|k| k.reason.contains("BILLED_HISTORY_FROM")));
        assert!(skipped
            .iter()
            .any(|k| k.reason.contains("not invoiced yet")));
    }
}
