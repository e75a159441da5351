//! The billed and unbilled timers over simulated weeks: every invoice is exported once, on the
//! first firing after it is published; overdue invoices are news once; an invoice Graph has no
//! data for completes as no-data without an alert. Time is passed in (the timers' `now`, the
//! sandbox's clock), never slept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use functions_runtime::TimerInfo;
use partner_billing_export::app::{App, PartnerTokens};
use partner_billing_export::auth::TokenSource;
use partner_billing_export::billing::ExportScope;
use partner_billing_export::functions::{exports_http, plan_http, start_exports};
use partner_billing_export::pipeline::RunState;
use partner_billing_export::planner::KindGroup;
use partner_billing_local::graph_sandbox::{
    default_invoices, SandboxClock, SandboxConfig, SandboxPartner,
};
use partner_billing_local::tokens::partner_token_source;
use test_support::clock::ManualClock;
use test_support::{fast_sandbox, TestBed};
use time::macros::{date, time};
use time::{Date, OffsetDateTime};

fn timer() -> TimerInfo {
    TimerInfo {
        is_past_due: false,
        schedule_status: None,
    }
}

/// October 2026's invoices published on 8 November; November's late, on 14 December.
fn invoices() -> Vec<partner_billing_local::graph_sandbox::SandboxInvoice> {
    let mut all = default_invoices(date!(2026 - 11 - 20));
    let mut late = default_invoices(date!(2026 - 12 - 20));
    for i in &mut late {
        i.invoice_date = date!(2026 - 12 - 14);
    }
    all.extend(late);
    all
}

async fn fire(bed: &TestBed, group: KindGroup, day: Date) -> Vec<String> {
    fire_at(bed, group, day, time!(06:30)).await
}

/// `PARTNERS` for the sandbox's partners, each on the managed identity, with `extra` JSON
/// members (e.g. `"currencies": ["EUR"]`) per partner when given.
fn partners_setting(sandbox: &SandboxConfig, extra: &[&str]) -> String {
    let entries: Vec<String> = sandbox
        .partners
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let more = extra.get(i).map(|e| format!(", {e}")).unwrap_or_default();
            format!(
                r#"{{"id": "{}", "tenantId": "{}", "credential": {{"kind": "managed-identity"}}{more}}}"#,
                p.id, p.tenant_id
            )
        })
        .collect();
    format!(r#"{{"partners": [{}]}}"#, entries.join(", "))
}

/// Each named partner signed in as itself.
fn partner_tokens(ids: &[&str]) -> PartnerTokens {
    ids.iter()
        .map(|p| {
            (
                p.parse().unwrap(),
                Arc::new(partner_token_source(p)) as Arc<dyn TokenSource>,
            )
        })
        .collect()
}

