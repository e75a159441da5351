//! Wiring: builds the clients, adapters and pipeline from `Config` once per process, and the
//! function router the custom-handler server dispatches to.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;

use crate::adapters::blob::{BlobAccount, BlobDestination, BlobLedger, BlobOptions};
use crate::adapters::events::{EventGridPublisher, EventPublisher, LogOnlyPublisher};
use crate::adapters::filesystem::{FilesystemDestination, FilesystemLedger};
use crate::adapters::identity::{token_source, token_source_with};
use crate::adapters::servicebus::{MessageQueue, ServiceBusRest};
use crate::adapters::storage::{Destination, LedgerStore};
use crate::auth::claims::VerifiedTokens;
use crate::auth::{
    http_client, transfer_client, AccessToken, AllowList, Audience, AuthError, AuthorizedHttp,
    PerServiceTokens, TokenSource,
};
use crate::billing::invoices::PartnerCenterClient;
use crate::billing::{BillingClient, PartnerId};
use crate::config::{Config, Credentials, DestinationConfig, PartnerConfig};
use crate::pipeline::{Ledger, PartnerRuntime, Pipeline};

/// The token sources the settings name: the app's identity for Azure resources, and Graph's
/// own credential for Graph and Partner Center.
pub fn token_sources(creds: &Credentials) -> anyhow::Result<PerServiceTokens> {
    let azure = token_source(&creds.azure).context("credential for Azure resources")?;
    // One identity for both (the default) shares one token cache.
    let graph = if creds.graph == creds.azure {
        azure.clone()
    } else {
        graph_token_source(creds).context("credential for Microsoft Graph and Partner Center")?
    };
    Ok(PerServiceTokens { graph, azure })
}

/// The single-tenant Graph / Partner Center token source, with the secret material `config`
/// read for it.
pub fn graph_token_source(creds: &Credentials) -> Result<Arc<dyn TokenSource>, AuthError> {
    token_source_with(&creds.graph, |name| creds.graph_secrets.get(name))
}

/// The Graph / Partner Center token source of a listed partner: its credential, with the secret
/// `config` read from the app setting its reference names.
pub fn partner_token_source(p: &PartnerConfig) -> Result<Arc<dyn TokenSource>, AuthError> {
    token_source_with(&p.credential.kind, |name| p.credential.secrets.get(name))
}

/// A partner credential that could not be built: every token request fails with the reason,
/// so that partner's runs fail (and are reported) while the other partners go on.
#[derive(Debug)]
struct BrokenCredential {
    partner: PartnerId,
    reason: String,
}

#[async_trait]
impl TokenSource for BrokenCredential {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        Err(AuthError::Credential {
            credential: format!("partner {} credential", self.partner),
            audience: audience.name(),
            reason: self.reason.clone(),
        })
    }
}

/// Graph / Partner Center token sources per listed partner; a partner missing here uses the
/// app's own.
pub type PartnerTokens = HashMap<PartnerId, Arc<dyn TokenSource>>;

/// Everything a function invocation needs.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub pipeline: Pipeline,
    /// Each partner's invoice listing, signed in as that partner.
    partner_invoices: HashMap<PartnerId, PartnerCenterClient>,
}

impl App {
    /// The app with the credentials its settings name.
    pub fn from_config(config: Config) -> anyhow::Result<Arc<Self>> {
        let tokens = token_sources(&config.credentials)?;
        let mut partners = PartnerTokens::new();
        // A partner signing in with the app's own Graph credential shares its token source.
        let own = |p: &&PartnerConfig| {
            p.credential.kind != config.credentials.graph
                || p.credential.secrets != config.credentials.graph_secrets
        };
        for p in config.partners.iter().filter(own) {
            let graph = match partner_token_source(p) {
                Ok(t) => t,
                Err(e) => {
                    // One partner's broken credential must not stop the others.
                    tracing::error!(partner = %p.id, error = %e, "partner credential unusable; this partner's exports will fail until it is fixed");
                    Arc::new(BrokenCredential {
                        partner: p.id.clone(),
                        reason: e.to_string(),
                    })
                }
            };
            partners.insert(p.id.clone(), graph);
        }
        Self::with_partner_tokens(config, Arc::new(tokens), partners)
    }

