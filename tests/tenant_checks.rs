//! Whose data it is: before a partner's first export the handler reads its tokens' claims
//! (Entra's documented `tid`, `aud`, `roles`/`scp`), and a token of another tenant, without
//! PartnerBilling.Read.All, or for the wrong audience starts nothing, with an error that names
//! the fix. A manifest naming another partner tenant fails its run (`tenantMismatch`) before
//! anything is copied.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use functions_runtime::TimerInfo;
use partner_billing_export::app::App;
use partner_billing_export::auth::{Audience, StaticTokenSource, TokenSource};
use partner_billing_export::billing::{ExportKind, ExportRequest, ExportScope, PartnerId};
use partner_billing_export::functions::start_exports;
use partner_billing_export::pipeline::{RunRecord, RunState, Trigger};
use partner_billing_export::planner::KindGroup;
use partner_billing_local::graph_sandbox::{SandboxConfig, SandboxPartner};
use partner_billing_local::tokens::{
    app_token, local_token_source, partner_tenant_id, partner_token_source, LOCAL_APP_ID,
    LOCAL_TENANT_ID,
};
use test_support::{fast_sandbox, TestBed};
use time::macros::{date, datetime};

const SEED: u64 = 11;

fn sandbox() -> SandboxConfig {
    let today = date!(2026 - 12 - 05);
    SandboxConfig {
        seed: SEED,
        today: Some(today),
        partners: vec![
            SandboxPartner::new("contoso", today, ("USD", "$")),
            SandboxPartner::new("fabrikam", today, ("EUR", "€")),
        ],
        ..fast_sandbox()
    }
}

