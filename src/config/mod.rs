//! Configuration from app settings (environment variables), validated once at start-up with
//! errors that name the setting. Names, defaults and docs come from `settings::SETTINGS`.

pub mod partners;

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::adapters::blob::CopyStrategy;
use crate::adapters::identity::{CredentialKind, AUTHORITY_HOST};
use crate::adapters::shared_key::{parse_connection_string, ConnectionString, SharedAccessKey};
use crate::adapters::storage::ObjectPath;
use crate::auth::{HostPattern, Secret};
use crate::billing::{
    AttributeSet, BillingMonth, BillingPeriod, CurrencyCode, ExportKind, GraphConfig, GraphVersion,
    InvoiceId, SourceHosts,
};
use crate::pipeline::derived::{Amount, OutputFormats};
use crate::pipeline::{PipelineConfig, PollPolicy};
use crate::settings::{self as s, SETTINGS};

pub use partners::{PartnerConfig, PartnerCredential, SecretReference, TenantId};

#[derive(Debug, thiserror::Error)]
#[error("app setting {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

fn err(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        reason: reason.into(),
    }
}

/// Which exports the timer starts.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanConfig {
    pub kinds: Vec<ExportKind>,
    pub attribute_set: AttributeSet,
    pub invoice_ids: Vec<InvoiceId>,
    pub currencies: Vec<CurrencyCode>,
    pub periods: Vec<BillingPeriod>,
    pub discover_invoices: bool,
    /// Billing months before the current one a billed firing looks at.
    pub billed_lookback_months: u32,
    /// Day of the month after which last month's invoices are overdue (0: never).
    pub invoices_missing_day: u8,
    /// First billing month the billed export API serves.
    pub billed_history_from: BillingMonth,
    /// Failed runs of one export before planning gives it up.
    pub max_attempts: u32,
    /// When a billed export Graph had no data for is tried once more (`None`: never).
    pub no_data_retry_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DestinationConfig {
    Filesystem {
        directory: PathBuf,
    },
    Blob {
        account_url: Url,
        container: String,
        /// SAS instead of the managed identity.
        sas: Option<Secret>,
        copy_strategy: CopyStrategy,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub graph: GraphConfig,
    pub partner_center_base_url: Url,
    pub plan: PlanConfig,
    pub pipeline: PipelineConfig,
    pub servicebus_endpoint: Option<Url>,
    /// From a `ServiceBusConnection` connection string, when keys are used instead of identity.
    pub servicebus_key: Option<SharedAccessKey>,
    pub eventgrid_endpoint: Option<Url>,
    pub eventgrid_key: Option<Secret>,
    pub destination: DestinationConfig,
    pub credentials: Credentials,
    pub json_logs: bool,
    /// The partner tenants, never empty: those of `PARTNERS` / `PARTNERS_FILE`, or one implicit
    /// partner ([`PartnerId::default_partner`](crate::billing::PartnerId)) built from the
    /// single-tenant settings (`GRAPH_*`, `EXPORT_*`), whose paths, keys and events carry no
    /// partner.
    pub partners: Vec<PartnerConfig>,
    /// FinOps hubs ingestion container (`HUBS_INGESTION_CONTAINER`), when landing is on.
    pub hubs_container: Option<String>,
}

impl Config {
    /// The partner with this id.
    pub fn partner(&self, id: &crate::billing::PartnerId) -> Option<&PartnerConfig> {
        self.partners.iter().find(|p| &p.id == id)
    }

    /// Whether the deployment lists partners (`PARTNERS` / `PARTNERS_FILE`).
    pub fn has_partner_list(&self) -> bool {
        !(self.partners.len() == 1 && self.partners[0].id.is_default())
    }
}

/// Reads settings through `get` (the environment in production, a map in tests).
pub struct Settings<F: Fn(&str) -> Option<String>> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Settings<F> {
    pub fn new(get: F) -> Self {
        Self { get }
    }

    /// The value, or the documented default; empty counts as unset.
    fn raw(&self, name: &'static str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .or_else(|| {
                SETTINGS
                    .iter()
                    .find(|x| x.name == name)
                    .and_then(|x| x.default)
                    .map(str::to_string)
            })
    }

    fn url(&self, name: &'static str) -> Result<Option<Url>, ConfigError> {
        self.raw(name)
            .map(|v| Url::parse(&v).map_err(|e| err(name, format!("{v:?} is not a URL: {e}"))))
            .transpose()
    }

    fn list<T, E: std::fmt::Display>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Vec<T>, ConfigError> {
        self.raw(name)
            .unwrap_or_default()
            .split([',', ';', ' '])
            .filter(|x| !x.trim().is_empty())
            .map(|x| parse(x.trim()).map_err(|e| err(name, e.to_string())))
            .collect()
    }

    fn number(&self, name: &'static str) -> Result<u64, ConfigError> {
        let v = self.raw(name).ok_or_else(|| err(name, "is required"))?;
        v.parse()
            .map_err(|_| err(name, format!("{v:?} is not a whole number")))
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&Settings::new(|n| std::env::var(n).ok()))
    }

    pub fn load<F: Fn(&str) -> Option<String>>(st: &Settings<F>) -> Result<Self, ConfigError> {
        let graph = graph_config(st)?;
        let plan = plan_config(st)?;
        let pipeline = pipeline_config(st, &graph)?;
        let hubs_container = hubs_container(st, &pipeline)?;
        let (servicebus_endpoint, connection) = servicebus(st)?;
        let destination = destination_config(st)?;
        let credentials = credentials(st)?;
        let partners = partner_list(st, &plan, &credentials)?;
        Ok(Self {
            partners,
            graph,
            partner_center_base_url: st.url(s::PARTNER_CENTER_BASE_URL)?.expect("has default"),
            plan,
            pipeline,
            servicebus_endpoint,
            servicebus_key: connection.map(|c| c.key),
            eventgrid_endpoint: st.url(s::EVENTGRID_TOPIC_ENDPOINT)?,
            eventgrid_key: st.raw(s::EVENTGRID_TOPIC_KEY).map(Secret::new),
            destination,
            credentials,
            json_logs: st
                .raw(s::LOG_FORMAT)
                .unwrap_or_default()
                .eq_ignore_ascii_case("json"),
            hubs_container,
        })
    }
}

