//! The function catalogue: what each function's `function.json` declares. Handlers are
//! registered against these specs (`FunctionRouter::timer`, `::service_bus`, `::http`), so the
//! binding names used to decode an invocation come from one place, which the deployment tests
//! check `functions/*/function.json` against.

/// A function's trigger binding, as `function.json` declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerBinding {
    Timer {
        schedule: &'static str,
    },
    Http {
        route: &'static str,
        methods: &'static [&'static str],
        /// The `http` output binding's name (the key of the response in `Outputs`).
        output: &'static str,
    },
    ServiceBusQueue {
        queue: &'static str,
        connection: &'static str,
    },
}

impl TriggerBinding {
    /// The `type` of the binding in `function.json`.
    pub fn binding_type(&self) -> &'static str {
        match self {
            TriggerBinding::Timer { .. } => "timerTrigger",
            TriggerBinding::Http { .. } => "httpTrigger",
            TriggerBinding::ServiceBusQueue { .. } => "serviceBusTrigger",
        }
    }
}

/// One function: its folder name (what the host posts to `/{name}`), the trigger binding's
/// `name` (the key of the trigger value in the invocation's `Data`), and the trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSpec {
    pub name: &'static str,
    pub binding: &'static str,
    pub trigger: TriggerBinding,
}
