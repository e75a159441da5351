//! Shared test bed: the Graph sandbox, the Service Bus and Event Grid stand-ins on loopback, and
//! the production `App` wired to them through its normal configuration. Messages are pumped
//! one at a time so tests can interleave faults deterministically.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use partner_billing_export::app::{App, PartnerTokens};
use partner_billing_export::config::{Config, Settings};
use partner_billing_export::pipeline::messages::{OPERATIONS_QUEUE, PARTITIONS_QUEUE};
use partner_billing_export::pipeline::{CopyJob, Handled, PipelineError, PollJob, RunRecord};
use partner_billing_local::eventgrid::{EventGridConfig, EventGridEmulator};
use partner_billing_local::graph_sandbox::{GraphSandbox, SandboxConfig};
use partner_billing_local::identity::{IdentityConfig, IdentityEndpoint};
use partner_billing_local::server::ServerHandle;
use partner_billing_local::servicebus::{Delivery, ServiceBusConfig, ServiceBusEmulator};
use partner_billing_local::tokens::local_token_source;
use serde_json::Value;

pub struct TestBed {
    pub sandbox: GraphSandbox,
    pub sb: Arc<ServiceBusEmulator>,
    pub eg: Arc<EventGridEmulator>,
    pub app: Arc<App>,
    pub dir: tempfile::TempDir,
    /// App settings that make a spawned handler use this bed's managed-identity stand-in.
    pub handler_identity: Vec<(String, String)>,
    /// The app settings `app` was configured with (stand-in endpoints, destination, ...).
    pub settings: HashMap<String, String>,
    _servers: Vec<ServerHandle>,
}

/// Which credentials the Service Bus and Event Grid stand-ins accept.
#[derive(Debug, Clone)]
pub struct StandInAuth {
    /// Bearer token the Service Bus stand-in accepts.
    pub servicebus_token: String,
    /// Keys whose SAS tokens it accepts (connection-string senders).
    pub servicebus_keys: Vec<partner_billing_export::adapters::shared_key::SharedAccessKey>,
    /// Bearer token or `aeg-sas-key` the Event Grid stand-in accepts.
    pub eventgrid_token: String,
}

impl Default for StandInAuth {
    fn default() -> Self {
        Self {
            servicebus_token: partner_billing_local::tokens::LOCAL_SERVICEBUS_TOKEN.into(),
            servicebus_keys: Vec::new(),
            eventgrid_token: partner_billing_local::tokens::LOCAL_EVENTGRID_TOKEN.into(),
        }
    }
}

pub fn fast_sandbox() -> SandboxConfig {
    SandboxConfig {
        polls_before_done: 1,
        retry_after_secs: 0,
        partitions: 2,
        rows_per_partition: 40,
        ..SandboxConfig::default()
    }
}

impl TestBed {
    pub async fn start(cfg: SandboxConfig, extra: &[(&str, &str)]) -> Self {
        Self::start_with(StandInAuth::default(), cfg, extra).await
    }

    /// Replaces the in-process app (e.g. one built by `App::from_config` with real credentials).
    pub fn with_app(mut self, app: Arc<App>) -> Self {
        self.app = app;
        self
    }

    /// The bed's app rebuilt with each listed partner's Graph and Partner Center tokens from
    /// `partners` (the local tokens for Azure resources), as `App::from_config` wires them.
    pub fn with_partner_tokens(self, partners: PartnerTokens) -> (Self, Arc<App>) {
        self.with_partner_tokens_on(partners, None)
    }

    /// [`TestBed::with_partner_tokens`] with the pipeline reading `clock` (when given).
    pub fn with_partner_tokens_on(
        self,
        partners: PartnerTokens,
        clock: Option<Arc<dyn partner_billing_export::pipeline::clock::Clock>>,
    ) -> (Self, Arc<App>) {
        let lookup = self.settings.clone();
        let config = Config::load(&Settings::new(move |k| lookup.get(k).cloned())).expect("config");
        let mut app = App::with_partner_tokens(config, Arc::new(local_token_source()), partners)
            .expect("app");
        if let Some(clock) = clock {
            Arc::get_mut(&mut app)
                .expect("not shared yet")
                .pipeline
                .set_clock(clock);
        }
        (self.with_app(app.clone()), app)
    }