/// Graph's endpoint, API version, `Retry-After` bounds and the hosts a manifest may name.
fn graph_config<F: Fn(&str) -> Option<String>>(
    st: &Settings<F>,
) -> Result<GraphConfig, ConfigError> {
    let graph_base = st.url(s::GRAPH_BASE_URL)?.expect("has default");
    let version: GraphVersion = st
        .raw(s::GRAPH_API_VERSION)
        .unwrap_or_default()
        .parse()
        .map_err(|e: String| err(s::GRAPH_API_VERSION, e))?;
    let default_retry_after =
        Duration::from_secs(st.number(s::DEFAULT_RETRY_AFTER_SECONDS)?.clamp(1, 3600));
    let max_retry_after = Duration::from_secs(st.number(s::MAX_RETRY_AFTER_SECONDS)?.max(1));
    let source_hosts = st.list(s::SOURCE_STORAGE_HOSTS, HostPattern::parse)?;
    if source_hosts.is_empty() {
        return Err(err(s::SOURCE_STORAGE_HOSTS, "lists no host"));
    }
    Ok(GraphConfig {
        base_url: graph_base,
        version,
        default_retry_after,
        max_retry_after,
        source_hosts: SourceHosts::new(source_hosts),
        ..GraphConfig::default()
    })
}

