//! The four Azure Functions. Each submodule decodes its trigger, calls the pipeline, and encodes
//! the reply; `CATALOG` is what `functions/*/function.json` must agree with (checked by tests).

/// What triggers a function, as function.json declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Timer {
        schedule: &'static str,
    },
    Http {
        route: &'static str,
        methods: &'static [&'static str],
    },
    ServiceBusQueue {
        queue: &'static str,
        connection: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct FunctionSpec {
    pub name: &'static str,
    /// The binding `name` of the trigger (the key in the invocation's `Data`).
    pub binding: &'static str,
    pub trigger: Trigger,
}

pub const START_EXPORTS: &str = "StartExports";
pub const EXPORTS: &str = "Exports";
pub const POLL_OPERATION: &str = "PollOperation";
pub const COPY_PARTITION: &str = "CopyPartition";
pub const OPERATIONS_QUEUE: &str = "export-operations";
pub const PARTITIONS_QUEUE: &str = "export-partitions";
pub const SERVICEBUS_CONNECTION: &str = "ServiceBusConnection";

pub const CATALOG: [FunctionSpec; 4] = [
    FunctionSpec {
        name: START_EXPORTS,
        binding: "timer",
        trigger: Trigger::Timer {
            schedule: "%EXPORT_SCHEDULE%",
        },
    },
    FunctionSpec {
        name: EXPORTS,
        binding: "req",
        trigger: Trigger::Http {
            route: "exports/{runId?}",
            methods: &["get", "post"],
        },
    },
    FunctionSpec {
        name: POLL_OPERATION,
        binding: "message",
        trigger: Trigger::ServiceBusQueue {
            queue: OPERATIONS_QUEUE,
            connection: SERVICEBUS_CONNECTION,
        },
    },
    FunctionSpec {
        name: COPY_PARTITION,
        binding: "message",
        trigger: Trigger::ServiceBusQueue {
            queue: PARTITIONS_QUEUE,
            connection: SERVICEBUS_CONNECTION,
        },
    },
];

pub mod copy_partition;
pub mod exports_http;
pub mod poll_operation;
pub mod start_exports;
