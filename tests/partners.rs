//! Several partner tenants in one deployment: each partner has its own Graph client, so a
//! partner whose credential fails, or whose calls are throttled, never holds up another; its
//! output, ledger keys, events and status carry the partner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use functions_runtime::TimerInfo;
use partner_billing_export::app::App;
use partner_billing_export::auth::{StaticTokenSource, TokenSource};
use partner_billing_export::functions::exports_http::parse_list_query;
use partner_billing_export::functions::start_exports;
use partner_billing_export::pipeline::status;
use partner_billing_export::pipeline::{RunRecord, RunState};
use partner_billing_export::planner::KindGroup;
use partner_billing_local::graph_sandbox::{SandboxConfig, SandboxPartner};
use partner_billing_local::tokens::partner_token_source;
use test_support::{fast_sandbox, TestBed};
use time::macros::{date, datetime};

const SEED: u64 = 7;

fn sandbox(throttle_contoso: u32) -> SandboxConfig {
    let today = date!(2026 - 12 - 05);
    let mut contoso = SandboxPartner::new("contoso", today, ("USD", "$"));
    contoso.throttle_requests = throttle_contoso;
    let fabrikam = SandboxPartner::new("fabrikam", today, ("EUR", "€"));
    SandboxConfig {
        seed: SEED,
        today: Some(today),
        partners: vec![contoso, fabrikam],
        ..fast_sandbox()
    }
}