/// What the timers start: kinds, attribute set, invoices, unbilled periods and currencies,
/// invoice discovery.
fn plan_config<F: Fn(&str) -> Option<String>>(st: &Settings<F>) -> Result<PlanConfig, ConfigError> {
    let discovery = st
        .raw(s::INVOICE_DISCOVERY)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let discover_invoices = match discovery.as_str() {
        "partner-center" | "on" | "true" => true,
        "off" | "false" | "none" => false,
        other => {
            return Err(err(
                s::INVOICE_DISCOVERY,
                format!("{other:?}: expected partner-center or off"),
            ))
        }
    };
    Ok(PlanConfig {
        kinds: st.list(s::EXPORT_KINDS, str::parse::<ExportKind>)?,
        attribute_set: st
            .raw(s::EXPORT_ATTRIBUTE_SET)
            .unwrap_or_default()
            .parse()
            .map_err(|e: crate::billing::InvalidInput| err(s::EXPORT_ATTRIBUTE_SET, e.reason))?,
        invoice_ids: st.list(s::EXPORT_INVOICE_IDS, str::parse::<InvoiceId>)?,
        currencies: st.list(s::EXPORT_UNBILLED_CURRENCIES, str::parse::<CurrencyCode>)?,
        periods: st.list(s::EXPORT_UNBILLED_PERIODS, str::parse::<BillingPeriod>)?,
        discover_invoices,
        billed_lookback_months: st.number(s::BILLED_LOOKBACK_MONTHS)?.clamp(1, 24) as u32,
        invoices_missing_day: match st.number(s::INVOICES_MISSING_DAY)? {
            d @ 0..=28 => d as u8,
            d => {
                return Err(err(
                    s::INVOICES_MISSING_DAY,
                    format!("{d} is not a day every month has (0 to 28)"),
                ))
            }
        },
        billed_history_from: st
            .raw(s::BILLED_HISTORY_FROM)
            .unwrap_or_default()
            .parse()
            .map_err(|e: String| err(s::BILLED_HISTORY_FROM, e))?,
        max_attempts: st.number(s::MAX_EXPORT_ATTEMPTS)?.clamp(1, 100) as u32,
        no_data_retry_after: match st.number(s::NO_DATA_RETRY_HOURS)? {
            0 => None,
            h => Some(Duration::from_secs(h.min(24 * 90) * 3600)),
        },
    })
}

/// The state machine's bounds: polling, deadlines, copies, repairs, output formats.
fn pipeline_config<F: Fn(&str) -> Option<String>>(
    st: &Settings<F>,
    graph: &GraphConfig,
) -> Result<PipelineConfig, ConfigError> {
    let default_retry_after = graph.default_retry_after;
    let max_retry_after = graph.max_retry_after;
    let prefix = st.raw(s::DESTINATION_PREFIX).unwrap_or_default();
    Ok(PipelineConfig {
        poll: PollPolicy {
            default_retry_after,
            min_retry_after: Duration::from_secs(st.number(s::MIN_RETRY_AFTER_SECONDS)?.min(300)),
            max_retry_after,
            max_restarts: st.number(s::MAX_EXPORT_RESTARTS)?.min(100) as u32,
        },
        poll_deadline: Duration::from_secs(
            st.number(s::POLL_DEADLINE_MINUTES)?.clamp(1, 60 * 24 * 14) * 60,
        ),
        event_source: st.raw(s::EVENT_SOURCE).unwrap_or_default(),
        output_prefix: ObjectPath::new(prefix.trim_matches('/'))
            .map_err(|e| err(s::DESTINATION_PREFIX, e.to_string()))?,
        max_copy_attempts: st.number(s::MAX_COPY_ATTEMPTS)?.clamp(1, 9) as u32,
        stall_after: Duration::from_secs(st.number(s::STALL_AFTER_MINUTES)?.clamp(1, 24 * 60) * 60),
        max_repairs: st.number(s::MAX_REPAIRS)?.clamp(1, 100) as u32,
        watchdog_budget: crate::pipeline::service::WATCHDOG_BUDGET,
        formats: OutputFormats::parse(&st.raw(s::OUTPUT_FORMATS).unwrap_or_default())
            .map_err(|e| err(s::OUTPUT_FORMATS, e))?,
        invoice_tolerance: st
            .raw(s::INVOICE_CHECK_TOLERANCE)
            .unwrap_or_default()
            .parse::<Amount>()
            .ok()
            .filter(|a| *a >= Amount::default())
            .ok_or_else(|| {
                err(
                    s::INVOICE_CHECK_TOLERANCE,
                    "must be a non-negative amount, e.g. 0.01",
                )
            })?,
        retention: st
            .raw(s::KEEP_SUPERSEDED_VERSIONS)
            .unwrap_or_default()
            .parse()
            .map_err(|e| err(s::KEEP_SUPERSEDED_VERSIONS, e))?,
    })
}

/// The FinOps hubs ingestion container, which needs the Parquet output.
fn hubs_container<F: Fn(&str) -> Option<String>>(
    st: &Settings<F>,
    pipeline: &PipelineConfig,
) -> Result<Option<String>, ConfigError> {
    let hubs_container = st.raw(s::HUBS_INGESTION_CONTAINER);
    if hubs_container.is_some() && !pipeline.formats.parquet {
        return Err(err(
            s::HUBS_INGESTION_CONTAINER,
            "FinOps hubs ingest Parquet: add parquet to OUTPUT_FORMATS (jsonl.gz,parquet)",
        ));
    }
    if let Some(c) = &hubs_container {
        let ok = (3..=63).contains(&c.len())
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(err(
                s::HUBS_INGESTION_CONTAINER,
                format!("{c:?} is not a container name (3-63 lowercase letters, digits, hyphens)"),
            ));
        }
    }
    Ok(hubs_container)
}