    /// [`App::with_tokens`] with partners' own Graph / Partner Center tokens from `partners`
    /// (a partner missing there, and Azure resources, use `tokens`).
    pub fn with_partner_tokens(
        config: Config,
        tokens: Arc<dyn TokenSource>,
        partners: PartnerTokens,
    ) -> anyhow::Result<Arc<Self>> {
        let (queue, events) = Self::azure_services(&config, &tokens)?;
        Self::assemble(config, tokens, queue, events, &partners)
    }

    /// The invoice listing of a configured partner's tenant.
    pub fn invoices_for(&self, partner: &PartnerConfig) -> &PartnerCenterClient {
        self.partner_invoices
            .get(&partner.id)
            .expect("every configured partner is registered when the app is built")
    }

    /// Gives each configured partner its own Graph client (its own tokens, checked against its
    /// tenant; its own concurrency bound, so its throttling stays its own), its invoice listing
    /// and its place in the pipeline, all as `config` describes it.
    fn register_partners(
        config: &Config,
        mut pipeline: Pipeline,
        azure: &Arc<dyn TokenSource>,
        tokens: &PartnerTokens,
    ) -> (Pipeline, HashMap<PartnerId, PartnerCenterClient>) {
        let mut invoices = HashMap::new();
        for p in &config.partners {
            let graph = tokens.get(&p.id).cloned().unwrap_or_else(|| azure.clone());
            let per_service: Arc<dyn TokenSource> = Arc::new(VerifiedTokens::new(
                Arc::new(PerServiceTokens {
                    graph,
                    azure: azure.clone(),
                }),
                p.id.as_str(),
                p.tenant_id.map(|t| t.to_string()),
            ));
            let authed = AuthorizedHttp::new(http_client(), per_service, graph_allow_list(config));
            let mut billing = BillingClient::new(authed.clone(), config.graph.clone());
            if let Some(n) = p.max_concurrency {
                billing = billing.with_concurrency_limit(n);
            }
            let listing = PartnerCenterClient::new(authed, config.partner_center_base_url.clone());
            pipeline = pipeline.with_partner(
                p.id.clone(),
                PartnerRuntime {
                    billing,
                    folder: p.destination_prefix.clone(),
                    tenant_id: p.tenant_id.map(|t| t.to_string()),
                    invoices: Some(Arc::new(listing.clone())),
                },
            );
            invoices.insert(p.id.clone(), listing);
        }
        (pipeline, invoices)
    }

    /// The app with a given token source (in-process tests and tools that hold their own):
    /// messages go to Service Bus, events to Event Grid (or the log), as the settings say.
    pub fn with_tokens(config: Config, tokens: Arc<dyn TokenSource>) -> anyhow::Result<Arc<Self>> {
        Self::with_partner_tokens(config, tokens, PartnerTokens::new())
    }

