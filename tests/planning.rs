//! Planning at the timers: a Partner Center failure never sinks the month; billed exports catch
//! up on invoices whenever they are published, once each; overdue invoices are news, once.

use std::sync::Arc;
use std::time::Duration;

use functions_runtime::TimerInfo;
use partner_billing_export::app::App;
use partner_billing_export::auth::{Audience, StaticTokenSource};
use partner_billing_export::config::{Config, Settings};
use partner_billing_export::functions::start_exports;
use partner_billing_export::pipeline::RunState;
use partner_billing_export::planner::KindGroup;
use partner_billing_local::tokens::local_token;
use test_support::{fast_sandbox, TestBed};

/// The default deployment: the app's managed identity also asks Partner Center, which refuses
/// it (a managed identity cannot be registered in Partner Center).
#[tokio::test]
async fn refused_invoice_discovery_still_starts_unbilled_exports_and_says_how_to_fix_it() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let settings = bed.settings.clone();
    let config = Config::load(&Settings::new(move |k| settings.get(k).cloned())).unwrap();
    let tokens = Audience::ALL.iter().fold(StaticTokenSource::new(), |s, a| {
        let token = match a {
            Audience::PartnerCenter => "a-token-partner-center-does-not-know",
            other => local_token(*other),
        };
        s.with(*a, token)
    });
    let app = App::with_tokens(config, Arc::new(tokens)).unwrap();
    let bed = bed.with_app(app.clone());

    let now = time::macros::datetime!(2026-12-05 06:00 UTC);
    let billed = start_exports::run(&app, timer(), now, KindGroup::Billed)
        .await
        .expect("the timer run succeeds: discovery failing is news, not a crash");
    assert!(
        billed.logs.join("\n").contains("0 started"),
        "{:?}",
        billed.logs
    );
    let reply = start_exports::run(&app, timer(), now, KindGroup::Unbilled)
        .await
        .expect("unbilled exports do not need Partner Center");
    let logs = reply.logs.join("\n");
    assert!(
        logs.contains("2 started"),
        "unbilled exports started: {logs}"
    );

    let events = bed.events_of_type("InvoiceDiscoveryFailed.v1");
    assert_eq!(events.len(), 1, "exactly one event: {events:?}");
    let data = &events[0]["data"];
    assert_eq!(data["billingMonth"], "202611");
    assert!(
        data["fix"]
            .as_str()
            .unwrap()
            .contains("GRAPH_CREDENTIAL_KIND=federated-managed-identity"),
        "{data}"
    );
    assert!(
        data["fix"]
            .as_str()
            .unwrap()
            .contains("INVOICE_DISCOVERY=off"),
        "{data}"
    );

    bed.drain(Duration::from_secs(60)).await;
    let runs = app.pipeline.ledger().list(50).await.unwrap();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert!(runs.iter().all(|r| !r.request.kind.is_billed()));
    assert!(runs.iter().all(|r| r.state == RunState::Completed));
}

fn timer() -> TimerInfo {
    TimerInfo {
        is_past_due: false,
        schedule_status: None,
    }
}