    pub async fn start_with(auth: StandInAuth, cfg: SandboxConfig, extra: &[(&str, &str)]) -> Self {
        let sandbox = GraphSandbox::start(cfg).await.expect("sandbox starts");
        let sb = ServiceBusEmulator::new(ServiceBusConfig {
            queues: vec![OPERATIONS_QUEUE.into(), PARTITIONS_QUEUE.into()],
            max_delivery_count: 10,
            duplicate_detection_window: Duration::from_secs(600),
            token: auth.servicebus_token,
            sas_keys: auth.servicebus_keys,
        });
        let sb_http = sb.serve(0).await.expect("service bus stand-in");
        let eg = EventGridEmulator::new(EventGridConfig {
            token: auth.eventgrid_token,
            events_file: None,
        });
        let eg_http = eg.serve(0).await.expect("event grid stand-in");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings: HashMap<String, String> = [
            ("GRAPH_BASE_URL", sandbox.graph_base_url().to_string()),
            (
                "PARTNER_CENTER_BASE_URL",
                sandbox.partner_center_base_url().to_string(),
            ),
            ("SERVICEBUS_ENDPOINT", sb_http.base_url().to_string()),
            (
                "EVENTGRID_TOPIC_ENDPOINT",
                EventGridEmulator::topic_url(&eg_http).to_string(),
            ),
            ("DESTINATION_KIND", "filesystem".into()),
            ("DESTINATION_DIRECTORY", dir.path().display().to_string()),
            ("DEFAULT_RETRY_AFTER_SECONDS", "1".into()),
            ("MIN_RETRY_AFTER_SECONDS", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            settings.insert(k.to_string(), v.to_string());
        }
        let lookup = settings.clone();
        let config = Config::load(&Settings::new(move |k| lookup.get(k).cloned())).expect("config");
        let app = App::with_tokens(config, Arc::new(local_token_source())).expect("app");
        let identity = IdentityEndpoint::new(IdentityConfig {
            header_secret: "test-identity-header".into(),
            ..IdentityConfig::default()
        });
        let identity_http = identity.serve(0).await.expect("identity endpoint stand-in");
        let handler_identity = identity.settings(&identity_http);
        Self {
            sandbox,
            sb,
            eg,
            app,
            dir,
            handler_identity,
            settings,
            _servers: vec![sb_http, eg_http, identity_http],
        }
    }

    /// The next due message of either queue, or `None` after `wait`.
    pub async fn next(&self, wait: Duration) -> Option<Delivery> {
        tokio::select! {
            d = self.sb.receive(OPERATIONS_QUEUE) => d,
            d = self.sb.receive(PARTITIONS_QUEUE) => d,
            _ = tokio::time::sleep(wait) => None,
        }
    }

    /// Runs one delivery through the pipeline as the functions would, settling it.
    pub async fn process(&self, d: &Delivery) -> Result<Handled, PipelineError> {
        let body: Value = serde_json::from_slice(&d.body).expect("queue bodies are JSON");
        let res = if d.queue == OPERATIONS_QUEUE {
            self.app
                .pipeline
                .handle_poll(&PollJob::try_from(&body).expect("poll job"))
                .await
        } else {
            self.app
                .pipeline
                .handle_copy(
                    &CopyJob::try_from(&body).expect("copy job"),
                    d.delivery_count,
                )
                .await
        };
        match &res {
            Ok(_) => self.sb.complete(d),
            Err(e) => self.sb.abandon(d, &e.to_string()),
        }
        res
    }

    /// Starts an export that must be new (not a duplicate, not refused).
    pub async fn start_new(
        &self,
        req: partner_billing_export::billing::ExportRequest,
        trigger: partner_billing_export::pipeline::Trigger,
    ) -> RunRecord {
        match self.app.pipeline.start(req, trigger).await.expect("start") {
            partner_billing_export::pipeline::StartOutcome::Started(r) => *r,
            other => panic!("expected a new run, got {other:?}"),
        }
    }

    /// Processes poll messages until `n` copy jobs are queued, and hands those back unprocessed
    /// (so a test can interfere between the fan-out and the copies).
    pub async fn pump_until_copies(&self, n: usize) -> Vec<Delivery> {
        let mut copies = Vec::new();
        while copies.len() < n {
            let d = self.next(Duration::from_secs(10)).await.expect("a message");
            if d.queue == PARTITIONS_QUEUE {
                copies.push(d);
            } else {
                self.process(&d).await.unwrap();
            }
        }
        copies
    }

    /// Pumps messages until the queues stay empty for a moment; panics past `deadline`.
    pub async fn drain(&self, deadline: Duration) -> Vec<Handled> {
        let end = tokio::time::Instant::now() + deadline;
        let mut handled = Vec::new();
        loop {
            let idle = self.sb.depth().values().all(|d| *d == 0);
            let wait = if idle {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(5)
            };
            match self.next(wait).await {
                Some(d) => {
                    if let Ok(h) = self.process(&d).await {
                        handled.push(h);
                    }
                }
                None if self.sb.depth().values().all(|d| *d == 0) => return handled,
                None => {}
            }
            assert!(
                tokio::time::Instant::now() < end,
                "queues did not drain in time: {:?}",
                self.sb.depth()
            );
        }
    }

    pub async fn run(&self, id: &partner_billing_export::pipeline::RunId) -> RunRecord {
        self.app
            .pipeline
            .ledger()
            .get(id)
            .await
            .expect("ledger")
            .expect("run exists")
    }

    pub fn events_of_type(&self, suffix: &str) -> Vec<Value> {
        self.eg
            .events()
            .into_iter()
            .filter(|e| e["type"].as_str().is_some_and(|t| t.contains(suffix)))
            .collect()
    }

    /// Every regular file under the output directory, relative path → bytes.
    pub fn output_files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(self.dir.path())
                        .unwrap()
                        .display()
                        .to_string();
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }
}