    /// Service Bus and Event Grid as the settings name them.
    fn azure_services(
        config: &Config,
        tokens: &Arc<dyn TokenSource>,
    ) -> anyhow::Result<(Arc<dyn MessageQueue>, Arc<dyn EventPublisher>)> {
        let queue_endpoint = config.servicebus_endpoint.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "app setting {}: is required (or {} to override the endpoint)",
                crate::settings::SERVICEBUS_NAMESPACE,
                crate::settings::SERVICEBUS_ENDPOINT
            )
        })?;
        let mut allow = graph_allow_list(config);
        allow.allow_url(Audience::ServiceBus, &queue_endpoint);
        if let Some(eg) = &config.eventgrid_endpoint {
            allow.allow_url(Audience::EventGrid, eg);
        }
        let authed = AuthorizedHttp::new(http_client(), tokens.clone(), allow);
        // Keyed alternatives replace the Entra token for their service when set.
        let mut queue = ServiceBusRest::new(authed.clone(), queue_endpoint);
        if let Some(key) = &config.servicebus_key {
            queue = queue.with_shared_key(key.clone());
        }
        let queue: Arc<dyn MessageQueue> = Arc::new(queue);
        let events: Arc<dyn EventPublisher> = match &config.eventgrid_endpoint {
            Some(u) => {
                let mut publisher = EventGridPublisher::new(authed.clone(), u.clone());
                if let Some(key) = &config.eventgrid_key {
                    publisher = publisher.with_access_key(key.clone());
                }
                Arc::new(publisher)
            }
            None => Arc::new(LogOnlyPublisher),
        };
        Ok((queue, events))
    }

    /// The app with the queue and event publisher given (a process that runs the pipeline
    /// itself, like the `export` command with its in-process queue). Service Bus and Event Grid
    /// settings are not read.
    pub fn with_parts(
        config: Config,
        tokens: Arc<dyn TokenSource>,
        queue: Arc<dyn MessageQueue>,
        events: Arc<dyn EventPublisher>,
    ) -> anyhow::Result<Arc<Self>> {
        Self::assemble(config, tokens, queue, events, &PartnerTokens::new())
    }

    fn assemble(
        config: Config,
        tokens: Arc<dyn TokenSource>,
        queue: Arc<dyn MessageQueue>,
        events: Arc<dyn EventPublisher>,
        partner_tokens: &PartnerTokens,
    ) -> anyhow::Result<Arc<Self>> {
        let hubs = hubs_destination(&config, transfer_client(), tokens.clone())?;
        let (dest, ledger_store) = destination(&config, transfer_client(), tokens.clone())?;
        let mut pipeline = Pipeline::new(
            queue,
            events,
            dest,
            Ledger::new(ledger_store),
            config.pipeline.clone(),
        );
        if let Some(hubs) = hubs {
            pipeline = pipeline.with_hubs(hubs);
        }
        let (pipeline, partner_invoices) =
            Self::register_partners(&config, pipeline, &tokens, partner_tokens);
        let app = Self {
            config,
            pipeline,
            partner_invoices,
        };
        Ok(Arc::new(app))
    }
}

/// Graph and Partner Center calls: configured endpoints are trusted for their own audience
/// (local mode points them at loopback stand-ins); nothing else is added.
fn graph_allow_list(config: &Config) -> AllowList {
    let mut allow = AllowList::default();
    allow.allow_url(Audience::Graph, &config.graph.base_url);
    allow.allow_url(Audience::PartnerCenter, &config.partner_center_base_url);
    allow
}

type Storage = (Arc<dyn Destination>, Arc<dyn LedgerStore>);

/// The FinOps hubs ingestion container: beside the destination container in the same account
/// (same credential), or a folder of the output directory locally.
fn hubs_destination(
    config: &Config,
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
) -> anyhow::Result<Option<Arc<dyn Destination>>> {
    let Some(container) = &config.hubs_container else {
        return Ok(None);
    };
    let mut hubs = config.clone();
    match &mut hubs.destination {
        DestinationConfig::Filesystem { directory } => *directory = directory.join(container),
        DestinationConfig::Blob { container: c, .. } => *c = container.clone(),
    }
    Ok(Some(destination(&hubs, http, tokens)?.0))
}

fn destination(
    config: &Config,
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
) -> anyhow::Result<Storage> {
    let ledger_prefix = config.pipeline.output_prefix.join("_ledger")?;
    match &config.destination {
        DestinationConfig::Filesystem { directory } => Ok((
            Arc::new(FilesystemDestination::new(directory.clone(), http)),
            Arc::new(FilesystemLedger::new(
                directory.join(ledger_prefix.as_str()),
            )),
        )),
        DestinationConfig::Blob {
            account_url,
            container,
            sas,
            copy_strategy,
        } => {
            let account = match sas {
                Some(sas) => BlobAccount::with_sas(account_url, sas.clone()),
                None => BlobAccount::with_token(account_url, tokens),
            }
            .with_context(|| format!("app setting {}", crate::settings::DESTINATION_ACCOUNT_URL))?;
            let options = BlobOptions {
                strategy: *copy_strategy,
                ..BlobOptions::default()
            };
            Ok((
                Arc::new(BlobDestination::new(
                    account.clone(),
                    container.clone(),
                    options,
                    http,
                )?),
                Arc::new(BlobLedger::new(account, container.clone(), ledger_prefix)?),
            ))
        }
    }
}