/// The Service Bus endpoint (explicit, from the connection string, or from the namespace) and
/// the connection string's key, if one is set.
fn servicebus<F: Fn(&str) -> Option<String>>(
    st: &Settings<F>,
) -> Result<(Option<Url>, Option<ConnectionString>), ConfigError> {
    let connection = st
        .raw(s::SERVICEBUS_CONNECTION_STRING)
        .map(|c| parse_connection_string(&c).map_err(|e| err(s::SERVICEBUS_CONNECTION_STRING, e)))
        .transpose()?;
    let servicebus_endpoint = match (st.url(s::SERVICEBUS_ENDPOINT)?, &connection) {
        (Some(u), _) => Some(u),
        (None, Some(c)) => Some(c.endpoint.clone()),
        (None, None) => st
            .raw(s::SERVICEBUS_NAMESPACE)
            .map(|ns| {
                crate::adapters::servicebus::ServiceBusRest::endpoint_for_namespace(&ns)
                    .map_err(|e| err(s::SERVICEBUS_NAMESPACE, e))
            })
            .transpose()?,
    };
    Ok((servicebus_endpoint, connection))
}

/// Where the exports land: a directory or a blob container.
fn destination_config<F: Fn(&str) -> Option<String>>(
    st: &Settings<F>,
) -> Result<DestinationConfig, ConfigError> {
    Ok(
        match st
            .raw(s::DESTINATION_KIND)
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "filesystem" => DestinationConfig::Filesystem {
                directory: st
                    .raw(s::DESTINATION_DIRECTORY)
                    .map(PathBuf::from)
                    .ok_or_else(|| {
                        err(
                            s::DESTINATION_DIRECTORY,
                            "is required when DESTINATION_KIND=filesystem",
                        )
                    })?,
            },
            "blob" => DestinationConfig::Blob {
                account_url: st.url(s::DESTINATION_ACCOUNT_URL)?.ok_or_else(|| {
                    err(
                        s::DESTINATION_ACCOUNT_URL,
                        "is required when DESTINATION_KIND=blob",
                    )
                })?,
                container: st.raw(s::DESTINATION_CONTAINER).unwrap_or_default(),
                sas: st.raw(s::DESTINATION_SAS).map(Secret::new),
                copy_strategy: st
                    .raw(s::COPY_STRATEGY)
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e: String| err(s::COPY_STRATEGY, e))?,
            },
            other => {
                return Err(err(
                    s::DESTINATION_KIND,
                    format!("{other:?}: expected blob or filesystem"),
                ))
            }
        },
    )
}

/// `PARTNERS` or `PARTNERS_FILE` parsed, or the implicit single partner.
fn partner_list<F: Fn(&str) -> Option<String>>(
    st: &Settings<F>,
    plan: &PlanConfig,
    credentials: &Credentials,
) -> Result<Vec<PartnerConfig>, ConfigError> {
    let (name, json) = match (st.raw(s::PARTNERS), st.raw(s::PARTNERS_FILE)) {
        (Some(_), Some(_)) => {
            return Err(err(
                s::PARTNERS_FILE,
                "set PARTNERS or PARTNERS_FILE, not both",
            ))
        }
        (Some(json), None) => (s::PARTNERS, json),
        (None, Some(path)) => (
            s::PARTNERS_FILE,
            std::fs::read_to_string(&path)
                .map_err(|e| err(s::PARTNERS_FILE, format!("cannot read {path:?}: {e}")))?,
        ),
        (None, None) => {
            return Ok(vec![PartnerConfig {
                id: crate::billing::PartnerId::default_partner(),
                tenant_id: graph_tenant(st)?,
                credential: PartnerCredential {
                    kind: credentials.graph.clone(),
                    secret: None,
                    secrets: credentials.graph_secrets.clone(),
                },
                plan: plan.clone(),
                destination_prefix: None,
                max_concurrency: None,
            }])
        }
    };
    let is_set = |n: &str| (st.get)(n).map(|v| !v.trim().is_empty()).unwrap_or(false);
    let mut list = partners::parse(&json, plan, &is_set).map_err(|e| err(name, e.to_string()))?;
    // A federated partner credential without its own identity uses the app's user-assigned
    // identity (AZURE_CLIENT_ID): Entra trusts only user-assigned identities as federated
    // credentials, so that is the one infra/ creates.
    let app_identity = match &credentials.azure {
        CredentialKind::ManagedIdentity { client_id } => client_id.clone(),
        _ => None,
    };
    for p in &mut list {
        p.credential.secrets = CredentialSecrets::of_partner(st, p.credential.secret.as_ref());
        if let CredentialKind::FederatedManagedIdentity {
            identity_client_id, ..
        } = &mut p.credential.kind
        {
            if identity_client_id.is_none() {
                identity_client_id.clone_from(&app_identity);
            }
        }
    }
    Ok(list)
}

