use super::*;
use crate::billing::AttributeSet;
use crate::billing::ExportScope;
use time::macros::date;

fn cfg() -> PlanConfig {
    PlanConfig {
        kinds: vec![
            ExportKind::BilledUsage,
            ExportKind::BilledReconciliation,
            ExportKind::UnbilledUsage,
        ],
        attribute_set: AttributeSet::Full,
        invoice_ids: vec![],
        currencies: vec!["USD".parse().unwrap()],
        periods: vec![BillingPeriod::Current],
        discover_invoices: true,
        billed_lookback_months: 3,
        invoices_missing_day: 12,
        billed_history_from: "2022-09".parse().unwrap(),
        max_attempts: 3,
        no_data_retry_after: Some(std::time::Duration::from_secs(72 * 3600)),
    }
}

#[test]
fn timer_scopes_split_by_kind_and_look_back() {
    let b = PlanScope::timer(&cfg(), KindGroup::Billed, date!(2026 - 01 - 05));
    assert_eq!(b.kinds.len(), 2);
    let months: Vec<String> = b.months.iter().map(|m| m.to_string()).collect();
    assert_eq!(months, ["2025-10", "2025-11", "2025-12"]);
    assert!(b.periods.is_empty());
    let u = PlanScope::timer(&cfg(), KindGroup::Unbilled, date!(2026 - 01 - 05));
    assert_eq!(u.kinds, vec![ExportKind::UnbilledUsage]);
    assert!(u.months.is_empty());
    assert_eq!(u.periods, vec![BillingPeriod::Current]);
    // Never before the first month the API serves.
    let early = PlanScope::timer(&cfg(), KindGroup::Billed, date!(2022 - 10 - 05));
    assert_eq!(early.months.len(), 1);
}

#[test]
fn backfill_says_what_it_skips() {
    let (s, skipped) = PlanScope::backfill(
        &cfg(),
        "2022-07".parse().unwrap(),
        "2026-01".parse().unwrap(),
        None,
        date!(2026 - 01 - 20),
    );
    assert_eq!(s.months.first().unwrap().to_string(), "2022-09");
    assert_eq!(s.months.last().unwrap().to_string(), "2025-12");
    assert_eq!(s.periods, vec![BillingPeriod::Last, BillingPeriod::Current]);
    let billed: Vec<_> = skipped.iter().filter(|s| s.what == "billed").collect();
    assert_eq!(billed.len(), 3, "2022-07, 2022-08, 2026-01: {billed:?}");
    assert!(billed[0].reason.contains("BILLED_HISTORY_FROM"));
    assert!(billed[2].reason.contains("not invoiced yet"));
    assert!(skipped
        .iter()
        .any(|s| s.what == "unbilled" && s.reason.contains("current and the last")));
}

fn run_of(req: &ExportRequest, state: RunState, no_data: bool, at: OffsetDateTime) -> RunRecord {
    let mut r = RunRecord::new(
        RunId::generate(at),
        req.clone(),
        crate::pipeline::Trigger::Timer,
        at,
        at + time::Duration::hours(24),
    );
    if state.is_terminal() {
        let failure = (state == RunState::Failed).then(|| crate::pipeline::Failure {
            code: crate::pipeline::FailureCode::Rejected,
            message: "Graph refused the request (400): invalid invoice".into(),
            at,
        });
        r.finish(state, failure, at);
        r.no_data = no_data;
    } else {
        r.state = state;
    }
    r
}

#[test]
fn the_ledger_decides_what_starts_again() {
    use time::macros::datetime;
    let cfg = cfg();
    let at = datetime!(2026-11-08 06:30 UTC);
    let billed = ExportRequest::billed(
        ExportKind::BilledUsage,
        "G1".parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap();
    let unbilled = ExportRequest::unbilled(
        ExportKind::UnbilledUsage,
        BillingPeriod::Current,
        "EUR".parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap();
    let v = |req: &ExportRequest, run: &RunRecord, a: Attempts, force: bool, now| {
        verdict(req, run, a, &cfg, force, now)
    };
    let once = |run: &RunRecord| Attempts::default().with(run);

    let running = run_of(&billed, RunState::Polling, false, at);
    assert_eq!(
        v(&billed, &running, once(&running), true, at),
        Verdict::Running
    );

    let done = run_of(&billed, RunState::Completed, false, at);
    assert_eq!(
        v(&billed, &done, once(&done), false, at),
        Verdict::Skip("already exported".into())
    );
    assert_eq!(
        v(&billed, &done, once(&done), true, at),
        Verdict::Start,
        "--force"
    );

    // No data on publication day: once more 72 hours later, then never again.
    let empty = run_of(&billed, RunState::Completed, true, at);
    let early = v(
        &billed,
        &empty,
        once(&empty),
        false,
        at + time::Duration::hours(70),
    );
    assert!(
        matches!(early, Verdict::Skip(ref r) if r.contains("tried once more from 2026-11-11")),
        "{early:?}"
    );
    assert_eq!(
        v(
            &billed,
            &empty,
            once(&empty),
            false,
            at + time::Duration::hours(72)
        ),
        Verdict::Start
    );
    let twice = Attempts {
        no_data: 2,
        ..Attempts::default()
    };
    assert_eq!(
        v(&billed, &empty, twice, false, at + time::Duration::days(30)),
        Verdict::Skip("already exported (Graph had no data for it)".into())
    );

    // Failed: started again until the third failure, then given up (with Graph's reason).
    let failed = run_of(&billed, RunState::Failed, false, at);
    let two = Attempts {
        failed: 2,
        ..Attempts::default()
    };
    assert_eq!(v(&billed, &failed, two, false, at), Verdict::Start);
    let three = Attempts {
        failed: 3,
        ..Attempts::default()
    };
    let gave_up = v(&billed, &failed, three, false, at);
    assert!(
        matches!(gave_up, Verdict::GiveUp(ref r) if r.contains("3 failed attempts") && r.contains("invalid invoice")),
        "{gave_up:?}"
    );
    assert_eq!(
        v(&billed, &failed, three, true, at),
        Verdict::Start,
        "--force"
    );

    // Unbilled data is refreshed by every firing, but a refused one is given up too.
    let refreshed = run_of(&unbilled, RunState::Completed, false, at);
    assert_eq!(
        v(&unbilled, &refreshed, once(&refreshed), false, at),
        Verdict::Start
    );
    let refused = run_of(&unbilled, RunState::Failed, false, at);
    assert!(matches!(
        v(&unbilled, &refused, three, false, at),
        Verdict::GiveUp(_)
    ));
}

#[test]
fn unbilled_keys_name_the_billing_month() {
    use time::macros::date;
    let req = ExportRequest::unbilled(
        ExportKind::UnbilledUsage,
        BillingPeriod::Current,
        "EUR".parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap();
    assert_eq!(
        req.ledger_key(date!(2026 - 11 - 30)),
        "unbilled-usage/current-eur/full@202611"
    );
    assert_eq!(
        req.ledger_key(date!(2026 - 12 - 01)),
        "unbilled-usage/current-eur/full@202612",
        "a run still active at midnight on the 1st does not hold up December's"
    );
    let last = ExportRequest {
        scope: ExportScope::Period {
            period: BillingPeriod::Last,
            currency: "EUR".parse().unwrap(),
        },
        ..req
    };
    assert_eq!(
        last.ledger_key(date!(2026 - 12 - 01)),
        "unbilled-usage/last-eur/full@202611"
    );
}
