//! The eight Azure Functions. `CATALOG` is what `functions/*/function.json` must agree with
//! (checked by tests); [`router`] registers each handler against its spec, so the runtime
//! decodes the trigger by the catalogue's binding name and each handler gets typed data.

use std::sync::Arc;

use functions_runtime::{FunctionRouter, FunctionSpec, TriggerBinding};

use crate::app::App;
use crate::pipeline::messages::{OPERATIONS_QUEUE, PARTITIONS_QUEUE};
use crate::planner::KindGroup;
use crate::settings::SERVICEBUS_CONNECTION_STRING as SERVICEBUS_CONNECTION;

pub mod copy_partition;
pub mod exports_http;
pub mod plan_http;
pub mod poll_operation;
pub mod start_exports;
pub mod watchdog;

/// Billed usage and billed reconciliation per invoice, on `BILLED_SCHEDULE`.
pub static START_BILLED_EXPORTS: FunctionSpec = FunctionSpec {
    name: "StartBilledExports",
    binding: "timer",
    trigger: TriggerBinding::Timer {
        schedule: "%BILLED_SCHEDULE%",
    },
};

/// Unbilled usage and unbilled reconciliation per period and currency, on `UNBILLED_SCHEDULE`.
pub static START_UNBILLED_EXPORTS: FunctionSpec = FunctionSpec {
    name: "StartUnbilledExports",
    binding: "timer",
    trigger: TriggerBinding::Timer {
        schedule: "%UNBILLED_SCHEDULE%",
    },
};

/// The timers that start exports, in the order local mode fires them.
pub static START_TIMERS: [&FunctionSpec; 2] = [&START_BILLED_EXPORTS, &START_UNBILLED_EXPORTS];

pub static EXPORTS: FunctionSpec = FunctionSpec {
    name: "Exports",
    binding: "req",
    trigger: TriggerBinding::Http {
        route: "exports/{runId?}",
        methods: &["get", "post"],
        output: "res",
    },
};

/// `GET /api/plan`: what the next firings would start.
pub static PLAN: FunctionSpec = FunctionSpec {
    name: "Plan",
    binding: "req",
    trigger: TriggerBinding::Http {
        route: "plan",
        methods: &["get"],
        output: "res",
    },
};

/// `POST /api/backfill`: plan and start a range of billing months.
pub static BACKFILL: FunctionSpec = FunctionSpec {
    name: "Backfill",
    binding: "req",
    trigger: TriggerBinding::Http {
        route: "backfill",
        methods: &["post"],
        output: "res",
    },
};

pub static POLL_OPERATION: FunctionSpec = FunctionSpec {
    name: "PollOperation",
    binding: "message",
    trigger: TriggerBinding::ServiceBusQueue {
        queue: OPERATIONS_QUEUE,
        connection: SERVICEBUS_CONNECTION,
    },
};

pub static COPY_PARTITION: FunctionSpec = FunctionSpec {
    name: "CopyPartition",
    binding: "message",
    trigger: TriggerBinding::ServiceBusQueue {
        queue: PARTITIONS_QUEUE,
        connection: SERVICEBUS_CONNECTION,
    },
};

pub static WATCHDOG: FunctionSpec = FunctionSpec {
    name: "Watchdog",
    binding: "timer",
    trigger: TriggerBinding::Timer {
        schedule: "%WATCHDOG_SCHEDULE%",
    },
};

pub static CATALOG: [&FunctionSpec; 8] = [
    &START_BILLED_EXPORTS,
    &START_UNBILLED_EXPORTS,
    &EXPORTS,
    &PLAN,
    &BACKFILL,
    &POLL_OPERATION,
    &COPY_PARTITION,
    &WATCHDOG,
];

/// The handler's functions, each registered by trigger type against its catalogue entry.
pub fn router(app: &Arc<App>) -> FunctionRouter {
    let (a, u, b, c, d, e, p, f) = (
        app.clone(),
        app.clone(),
        app.clone(),
        app.clone(),
        app.clone(),
        app.clone(),
        app.clone(),
        app.clone(),
    );
    FunctionRouter::new()
        .timer(&START_BILLED_EXPORTS, move |timer, inv| {
            let app = a.clone();
            async move { start_exports::run(&app, timer, inv.utc_now(), KindGroup::Billed).await }
        })
        .timer(&START_UNBILLED_EXPORTS, move |timer, inv| {
            let app = u.clone();
            async move { start_exports::run(&app, timer, inv.utc_now(), KindGroup::Unbilled).await }
        })
        .http(&EXPORTS, move |req, _| {
            let app = b.clone();
            async move { Ok(exports_http::run(&app, req).await) }
        })
        .http(&PLAN, move |req, inv| {
            let app = p.clone();
            async move { Ok(plan_http::plan(&app, req, inv.utc_now()).await) }
        })
        .http(&BACKFILL, move |req, inv| {
            let app = f.clone();
            async move { Ok(plan_http::backfill(&app, req, inv.utc_now()).await) }
        })
        .service_bus(&POLL_OPERATION, move |delivery, _| {
            let app = c.clone();
            async move { poll_operation::run(&app, delivery).await }
        })
        .service_bus(&COPY_PARTITION, move |delivery, _| {
            let app = d.clone();
            async move { copy_partition::run(&app, delivery).await }
        })
        .timer(&WATCHDOG, move |timer, _| {
            let app = e.clone();
            async move { watchdog::run(&app, timer).await }
        })
}