#[tokio::test]
async fn forty_days_of_daily_firings_export_each_invoice_once() {
    let clock = SandboxClock::new(date!(2026 - 11 - 05));
    let bed = TestBed::start(
        SandboxConfig {
            invoices: invoices(),
            clock: Some(clock.clone()),
            today: Some(date!(2026 - 11 - 05)),
            // An invoice without Azure usage: Graph answers 5000 "No data available".
            fail_invoices: vec!["G026100002".into()],
            ..fast_sandbox()
        },
        &[("EXPORT_UNBILLED_PERIODS", "current")],
    )
    .await;

    let mut missing_lines = Vec::new();
    let mut day = date!(2026 - 11 - 05);
    for _ in 0..42 {
        clock.set(day);
        let logs = fire(&bed, KindGroup::Billed, day).await;
        missing_lines.extend(
            logs.iter()
                .filter(|l| l.contains("no invoice for billing month"))
                .map(|l| format!("{day}: {l}")),
        );
        if day == date!(2026 - 11 - 07) {
            assert!(logs.iter().any(|l| l.contains("0 started")), "{logs:?}");
        }
        if day == date!(2026 - 11 - 08) {
            assert!(logs.iter().any(|l| l.contains("6 started")), "{logs:?}");
        }
        fire(&bed, KindGroup::Unbilled, day).await;
        bed.drain(Duration::from_secs(60)).await;
        day = day.next_day().unwrap();
    }

    let runs = bed.app.pipeline.ledger().list(usize::MAX).await.unwrap();
    let mut billed: BTreeMap<String, usize> = BTreeMap::new();
    let mut unbilled = 0;
    for r in &runs {
        assert_eq!(r.state, RunState::Completed, "{r:#?}");
        if r.request.kind.is_billed() {
            *billed.entry(r.request.key()).or_default() += 1;
        } else {
            unbilled += 1;
        }
    }
    // Three new-commerce invoices a month (the credit note and the legacy D invoice are not
    // served by the export API), two billed kinds each, one run each.
    assert_eq!(billed.len(), 12, "{billed:#?}");
    // Graph had no data for G026100002 on publication day: tried once more 72 hours later.
    for (key, n) in &billed {
        let expected = if key.contains("G026100002") { 2 } else { 1 };
        assert_eq!(*n, expected, "{key}: {billed:#?}");
    }
    assert!(billed.keys().any(|k| k.contains("G026110003")));
    assert!(
        !billed.keys().any(|k| k.contains("G026100004")),
        "credit note"
    );
    // Unbilled usage and reconciliation refreshed every day: in USD until the first invoices
    // appear (5-7 November), then in the invoices' currencies, USD, EUR and GBP (39 days).
    assert_eq!(unbilled, 3 * 2 + 39 * 3 * 2);

    // The no-data invoice completed without a failure event.
    let no_data: Vec<_> = runs.iter().filter(|r| r.no_data).collect();
    assert_eq!(no_data.len(), 4, "both billed kinds of G026100002, twice");
    assert!(no_data
        .iter()
        .all(|r| r.request.to_string().contains("G026100002")));
    // Graph gave no folder to learn the month from; planning knew it from the invoice.
    for r in &no_data {
        let folder = r.output_folder.as_ref().unwrap().to_string();
        assert!(folder.contains("/202610/G026100002/"), "{folder}");
    }
    assert!(bed.events_of_type("ExportFailed").is_empty());

    // November's invoices were late: one event and one log line, on the 12th of December.
    let missing = bed.events_of_type("InvoicesMissing.v1");
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert_eq!(missing[0]["data"]["billingMonth"], "202611");
    assert_eq!(missing[0]["id"], "invoices-missing-202611");
    assert_eq!(missing[0]["data"]["checkedOn"], "2026-12-12");
    assert_eq!(missing_lines.len(), 1, "{missing_lines:#?}");
    assert!(
        missing_lines[0].starts_with("2026-12-12"),
        "{missing_lines:?}"
    );
}

/// Contoso (USD) and Fabrikam (EUR), each with October's and November's invoices; November's
/// published late, on 14 December.
fn two_partner_sandbox(start: time::Date, clock: &SandboxClock) -> SandboxConfig {
    let partner = |id: &str, currency: (&str, &str)| {
        let mut p = SandboxPartner::new(id, start, currency)
            .with_invoices_for_months(&[date!(2026 - 10 - 01), date!(2026 - 11 - 01)]);
        for i in &mut p.invoices {
            if i.billing_period_start.month() == time::Month::November {
                i.invoice_date = date!(2026 - 12 - 14);
            }
        }
        p
    };
    SandboxConfig {
        seed: 11,
        clock: Some(clock.clone()),
        today: Some(start),
        partners: vec![
            partner("contoso", ("USD", "$")),
            partner("fabrikam", ("EUR", "€")),
        ],
        ..fast_sandbox()
    }
}

/// Plan and backfill per partner, after the forty days of `forty_days_for_two_partners_…`.
async fn plan_and_backfill_answer_per_partner(app: &App, day: time::Date) {
    let now = OffsetDateTime::new_utc(day, time!(10:00));
    let plan = plan_http::plan(app, http("GET", &[("partner", "fabrikam")], None), now).await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    let per = &plan.body["timers"]["StartUnbilledExports"]["partners"];
    assert!(
        per.get("contoso").is_none() && per.get("fabrikam").is_some(),
        "{per}"
    );
    let unknown = plan_http::plan(app, http("GET", &[("partner", "nobody")], None), now).await;
    assert_eq!(
        (unknown.status, unknown.body["field"].as_str()),
        (400, Some("partner"))
    );
    let backfill = plan_http::backfill(
        app,
        http(
            "POST",
            &[],
            Some(r#"{"from": "2026-10", "to": "2026-11", "kinds": ["billedUsage"], "partners": ["contoso"], "dryRun": true}"#),
        ),
        now,
    )
    .await;
    assert_eq!(backfill.status, 200, "{}", backfill.body);
    assert!(
        backfill.body["start"].as_array().unwrap().is_empty(),
        "{}",
        backfill.body
    );
    let done = backfill.body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "already exported")
        .count();
    assert_eq!(done, 4, "contoso's four invoices: {}", backfill.body);
    let listed = exports_http::run(
        app,
        http(
            "GET",
            &[("partner", "fabrikam"), ("kind", "billedUsage")],
            None,
        ),
    )
    .await;
    assert_eq!(listed.body["total"], 4, "{}", listed.body);
}