/// `GRAPH_TENANT_ID` as the tenant the implicit partner's tokens and manifests must name. A
/// domain name (accepted by Entra for client credentials) cannot be compared with a token's
/// `tid`, so only a GUID is taken.
fn graph_tenant<F: Fn(&str) -> Option<String>>(
    st: &Settings<F>,
) -> Result<Option<TenantId>, ConfigError> {
    Ok(st
        .raw(s::GRAPH_TENANT_ID)
        .and_then(|t| TenantId::parse(&t).ok()))
}

impl Config {
    /// The rules a deployment must meet before the handler serves: every partner whose billed
    /// exports are planned can find its invoices. A Graph credential that cannot reach Partner
    /// Center (a plain managed identity) with invoice discovery on would fail every day, so
    /// `serve` refuses to start instead, naming the fix.
    pub fn check_deployment(&self) -> Result<(), ConfigError> {
        for p in &self.partners {
            let billed = p.plan.kinds.iter().any(|k| k.is_billed());
            if !billed || p.credential.kind.reaches_partner_center() {
                continue;
            }
            let (name, whose) = if p.id.is_default() {
                (s::GRAPH_CREDENTIAL_KIND, String::new())
            } else {
                (s::PARTNERS, format!("partner {}: ", p.id))
            };
            let fix = "use GRAPH_CREDENTIAL_KIND=federated-managed-identity (an app registration that trusts \
                 the Function App's managed identity, registered in Partner Center; see docs/deploy.md), \
                 or set INVOICE_DISCOVERY=off with EXPORT_INVOICE_IDS, or leave the billed kinds out of EXPORT_KINDS";
            if p.plan.discover_invoices {
                return Err(err(
                    name,
                    format!("{whose}a managed identity cannot list invoices in Partner Center (it cannot be registered there), so billed exports would never start: {fix}"),
                ));
            }
            if p.plan.invoice_ids.is_empty() {
                return Err(err(
                    name,
                    format!("{whose}billed exports are planned with invoice discovery off but no invoice ids: {fix}"),
                ));
            }
        }
        Ok(())
    }
}

/// Which credential reaches which service. Azure resources (destination storage, Service Bus,
/// Event Grid) are reached as the Function App's own identity, which holds their roles; Graph
/// and Partner Center have a credential of their own, because Partner Center app-only access
/// needs an app registration registered in Partner Center, which a managed identity cannot be.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub azure: CredentialKind,
    pub graph: CredentialKind,
    /// The Graph credential's secret material and sign-in host, read here as values.
    pub graph_secrets: CredentialSecrets,
}

/// A credential's secret material and sign-in host, as values by setting name
/// (`GRAPH_CLIENT_SECRET`, `GRAPH_CLIENT_CERTIFICATE`, `GRAPH_CLIENT_CERTIFICATE_PATH`,
/// `AZURE_AUTHORITY_HOST`): `config` reads the settings, and the identity adapter gets these
/// through [`CredentialSecrets::get`]. `Debug` shows the names only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct CredentialSecrets {
    values: std::collections::BTreeMap<&'static str, Secret>,
}

