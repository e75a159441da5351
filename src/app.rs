//! Wiring: builds the clients, adapters and pipeline from `Config` once per process, and the
//! function router the custom-handler server dispatches to.

use std::sync::Arc;

use crate::adapters::events::{EventGridPublisher, EventPublisher, LogOnlyPublisher};
use crate::adapters::filesystem::{FilesystemDestination, FilesystemLedger};
use crate::adapters::servicebus::{MessageQueue, ServiceBusRest};
use crate::adapters::storage::{Destination, LedgerStore};
use crate::auth::{
    http_client, AllowList, Audience, AuthorizedHttp, StaticTokenSource, TokenSource,
};
use crate::billing::invoices::PartnerCenterClient;
use crate::billing::BillingClient;
use crate::config::{Config, CredentialKind, DestinationConfig};
use crate::functions;
use crate::pipeline::{Ledger, Pipeline};
use crate::runtime::FunctionRouter;

/// Everything a function invocation needs.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub pipeline: Pipeline,
    pub invoices: PartnerCenterClient,
}

impl App {
    pub fn from_config(config: Config) -> anyhow::Result<Arc<Self>> {
        let tokens = token_source(&config.credential)?;
        let mut allow = AllowList::default();
        // Configured endpoints are trusted for their own audience (local mode points them at
        // loopback stand-ins); nothing else is added.
        allow.allow_url(Audience::Graph, &config.graph.base_url);
        allow.allow_url(Audience::PartnerCenter, &config.partner_center_base_url);
        let http = http_client();
        let queue_endpoint = config.servicebus_endpoint.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "app setting {}: is required (or {} to override the endpoint)",
                crate::settings::SERVICEBUS_NAMESPACE,
                crate::settings::SERVICEBUS_ENDPOINT
            )
        })?;
        allow.allow_url(Audience::ServiceBus, &queue_endpoint);
        if let Some(eg) = &config.eventgrid_endpoint {
            allow.allow_url(Audience::EventGrid, eg);
        }
        let authed = AuthorizedHttp::new(http.clone(), tokens, allow);
        let billing = BillingClient::new(authed.clone(), config.graph.clone());
        let invoices =
            PartnerCenterClient::new(authed.clone(), config.partner_center_base_url.clone());
        let queue: Arc<dyn MessageQueue> =
            Arc::new(ServiceBusRest::new(authed.clone(), queue_endpoint));
        let events: Arc<dyn EventPublisher> = match &config.eventgrid_endpoint {
            Some(u) => Arc::new(EventGridPublisher::new(authed.clone(), u.clone())),
            None => Arc::new(LogOnlyPublisher),
        };
        let (dest, ledger_store) = destination(&config, http)?;
        let pipeline = Pipeline::new(
            billing,
            queue,
            events,
            dest,
            Ledger::new(ledger_store),
            config.pipeline.clone(),
        );
        Ok(Arc::new(Self {
            config,
            pipeline,
            invoices,
        }))
    }

    /// The four functions, by the names `functions/*/function.json` give them.
    pub fn router(self: &Arc<Self>) -> FunctionRouter {
        let (a, b, c, d) = (self.clone(), self.clone(), self.clone(), self.clone());
        FunctionRouter::new()
            .route(functions::START_EXPORTS, move |inv| {
                let app = a.clone();
                async move { functions::start_exports::run(&app, inv).await }
            })
            .route(functions::EXPORTS, move |inv| {
                let app = b.clone();
                async move { functions::exports_http::run(&app, inv).await }
            })
            .route(functions::POLL_OPERATION, move |inv| {
                let app = c.clone();
                async move { functions::poll_operation::run(&app, inv).await }
            })
            .route(functions::COPY_PARTITION, move |inv| {
                let app = d.clone();
                async move { functions::copy_partition::run(&app, inv).await }
            })
    }
}

fn token_source(kind: &CredentialKind) -> anyhow::Result<Arc<dyn TokenSource>> {
    match kind {
        CredentialKind::LocalSandbox => Ok(Arc::new(StaticTokenSource::local_sandbox())),
        other => anyhow::bail!(
            "credential {other:?} needs the Azure identity adapter, which this build does not include yet; use CREDENTIAL_KIND=local-sandbox for local runs"
        ),
    }
}

type Storage = (Arc<dyn Destination>, Arc<dyn LedgerStore>);

fn destination(config: &Config, http: reqwest::Client) -> anyhow::Result<Storage> {
    match &config.destination {
        DestinationConfig::Filesystem { directory } => {
            let ledger_root = directory.join(config.pipeline.output_prefix.as_str()).join("_ledger");
            Ok((
                Arc::new(FilesystemDestination::new(directory.clone(), http)),
                Arc::new(FilesystemLedger::new(ledger_root)),
            ))
        }
        DestinationConfig::Blob { .. } => anyhow::bail!(
            "DESTINATION_KIND=blob needs the Azure Blob adapter, which this build does not include yet; use DESTINATION_KIND=filesystem"
        ),
    }
}