/// Two partner tenants, each with its own invoices (October's published on 8 November,
/// November's late, on 14 December) and currency, each signed in as itself.
#[tokio::test]
async fn forty_days_for_two_partners_export_each_invoice_of_each_once() {
    let start = date!(2026 - 11 - 05);
    let clock = SandboxClock::new(start);
    let sandbox = two_partner_sandbox(start, &clock);
    let expected: Vec<(String, String)> = sandbox
        .partners
        .iter()
        .flat_map(|p| p.invoices.iter().map(|i| (p.id.clone(), i.id.clone())))
        .collect();
    assert_eq!(
        expected.len(),
        8,
        "two invoices a month, two months, two partners"
    );
    let partners = partners_setting(
        &sandbox,
        &[
            r#""currencies": ["USD"], "unbilledPeriods": ["current"]"#,
            r#""currencies": ["EUR"], "unbilledPeriods": ["current"]"#,
        ],
    );
    let bed = TestBed::start(sandbox, &[("PARTNERS", partners.as_str())]).await;
    let (bed, app) = bed.with_partner_tokens(partner_tokens(&["contoso", "fabrikam"]));

    let mut day = start;
    for _ in 0..42 {
        clock.set(day);
        let logs = fire(&bed, KindGroup::Billed, day).await;
        if day == date!(2026 - 11 - 08) {
            for p in ["contoso", "fabrikam"] {
                assert!(
                    logs.iter()
                        .any(|l| l.starts_with(&format!("{p}: 4 started"))),
                    "{logs:?}"
                );
            }
        }
        fire(&bed, KindGroup::Unbilled, day).await;
        bed.drain(Duration::from_secs(60)).await;
        day = day.next_day().unwrap();
    }

    let runs = app.pipeline.ledger().list(usize::MAX).await.unwrap();
    let mut billed: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut unbilled: BTreeMap<String, usize> = BTreeMap::new();
    for r in &runs {
        assert_eq!(r.state, RunState::Completed, "{r:#?}");
        let partner = r.request.partner.to_string();
        match &r.request.scope {
            ExportScope::Invoice { invoice_id } => {
                let key = (partner, invoice_id.to_string(), r.request.kind.to_string());
                *billed.entry(key).or_default() += 1;
            }
            ExportScope::Period { .. } => *unbilled.entry(partner).or_default() += 1,
        }
    }
    // Each invoice of each partner: exactly one billed usage and one billed reconciliation run.
    for (partner, invoice) in &expected {
        for kind in ["billedUsage", "billedReconciliation"] {
            let n = billed.get(&(partner.clone(), invoice.clone(), kind.to_string()));
            assert_eq!(n, Some(&1), "{partner} {invoice} {kind}: {billed:#?}");
        }
    }
    assert_eq!(billed.len(), 16, "{billed:#?}");
    // No partner exported another's invoice.
    for (partner, invoice, _) in billed.keys() {
        assert!(expected.contains(&(partner.clone(), invoice.clone())));
    }
    assert_eq!(unbilled.get("contoso"), Some(&(42 * 2)));
    assert_eq!(unbilled.get("fabrikam"), Some(&(42 * 2)));

    // Each partner's late November invoices are news once, for that partner.
    let missing = bed.events_of_type("InvoicesMissing.v1");
    // Partners are planned side by side, so their events arrive in either order.
    let mut ids: Vec<&str> = missing.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "contoso-invoices-missing-202611",
            "fabrikam-invoices-missing-202611"
        ],
        "{missing:#?}"
    );
    assert!(bed.events_of_type("ExportFailed").is_empty());

    plan_and_backfill_answer_per_partner(&app, day).await;
}