impl CredentialSecrets {
    /// The value stored under `name`, if any.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).map(|v| v.expose().to_string())
    }

    /// Stores `value` under `name`; an empty value counts as unset.
    pub fn set(&mut self, name: &'static str, value: Option<String>) {
        match value.filter(|v| !v.trim().is_empty()) {
            Some(v) => self.values.insert(name, Secret::new(v)),
            None => self.values.remove(name),
        };
    }

    /// The single-tenant Graph credential's material, from its own settings.
    fn of_graph<F: Fn(&str) -> Option<String>>(st: &Settings<F>) -> Self {
        let mut out = Self::default();
        for name in [
            s::GRAPH_CLIENT_SECRET,
            s::GRAPH_CLIENT_CERTIFICATE,
            s::GRAPH_CLIENT_CERTIFICATE_PATH,
            AUTHORITY_HOST,
        ] {
            out.set(name, (st.get)(name));
        }
        out
    }

    /// A listed partner's material: the setting its reference names, under the name the
    /// identity adapter looks up; never the single-tenant secret settings.
    fn of_partner<F: Fn(&str) -> Option<String>>(
        st: &Settings<F>,
        secret: Option<&SecretReference>,
    ) -> Self {
        let mut out = Self::default();
        out.set(AUTHORITY_HOST, (st.get)(AUTHORITY_HOST));
        if let Some(reference) = secret {
            let name = match reference {
                SecretReference::ClientSecret(_) => s::GRAPH_CLIENT_SECRET,
                SecretReference::Certificate(_) => s::GRAPH_CLIENT_CERTIFICATE,
                SecretReference::CertificatePath(_) => s::GRAPH_CLIENT_CERTIFICATE_PATH,
            };
            out.set(name, (st.get)(reference.setting()));
        }
        out
    }
}

impl std::fmt::Debug for CredentialSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

fn credentials<F: Fn(&str) -> Option<String>>(
    st: &Settings<F>,
) -> Result<Credentials, ConfigError> {
    let azure_client_id = st.raw(s::AZURE_CLIENT_ID);
    let kind = |name: &'static str| st.raw(name).unwrap_or_default().to_ascii_lowercase();
    let azure = match kind(s::AZURE_CREDENTIAL_KIND).as_str() {
        "managed-identity" | "managedidentity" => CredentialKind::ManagedIdentity {
            client_id: azure_client_id.clone(),
        },
        "workload-identity" => CredentialKind::WorkloadIdentity,
        "azure-cli" => CredentialKind::AzureCli,
        other => {
            return Err(err(
                s::AZURE_CREDENTIAL_KIND,
                format!("{other:?}: expected managed-identity, workload-identity or azure-cli (a client secret is for Graph only: GRAPH_CREDENTIAL_KIND)"),
            ))
        }
    };
    let graph_kind = kind(s::GRAPH_CREDENTIAL_KIND);
    // The tenant and the app registration every app-registration kind signs in with.
    let app = || -> Result<(String, String), ConfigError> {
        let required = |name: &'static str, what: &str| {
            st.raw(name).ok_or_else(|| {
                err(
                    name,
                    format!("is required for GRAPH_CREDENTIAL_KIND={graph_kind}{what}"),
                )
            })
        };
        Ok((
            required(s::GRAPH_TENANT_ID, "")?,
            required(s::GRAPH_CLIENT_ID, ": the app registration's client id")?,
        ))
    };
    let graph = match graph_kind.as_str() {
        "managed-identity" | "managedidentity" => CredentialKind::ManagedIdentity {
            client_id: st.raw(s::GRAPH_CLIENT_ID).or(azure_client_id),
        },
        "client-secret" => {
            let (tenant_id, client_id) = app()?;
            CredentialKind::ClientSecret {
                tenant_id,
                client_id,
            }
        }
        "client-certificate" => {
            let (tenant_id, client_id) = app()?;
            CredentialKind::ClientCertificate {
                tenant_id,
                client_id,
            }
        }
        "federated-managed-identity" => {
            let (tenant_id, client_id) = app()?;
            CredentialKind::FederatedManagedIdentity {
                tenant_id,
                client_id,
                identity_client_id: azure_client_id,
            }
        }
        "workload-identity" => CredentialKind::WorkloadIdentity,
        "azure-cli" => CredentialKind::AzureCli,
        other => {
            return Err(err(
                s::GRAPH_CREDENTIAL_KIND,
                format!("{other:?}: expected federated-managed-identity, managed-identity, client-secret, client-certificate, workload-identity or azure-cli"),
            ))
        }
    };
    Ok(Credentials {
        azure,
        graph,
        graph_secrets: CredentialSecrets::of_graph(st),
    })
}

#[cfg(test)]
mod tests;