fn partners_json(cfg: &SandboxConfig) -> String {
    let p = |i: usize, currency: &str| {
        format!(
            r#"{{"id": "{}", "tenantId": "{}", "credential": {{"kind": "managed-identity"}}, "currencies": ["{currency}"], "unbilledPeriods": ["current"]}}"#,
            cfg.partners[i].id, cfg.partners[i].tenant_id
        )
    };
    format!(r#"{{"partners": [{}, {}]}}"#, p(0, "USD"), p(1, "EUR"))
}

/// The bed with both partners configured and `fabrikam`'s Graph tokens from `fabrikam`.
async fn bed(cfg: SandboxConfig, fabrikam: Arc<dyn TokenSource>) -> (TestBed, Arc<App>) {
    let json = partners_json(&cfg);
    let bed = TestBed::start(cfg, &[("PARTNERS", json.as_str())]).await;
    bed.with_partner_tokens(HashMap::from([
        (
            "contoso".parse().unwrap(),
            Arc::new(partner_token_source("contoso")) as Arc<dyn TokenSource>,
        ),
        ("fabrikam".parse().unwrap(), fabrikam),
    ]))
}

fn timer() -> TimerInfo {
    TimerInfo {
        is_past_due: false,
        schedule_status: None,
    }
}

async fn runs_of(app: &App, partner: &str) -> Vec<RunRecord> {
    let runs = app.pipeline.ledger().list(usize::MAX).await.unwrap();
    runs.into_iter()
        .filter(|r| r.request.partner.as_str() == partner)
        .collect()
}

#[tokio::test]
async fn a_partner_whose_credential_fails_does_not_hold_up_the_other() {
    // fabrikam's credential yields no token at all.
    let (bed, app) = bed(sandbox(0), Arc::new(StaticTokenSource::new())).await;
    let now = datetime!(2026-12-05 06:00 UTC);

    let billed = start_exports::run(&app, timer(), now, KindGroup::Billed)
        .await
        .expect("discovery failing for one partner is news, not a failed firing");
    let logs = billed.logs.join("\n");
    assert!(logs.contains("contoso: 4 started"), "{logs}");
    assert!(logs.contains("fabrikam: 0 started"), "{logs}");
    let discovery = bed.events_of_type("InvoiceDiscoveryFailed.v1");
    assert_eq!(discovery.len(), 1, "{discovery:?}");
    assert_eq!(discovery[0]["data"]["partner"], "fabrikam");
    assert!(discovery[0]["subject"]
        .as_str()
        .unwrap()
        .starts_with("partners/fabrikam/"));

    let unbilled = start_exports::run(&app, timer(), now, KindGroup::Unbilled)
        .await
        .expect_err("fabrikam's exports could not start, so the firing is retried");
    assert!(
        unbilled.message.contains("partner fabrikam"),
        "{unbilled:?}"
    );
    assert!(
        !unbilled.message.contains("partner contoso"),
        "{unbilled:?}"
    );
    assert!(
        unbilled.logs.iter().any(|l| l == "contoso: 2 started, 0 already running, 0 refused by Graph, 0 already exported or running"),
        "{:?}",
        unbilled.logs
    );
    let not_started = bed.events_of_type("ExportsNotStarted.v1");
    assert_eq!(
        not_started.len(),
        1,
        "one event for the partner: {not_started:?}"
    );
    assert_eq!(not_started[0]["data"]["partner"], "fabrikam");

    bed.drain(Duration::from_secs(60)).await;
    let contoso = runs_of(&app, "contoso").await;
    assert_eq!(contoso.len(), 6, "4 billed + 2 unbilled: {contoso:#?}");
    assert!(contoso.iter().all(|r| r.state == RunState::Completed));
    // Output and ledger keys are the partner's.
    for r in &contoso {
        let folder = r.output_folder.as_ref().unwrap().as_str();
        assert!(folder.starts_with("partner-billing/contoso/"), "{folder}");
        assert!(r.request.key().starts_with("partners/contoso/"));
    }
    // fabrikam's runs wait for the watchdog (claimed, never submitted), none failed for good.
    let fabrikam = runs_of(&app, "fabrikam").await;
    assert_eq!(fabrikam.len(), 2, "{fabrikam:#?}");
    assert!(fabrikam.iter().all(|r| r.state == RunState::Starting));

    // The status API filters by partner.
    let q: std::collections::BTreeMap<String, String> =
        [("partner".to_string(), "contoso".to_string())].into();
    let query = parse_list_query(&q).unwrap();
    let page = status::list(app.pipeline.ledger(), &query, app.pipeline.now())
        .await
        .unwrap();
    assert_eq!(page.total, Some(6));
    assert!(page.runs.iter().all(|r| r.partner.as_str() == "contoso"));
    let completed = bed.events_of_type("ExportCompleted.v1");
    assert_eq!(completed.len(), 6);
    assert!(completed.iter().all(|e| e["data"]["partner"] == "contoso"));
    let tenant = bed.sandbox.config().partners[0].tenant_id.to_string();
    assert!(completed
        .iter()
        .all(|e| e["data"]["partnerTenantId"] == tenant.as_str()));
}

#[tokio::test]
async fn a_throttled_partner_slows_only_itself() {
    // contoso's Graph answers 429 (Retry-After: 1) to every other request, 8 times.
    let (bed, app) = bed(sandbox(8), Arc::new(partner_token_source("fabrikam"))).await;
    let now = datetime!(2026-12-05 06:00 UTC);
    let t0 = time::OffsetDateTime::now_utc();
    start_exports::run(&app, timer(), now, KindGroup::Unbilled)
        .await
        .expect("both partners' exports start; contoso's only later");
    let started = |runs: &[RunRecord]| runs.iter().map(|r| r.updated_at - t0).max().unwrap();
    let fabrikam = runs_of(&app, "fabrikam").await;
    let contoso = runs_of(&app, "contoso").await;
    assert_eq!((fabrikam.len(), contoso.len()), (2, 2));
    // contoso's starts waited out their 429s; fabrikam's did not wait for them.
    let fabrikam_started = started(&fabrikam);
    let contoso_started = started(&contoso);
    assert!(
        contoso_started >= time::Duration::seconds(1),
        "contoso waited for its Retry-After: {contoso_started}"
    );
    assert!(
        fabrikam_started < contoso_started,
        "fabrikam {fabrikam_started} vs contoso {contoso_started}"
    );

    bed.drain(Duration::from_secs(120)).await;
    for p in ["contoso", "fabrikam"] {
        let runs = runs_of(&app, p).await;
        assert!(
            runs.iter().all(|r| r.state == RunState::Completed),
            "{p}: {runs:#?}"
        );
    }
    let throttled: HashMap<String, u32> = bed.sandbox.throttled().into_iter().collect();
    assert!(throttled["contoso"] >= 1, "{throttled:?}");
    assert_eq!(throttled["fabrikam"], 0, "{throttled:?}");
}