#[tokio::test]
async fn a_second_firing_starts_nothing_new() {
    let bed = TestBed::start(
        SandboxConfig {
            invoices: default_invoices(date!(2026 - 11 - 20)),
            ..fast_sandbox()
        },
        &[],
    )
    .await;
    let day = date!(2026 - 11 - 20);
    let first = fire(&bed, KindGroup::Billed, day).await;
    assert!(first.iter().any(|l| l.contains("6 started")), "{first:?}");
    // Still running: a second firing starts nothing.
    let again = fire(&bed, KindGroup::Billed, day).await;
    assert!(
        again
            .iter()
            .any(|l| l.contains("0 started") && l.contains("6 already exported or running")),
        "{again:?}"
    );
    bed.drain(Duration::from_secs(60)).await;
    // Completed: nothing either, the next day or a month later (still inside the window).
    for d in [date!(2026 - 11 - 21), date!(2026 - 12 - 21)] {
        let later = fire(&bed, KindGroup::Billed, d).await;
        assert!(
            later.iter().any(|l| l.contains("0 started")),
            "{d}: {later:?}"
        );
    }
    assert_eq!(bed.app.pipeline.ledger().list(100).await.unwrap().len(), 6);
}

fn http(
    method: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
) -> functions_runtime::HttpRequestData {
    functions_runtime::HttpRequestData {
        url: "http://localhost/api/x".into(),
        method: method.into(),
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        headers: Default::default(),
        params: Default::default(),
        body: body.map(str::to_string),
    }
}

/// The status API lists the six backfilled runs with filters and pages.
async fn status_api_lists_with_filters_and_pages(app: &App) {
    let list = |q: &[(&str, &str)]| exports_http::run(app, http("GET", q, None));
    let all = list(&[]).await;
    assert_eq!(all.body["total"], 6, "{}", all.body);
    let jan = list(&[
        ("billingMonth", "2025-01"),
        ("kind", "billedUsage"),
        ("state", "completed"),
    ])
    .await;
    assert_eq!(jan.body["total"], 3, "{}", jan.body);
    assert!(jan.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["billingMonth"] == "202501"));
    let page = list(&[("limit", "4")]).await;
    assert_eq!(page.body["runs"].as_array().unwrap().len(), 4);
    // `next` carries a cursor: the id of the page's last (oldest) run.
    let last = page.body["runs"][3]["runId"].as_str().unwrap().to_string();
    assert_eq!(
        page.body["next"],
        format!("/api/exports?limit=4&after={last}").as_str()
    );
    let rest = list(&[("limit", "4"), ("after", last.as_str())]).await;
    assert_eq!(rest.body["runs"].as_array().unwrap().len(), 2);
    assert!(rest.body["next"].is_null());
    let mut ids: Vec<&str> = page.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest.body["runs"].as_array().unwrap())
        .map(|r| r["runId"].as_str().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no run twice: {ids:?}"
    );
    ids.dedup();
    assert_eq!(ids.len(), 6);
    let skipped = list(&[("limit", "4"), ("offset", "4")]).await;
    assert_eq!(skipped.body["runs"].as_array().unwrap().len(), 2);
    assert_eq!(list(&[("state", "failed")]).await.body["total"], 0);
    assert_eq!(
        list(&[("kind", "billedReconciliation")]).await.body["total"],
        0
    );
    let bad = list(&[("state", "done")]).await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (400, Some("state"))
    );
}

/// What the next firings would start (January 2025 is beyond the look-back), without
/// starting it; an unknown group is refused.
async fn plan_answers_without_starting(app: &App, now: OffsetDateTime) {
    let res = plan_http::plan(app, http("GET", &[], None), now).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let billed = &res.body["timers"]["StartBilledExports"];
    assert_eq!(billed["start"].as_array().unwrap().len(), 6, "{billed}");
    assert_eq!(
        billed["billingMonths"],
        serde_json::json!(["2026-08", "2026-09", "2026-10"])
    );
    assert_eq!(billed["start"][0]["billingMonth"], "2026-10");
    // Unbilled exports in every currency of the partner's invoices (USD, EUR, GBP).
    let unbilled = &res.body["timers"]["StartUnbilledExports"];
    assert_eq!(unbilled["start"].as_array().unwrap().len(), 6, "{unbilled}");
    assert!(
        app.pipeline.ledger().list(10).await.unwrap().is_empty(),
        "nothing started"
    );
    let only = plan_http::plan(app, http("GET", &[("group", "unbilled")], None), now).await;
    assert!(only.body["timers"].get("StartBilledExports").is_none());
    let bad = plan_http::plan(app, http("GET", &[("group", "x")], None), now).await;
    assert_eq!(bad.status, 400);
}