/// Both partners listed; contoso signs in as itself, fabrikam with `fabrikam`.
async fn bed(fabrikam: Arc<dyn TokenSource>) -> (TestBed, Arc<App>) {
    let cfg = sandbox();
    let entry = |i: usize, currency: &str| {
        format!(
            r#"{{"id": "{}", "tenantId": "{}", "credential": {{"kind": "client-secret", "clientId": "{LOCAL_APP_ID}", "secretSetting": "PARTNER_SECRET"}}, "currencies": ["{currency}"], "unbilledPeriods": ["current"]}}"#,
            cfg.partners[i].id, cfg.partners[i].tenant_id
        )
    };
    let json = format!(
        r#"{{"partners": [{}, {}]}}"#,
        entry(0, "USD"),
        entry(1, "EUR")
    );
    let bed = TestBed::start(
        cfg,
        &[("PARTNERS", json.as_str()), ("PARTNER_SECRET", "unused")],
    )
    .await;
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

fn unbilled(partner: &str) -> ExportRequest {
    ExportRequest {
        partner: partner.parse::<PartnerId>().unwrap(),
        kind: ExportKind::UnbilledUsage,
        scope: ExportScope::Period {
            period: "current".parse().unwrap(),
            currency: "EUR".parse().unwrap(),
        },
        attribute_set: Default::default(),
    }
}

/// Starts fabrikam's unbilled export and returns the error; asserts nothing was started.
async fn refused_start(fabrikam: StaticTokenSource) -> String {
    let (bed, app) = bed(Arc::new(fabrikam)).await;
    let err = app
        .pipeline
        .start(unbilled("fabrikam"), Trigger::Http)
        .await
        .expect_err("the token must be refused before anything starts")
        .to_string();
    assert!(
        runs_of(&app, "fabrikam").await.is_empty(),
        "no run recorded"
    );
    assert_eq!(
        bed.sandbox.stats().exports_started,
        0,
        "nothing reached Graph"
    );
    assert!(bed.events_of_type("ExportStarted.v1").is_empty());
    err
}

#[tokio::test]
async fn a_credential_of_another_tenant_starts_nothing() {
    // fabrikam's credential signs in to contoso's tenant (as a managed identity would to its
    // own): every token is valid, just not fabrikam's.
    let err = refused_start(partner_token_source("contoso")).await;
    let fabrikam = partner_tenant_id("fabrikam").to_string();
    let contoso = partner_tenant_id("contoso").to_string();
    assert!(err.contains("partner fabrikam"), "{err}");
    assert!(err.contains("wrong tenant"), "{err}");
    assert!(
        err.contains(&format!(
            "signed in to tenant {contoso}, but this partner is tenant {fabrikam}"
        )),
        "{err}"
    );
    assert!(
        err.contains("federated-managed-identity"),
        "names the fix: {err}"
    );
}

#[tokio::test]
async fn a_token_without_partner_billing_read_all_starts_nothing() {
    let tenant = partner_tenant_id("fabrikam").to_string();
    let tokens = local_token_source()
        .with(
            Audience::Graph,
            app_token(Audience::Graph, &tenant, LOCAL_APP_ID, &["User.Read.All"]),
        )
        .with(
            Audience::PartnerCenter,
            app_token(Audience::PartnerCenter, &tenant, LOCAL_APP_ID, &[]),
        );
    let err = refused_start(tokens).await;
    assert!(err.contains("missing permission"), "{err}");
    assert!(
        err.contains("no application permission PartnerBilling.Read.All (roles: User.Read.All)"),
        "{err}"
    );
    assert!(err.contains("admin consent"), "{err}");
}

#[tokio::test]
async fn a_token_for_another_audience_starts_nothing() {
    // A Partner Center token offered as the Graph token.
    let tenant = partner_tenant_id("fabrikam").to_string();
    let pc = app_token(Audience::PartnerCenter, &tenant, LOCAL_APP_ID, &[]);
    let tokens = local_token_source()
        .with(Audience::Graph, pc.clone())
        .with(Audience::PartnerCenter, pc);
    let err = refused_start(tokens).await;
    assert!(err.contains("wrong audience"), "{err}");
    assert!(
        err.contains("https://graph.microsoft.com/.default"),
        "{err}"
    );
}

#[tokio::test]
async fn invoice_discovery_with_a_wrong_token_is_refused_with_the_reason() {
    // fabrikam's Partner Center token is contoso's: discovery must not list contoso's invoices
    // as fabrikam's.
    let (bed, app) = bed(Arc::new(partner_token_source("contoso"))).await;
    let now = datetime!(2026-12-05 06:00 UTC);
    let billed = start_exports::run(&app, timer(), now, KindGroup::Billed)
        .await
        .expect("one partner's discovery failing is news, not a failed firing");
    let logs = billed.logs.join("\n");
    assert!(logs.contains("fabrikam: 0 started"), "{logs}");
    let failed = bed.events_of_type("InvoiceDiscoveryFailed.v1");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let text = failed[0]["data"].to_string();
    assert!(text.contains("wrong tenant"), "{text}");
    assert!(runs_of(&app, "fabrikam").await.is_empty());
}

#[tokio::test]
async fn a_manifest_of_another_tenant_fails_the_run_before_any_copy() {
    let stranger = uuid::Uuid::from_u128(0x5742_4e47_4552_0000_0000_0000_0000_0001);
    let cfg = SandboxConfig {
        manifest_tenant: Some(stranger),
        ..sandbox()
    };
    // The single-tenant partner's tenant: the one the local tokens are issued for.
    let bed = TestBed::start(cfg, &[("GRAPH_TENANT_ID", LOCAL_TENANT_ID)]).await;
    let app = bed.app.clone();
    let request = ExportRequest {
        partner: PartnerId::default_partner(),
        ..unbilled("contoso")
    };
    let run = app
        .pipeline
        .start(request, Trigger::Http)
        .await
        .unwrap()
        .run()
        .clone();
    bed.drain(Duration::from_secs(60)).await;
    let run = bed.run(&run.run_id).await;
    assert_eq!(run.state, RunState::Failed, "{run:#?}");
    assert_eq!(
        run.failure.as_ref().map(|f| f.code.as_str()),
        Some("tenantMismatch"),
        "{run:#?}"
    );
    assert!(
        bed.output_files().keys().all(|k| !k.contains("part-")),
        "nothing copied: {:?}",
        bed.output_files().keys()
    );
    assert_eq!(bed.sandbox.stats().blob_gets, 0, "no partition was read");
    let failed = bed.events_of_type("ExportFailed.v1");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["code"], "tenantMismatch", "{failed:?}");
    let message = failed[0]["data"].to_string();
    assert!(message.contains(&stranger.to_string()), "{message}");
}