/// A dry-run backfill of `body` lists what it would start and starts nothing.
async fn dry_backfill_starts_nothing(app: &App, now: OffsetDateTime, body: &str) {
    let dry = plan_http::backfill(
        app,
        http(
            "POST",
            &[],
            Some(&body.replace('}', r#", "dryRun": true}"#)),
        ),
        now,
    )
    .await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(
        dry.body["start"].as_array().unwrap().len(),
        6,
        "{}",
        dry.body
    );
    assert!(
        app.pipeline.ledger().list(10).await.unwrap().is_empty(),
        "a dry run starts nothing"
    );
}

#[tokio::test]
async fn plan_shows_the_next_firings_and_backfill_starts_what_the_ledger_lacks() {
    let mut invoices = default_invoices(date!(2025 - 02 - 10)); // January 2025
    invoices.extend(default_invoices(date!(2026 - 11 - 20))); // October 2026
    let bed = TestBed::start(
        SandboxConfig {
            invoices,
            ..fast_sandbox()
        },
        &[],
    )
    .await;
    let now = OffsetDateTime::new_utc(date!(2026 - 11 - 20), time!(10:00));
    let app = &bed.app;

    plan_answers_without_starting(app, now).await;

    // A backfill names what it skips and why, and starts the rest.
    let body = r#"{"from": "2022-07", "to": "2026-11", "kinds": ["billedUsage"]}"#;
    dry_backfill_starts_nothing(app, now, body).await;

    let res = plan_http::backfill(app, http("POST", &[], Some(body)), now).await;
    assert_eq!(res.status, 202, "{}", res.body);
    let start = res.body["start"].as_array().unwrap();
    assert_eq!(start.len(), 6, "{}", res.body);
    assert!(start.iter().all(|s| s["outcome"] == "started"), "{start:?}");
    let months: Vec<&str> = start
        .iter()
        .map(|s| s["billingMonth"].as_str().unwrap())
        .collect();
    assert_eq!(
        months,
        ["2025-01", "2025-01", "2025-01", "2026-10", "2026-10", "2026-10"]
    );
    let skipped = res.body["skipped"].as_array().unwrap();
    let reason = |m: &str| {
        skipped
            .iter()
            .find(|s| s["billingMonth"] == m)
            .map(|s| s["reason"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(
        reason("2022-07").contains("BILLED_HISTORY_FROM"),
        "{skipped:?}"
    );
    assert!(reason("2022-08").contains("BILLED_HISTORY_FROM"));
    assert!(reason("2026-11").contains("not invoiced yet"));
    bed.drain(Duration::from_secs(60)).await;

    status_api_lists_with_filters_and_pages(app).await;

    // Again: the ledger has all of it.
    let again = plan_http::backfill(app, http("POST", &[], Some(body)), now).await;
    assert_eq!(again.status, 202);
    assert!(
        again.body["start"].as_array().unwrap().is_empty(),
        "{}",
        again.body
    );
    let done = again.body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "already exported" && s["runId"].is_string())
        .count();
    assert_eq!(done, 6, "{}", again.body);

    // Unbilled data exists only for the current and the last period.
    let unbilled = plan_http::backfill(
        app,
        http("POST", &[], Some(r#"{"from": "2026-08", "to": "2026-11", "kinds": ["unbilledUsage"], "dryRun": true}"#)),
        now,
    )
    .await;
    let periods: Vec<&str> = unbilled.body["start"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["billingPeriod"].as_str().unwrap())
        .collect();
    // October is invoiced by 20 November, so `last` is left out too: its data is in the
    // billed exports. `current` runs in each invoice currency.
    assert_eq!(periods, ["current"; 3], "{}", unbilled.body);
    let skipped = unbilled.body["skipped"].as_array().unwrap();
    assert_eq!(
        skipped.len(),
        3,
        "2026-08, 2026-09, 2026-10: {}",
        unbilled.body
    );
    assert!(
        skipped[2]["reason"]
            .as_str()
            .unwrap()
            .starts_with("last month is invoiced"),
        "{}",
        unbilled.body
    );
    let bad =
        plan_http::backfill(app, http("POST", &[], Some(r#"{"from": "2026-13"}"#)), now).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["field"], "from");
}

/// An InvoicesMissing event Event Grid refused is not lost behind its notice: the next
/// firing sends it (same id), and it is sent once however many firings follow.
#[tokio::test]
async fn a_refused_invoices_missing_event_is_sent_by_the_next_firing() {
    let clock = SandboxClock::new(date!(2026 - 12 - 12));
    let bed = TestBed::start(
        SandboxConfig {
            invoices: invoices(),
            clock: Some(clock.clone()),
            today: Some(date!(2026 - 12 - 12)),
            ..fast_sandbox()
        },
        &[("EXPORT_KINDS", "billedUsage")],
    )
    .await;
    // More refusals than the publisher's attempts: this firing cannot deliver it.
    bed.eg.refuse("InvoicesMissing.v1", 4);
    let logs = fire(&bed, KindGroup::Billed, date!(2026 - 12 - 12)).await;
    assert!(
        logs.iter()
            .any(|l| l.contains("no invoice for billing month")),
        "{logs:?}"
    );
    assert!(bed.events_of_type("InvoicesMissing.v1").is_empty());
    for day in [date!(2026 - 12 - 13), date!(2026 - 12 - 14)] {
        clock.set(day);
        let logs = fire(&bed, KindGroup::Billed, day).await;
        assert!(
            !logs
                .iter()
                .any(|l| l.contains("no invoice for billing month")),
            "the log line is given once: {logs:?}"
        );
    }
    let missing = bed.events_of_type("InvoicesMissing.v1");
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert_eq!(missing[0]["id"], "invoices-missing-202611");
}

/// Two months of daily firings for a USD partner and a EUR partner that configure no
/// currency: unbilled exports run in each partner's invoice currency; an invoice Graph has no
/// data for on its publication day is tried once more 72 hours later and lands; an invoice
/// Graph refuses is attempted three times, then given up with one event per export. The
/// pipeline's clock follows the simulated days.
#[tokio::test]
async fn two_months_follow_invoice_currencies_retry_no_data_and_give_up_refusals() {
    let start = date!(2025 - 11 - 05);
    let (bed, app, clock, pipeline_clock, late_data, refused) =
        two_partners_with_clock(start).await;

    let mut day = start;
    while day <= date!(2025 - 12 - 31) {
        clock.set(day);
        pipeline_clock.set(OffsetDateTime::new_utc(day, time!(05:00)));
        fire_at(&bed, KindGroup::Unbilled, day, time!(05:00)).await;
        pipeline_clock.set(OffsetDateTime::new_utc(day, time!(06:30)));
        fire(&bed, KindGroup::Billed, day).await;
        bed.drain(Duration::from_secs(60)).await;
        day = day.next_day().unwrap();
    }

    let runs = app.pipeline.ledger().list(usize::MAX).await.unwrap();
    // Unbilled: in USD for both until the first invoices appear on 8 November (nothing is
    // known before), then each in its own invoice currency only.
    for r in runs.iter().filter(|r| !r.request.kind.is_billed()) {
        assert_eq!(r.state, RunState::Completed, "{r:#?}");
        let ExportScope::Period { currency, .. } = &r.request.scope else {
            unreachable!()
        };
        let expected = match (
            r.request.partner.as_str(),
            r.created_at.date() >= date!(2025 - 11 - 08),
        ) {
            (_, false) => "USD",
            ("contoso", true) => "USD",
            (_, true) => "EUR",
        };
        assert_eq!(currency.as_str(), expected, "{}", r.request);
    }
    let unbilled_days = (date!(2025 - 12 - 31) - start).whole_days() as usize + 1;
    assert_eq!(
        runs.iter().filter(|r| !r.request.kind.is_billed()).count(),
        unbilled_days * 2 * 2,
        "one run per day, kind and partner"
    );

    // Billed: each run's outcome per invoice and kind.
    let of = |invoice: &str| -> Vec<&partner_billing_export::pipeline::RunRecord> {
        let mut v: Vec<_> = runs
            .iter()
            .filter(|r| matches!(&r.request.scope, ExportScope::Invoice { invoice_id } if invoice_id.as_str() == invoice))
            .collect();
        v.sort_by_key(|r| r.created_at);
        v
    };
    // No data on 8 December, tried once more on the 11th (72 hours later), and landed.
    let retried = of(&late_data);
    assert_eq!(retried.len(), 4, "two kinds, twice each: {retried:#?}");
    for r in &retried[..2] {
        assert!(r.no_data, "{r:#?}");
        assert_eq!(r.created_at.date(), date!(2025 - 12 - 08));
    }
    for r in &retried[2..] {
        assert!(
            !r.no_data && r.state == RunState::Completed && !r.parts.is_empty(),
            "{r:#?}"
        );
        assert_eq!(r.created_at.date(), date!(2025 - 12 - 11));
    }
    // Refused on the 8th, 9th and 10th, then given up: one event per export, once.
    let refusals = of(&refused);
    assert_eq!(
        refusals.len(),
        6,
        "two kinds, three attempts each: {refusals:#?}"
    );
    assert!(refusals.iter().all(|r| r.state == RunState::Failed));
    let abandoned = bed.events_of_type("ExportAbandoned.v1");
    assert_eq!(abandoned.len(), 2, "{abandoned:#?}");
    for e in &abandoned {
        assert_eq!(e["data"]["attempts"], 3, "{e}");
        assert_eq!(e["data"]["partner"], "fabrikam", "{e}");
        assert!(
            e["data"]["request"].as_str().unwrap().contains(&refused),
            "{e}"
        );
    }
    // Every other invoice of both partners: one completed run per kind.
    for r in runs.iter().filter(|r| r.request.kind.is_billed()) {
        let ExportScope::Invoice { invoice_id } = &r.request.scope else {
            unreachable!()
        };
        if invoice_id.as_str() != late_data && invoice_id.as_str() != refused {
            assert!(r.state == RunState::Completed && !r.no_data, "{r:#?}");
            assert_eq!(of(invoice_id.as_str()).len(), 2, "{invoice_id}");
        }
    }
}

/// Contoso (USD) and Fabrikam (EUR) with October's and November's invoices, a bed whose
/// pipeline reads `ManualClock`, the invoice whose data is late and the one Graph refuses.
/// Simulated days lie in the past: the Service Bus stand-in delivers scheduled polls by the
/// wall clock, so a simulated day ahead of it would hold them back.
async fn two_partners_with_clock(
    start: Date,
) -> (TestBed, Arc<App>, SandboxClock, ManualClock, String, String) {
    let clock = SandboxClock::new(start);
    let partner = |id: &str, currency: (&str, &str)| {
        SandboxPartner::new(id, start, currency)
            .with_invoices_for_months(&[date!(2025 - 10 - 01), date!(2025 - 11 - 01)])
    };
    let (contoso, fabrikam) = (
        partner("contoso", ("USD", "$")),
        partner("fabrikam", ("EUR", "€")),
    );
    // Both are November's invoices, published on 8 December.
    let late_data = contoso.invoices[2].id.clone();
    let refused = fabrikam.invoices[3].id.clone();
    assert!(late_data.starts_with("G02511") && refused.starts_with("G02511"));
    let sandbox = SandboxConfig {
        seed: 12,
        clock: Some(clock.clone()),
        today: Some(start),
        no_data_until: vec![(late_data.clone(), date!(2025 - 12 - 10))],
        refuse_invoices: vec![refused.clone()],
        partners: vec![contoso, fabrikam],
        ..fast_sandbox()
    };
    let partners = partners_setting(&sandbox, &[]);
    let bed = TestBed::start(sandbox, &[("PARTNERS", partners.as_str())]).await;
    let pipeline_clock = ManualClock::new(OffsetDateTime::new_utc(start, time!(05:00)));
    let (bed, app) = bed.with_partner_tokens_on(
        partner_tokens(&["contoso", "fabrikam"]),
        Some(Arc::new(pipeline_clock.clone())),
    );
    (bed, app, clock, pipeline_clock, late_data, refused)
}

async fn fire_at(bed: &TestBed, group: KindGroup, day: Date, at: time::Time) -> Vec<String> {
    let now = OffsetDateTime::new_utc(day, at);
    start_exports::run(&bed.app, timer(), now, group)
        .await
        .unwrap_or_else(|e| panic!("{group:?} firing on {day}: {}", e.message))
        .logs
}
