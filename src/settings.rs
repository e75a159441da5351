//! Every app setting the code reads, with its default and an example. This table is the single
//! source for docs/settings.md, `infra/` app settings (checked by a test) and
//! `Config::from_env`.

/// Where a setting matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read by the handler in Azure and locally.
    Handler,
    /// Read by the Functions host from function.json / host.json, not by our code.
    Host,
}

#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    /// `None`: required in Azure (local mode fills it in).
    pub default: Option<&'static str>,
    pub example: &'static str,
    pub scope: Scope,
    pub description: &'static str,
}

pub const UNBILLED_SCHEDULE: &str = "UNBILLED_SCHEDULE";
pub const BILLED_SCHEDULE: &str = "BILLED_SCHEDULE";
pub const BILLED_LOOKBACK_MONTHS: &str = "BILLED_LOOKBACK_MONTHS";
pub const INVOICES_MISSING_DAY: &str = "INVOICES_MISSING_DAY";
pub const BILLED_HISTORY_FROM: &str = "BILLED_HISTORY_FROM";
pub const WATCHDOG_SCHEDULE: &str = "WATCHDOG_SCHEDULE";
pub const STALL_AFTER_MINUTES: &str = "STALL_AFTER_MINUTES";
pub const MAX_REPAIRS: &str = "MAX_REPAIRS";
pub const MAX_COPY_ATTEMPTS: &str = "MAX_COPY_ATTEMPTS";
pub const GRAPH_BASE_URL: &str = "GRAPH_BASE_URL";
pub const GRAPH_API_VERSION: &str = "GRAPH_API_VERSION";
pub const PARTNER_CENTER_BASE_URL: &str = "PARTNER_CENTER_BASE_URL";
pub const SOURCE_STORAGE_HOSTS: &str = "SOURCE_STORAGE_HOSTS";
pub const EXPORT_KINDS: &str = "EXPORT_KINDS";
pub const EXPORT_ATTRIBUTE_SET: &str = "EXPORT_ATTRIBUTE_SET";
pub const EXPORT_INVOICE_IDS: &str = "EXPORT_INVOICE_IDS";
pub const EXPORT_UNBILLED_CURRENCIES: &str = "EXPORT_UNBILLED_CURRENCIES";
pub const EXPORT_UNBILLED_PERIODS: &str = "EXPORT_UNBILLED_PERIODS";
pub const INVOICE_DISCOVERY: &str = "INVOICE_DISCOVERY";
pub const POLL_DEADLINE_MINUTES: &str = "POLL_DEADLINE_MINUTES";
pub const DEFAULT_RETRY_AFTER_SECONDS: &str = "DEFAULT_RETRY_AFTER_SECONDS";
pub const MAX_RETRY_AFTER_SECONDS: &str = "MAX_RETRY_AFTER_SECONDS";
pub const MIN_RETRY_AFTER_SECONDS: &str = "MIN_RETRY_AFTER_SECONDS";
pub const MAX_EXPORT_RESTARTS: &str = "MAX_EXPORT_RESTARTS";
pub const MAX_EXPORT_ATTEMPTS: &str = "MAX_EXPORT_ATTEMPTS";
pub const NO_DATA_RETRY_HOURS: &str = "NO_DATA_RETRY_HOURS";
pub const KEEP_SUPERSEDED_VERSIONS: &str = "KEEP_SUPERSEDED_VERSIONS";
pub const SERVICEBUS_NAMESPACE: &str = "ServiceBusConnection__fullyQualifiedNamespace";
pub const SERVICEBUS_ENDPOINT: &str = "SERVICEBUS_ENDPOINT";
pub const SERVICEBUS_CONNECTION_STRING: &str = "ServiceBusConnection";
pub const EVENTGRID_TOPIC_KEY: &str = "EVENTGRID_TOPIC_KEY";
pub const EVENTGRID_TOPIC_ENDPOINT: &str = "EVENTGRID_TOPIC_ENDPOINT";
pub const EVENT_SOURCE: &str = "EVENT_SOURCE";
pub const DESTINATION_KIND: &str = "DESTINATION_KIND";
pub const DESTINATION_DIRECTORY: &str = "DESTINATION_DIRECTORY";
pub const DESTINATION_ACCOUNT_URL: &str = "DESTINATION_ACCOUNT_URL";
pub const DESTINATION_CONTAINER: &str = "DESTINATION_CONTAINER";
pub const DESTINATION_PREFIX: &str = "DESTINATION_PREFIX";
pub const DESTINATION_SAS: &str = "DESTINATION_SAS";
pub const OUTPUT_FORMATS: &str = "OUTPUT_FORMATS";
pub const INVOICE_CHECK_TOLERANCE: &str = "INVOICE_CHECK_TOLERANCE";
pub const HUBS_INGESTION_CONTAINER: &str = "HUBS_INGESTION_CONTAINER";
pub const COPY_STRATEGY: &str = "COPY_STRATEGY";
pub const AZURE_CREDENTIAL_KIND: &str = "AZURE_CREDENTIAL_KIND";
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const GRAPH_CREDENTIAL_KIND: &str = "GRAPH_CREDENTIAL_KIND";
pub const GRAPH_TENANT_ID: &str = "GRAPH_TENANT_ID";
pub const GRAPH_CLIENT_ID: &str = "GRAPH_CLIENT_ID";
pub const GRAPH_CLIENT_SECRET: &str = "GRAPH_CLIENT_SECRET";
pub const GRAPH_CLIENT_CERTIFICATE: &str = "GRAPH_CLIENT_CERTIFICATE";
pub const GRAPH_CLIENT_CERTIFICATE_PATH: &str = "GRAPH_CLIENT_CERTIFICATE_PATH";
pub const LOG_FORMAT: &str = "LOG_FORMAT";
pub const PARTNERS: &str = "PARTNERS";
pub const PARTNERS_FILE: &str = "PARTNERS_FILE";
pub const CUSTOM_HANDLER_PORT: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";

pub const SETTINGS: &[Setting] = &[
    Setting { name: UNBILLED_SCHEDULE, default: Some("0 0 5 * * *"), example: "0 0 5,17 * * *", scope: Scope::Host,
        description: "NCRONTAB (six fields, UTC) of the StartUnbilledExports timer (unbilled usage and reconciliation). Default daily at 05:00 UTC: daily-rated usage becomes available about 24 hours after use, so a daily export keeps the current month's data a day behind at most." },
    Setting { name: BILLED_SCHEDULE, default: Some("0 30 6 * * *"), example: "0 30 6 8-20 * *", scope: Scope::Host,
        description: "NCRONTAB (six fields, UTC) of the StartBilledExports timer (billed usage and reconciliation per invoice). Default daily at 06:30 UTC: invoices are published on about the 8th of the following month, but not on a fixed day; each firing only starts exports for invoices the ledger has no completed run of, so a day with nothing new costs one Partner Center listing." },
    Setting { name: BILLED_LOOKBACK_MONTHS, default: Some("3"), example: "6", scope: Scope::Handler,
        description: "Billing months (before the current one) whose invoices each StartBilledExports firing looks for; an invoice published late, or missed during an outage, is exported as long as its month is inside this window." },
    Setting { name: INVOICES_MISSING_DAY, default: Some("12"), example: "15", scope: Scope::Handler,
        description: "Day of the month after which last month's invoices are overdue: a billed firing on or after it that finds none raises one InvoicesMissing event (and error log line) for that month. 0 turns the check off." },
    Setting { name: BILLED_HISTORY_FROM, default: Some("2022-09"), example: "2023-09", scope: Scope::Handler,
        description: "First billing month (yyyy-MM) the billed export API serves (Partner Center documents new-commerce billed usage from September 2022); POST /api/backfill skips earlier months and says so." },
    Setting { name: WATCHDOG_SCHEDULE, default: Some("0 */5 * * * *"), example: "0 */10 * * * *", scope: Scope::Host,
        description: "NCRONTAB of the Watchdog timer, which resumes or fails runs that stopped moving and re-sends unsent final events. Read by the Functions host (function.json)." },
    Setting { name: STALL_AFTER_MINUTES, default: Some("15"), example: "30", scope: Scope::Handler,
        description: "A run that has not moved for this long (past its scheduled poll, if any) is resumed by the watchdog with fresh messages." },
    Setting { name: MAX_REPAIRS, default: Some("3"), example: "5", scope: Scope::Handler,
        description: "Consecutive watchdog resumptions without progress before a run fails as stalled (with ExportFailed)." },
    Setting { name: MAX_COPY_ATTEMPTS, default: Some("5"), example: "8", scope: Scope::Handler,
        description: "Attempts of one partition's copy before its run fails (copyFailed). A failed attempt sends the copy again after a backoff (10 s, 30 s, 90 s, 270 s) rather than an immediate redelivery; redeliveries after a crash count too. Keep it below the queue's maxDeliveryCount (10) so the run fails with an event instead of a silent dead letter." },
    Setting { name: GRAPH_BASE_URL, default: Some("https://graph.microsoft.com"), example: "https://graph.microsoft.com", scope: Scope::Handler,
        description: "Microsoft Graph root, without version. Its host is the only one a Graph token is sent to." },
    Setting { name: GRAPH_API_VERSION, default: Some("v1.0"), example: "beta", scope: Scope::Handler,
        description: "Graph API version: v1.0 (GA) or beta." },
    Setting { name: PARTNER_CENTER_BASE_URL, default: Some("https://api.partnercenter.microsoft.com"), example: "https://api.partnercenter.microsoft.com", scope: Scope::Handler,
        description: "Partner Center REST root used to discover invoice ids." },
    Setting { name: SOURCE_STORAGE_HOSTS, default: Some("*.blob.core.windows.net"), example: "*.blob.core.usgovcloudapi.net", scope: Scope::Handler,
        description: "Hosts (comma-separated; `*.` matches any labels to the left) a manifest's rootDirectory may point at; partitions are fetched from there, so any other host is refused before a request is made and the run fails (manifest). Sovereign clouds: `*.blob.core.usgovcloudapi.net`, `*.blob.core.chinacloudapi.cn`. Loopback is accepted only when listed or on GRAPH_BASE_URL's host when that is loopback (local mode)." },
    Setting { name: EXPORT_KINDS, default: Some("billedUsage,billedReconciliation,unbilledUsage,unbilledReconciliation"), example: "billedReconciliation,unbilledUsage", scope: Scope::Handler,
        description: "Export kinds the timer starts." },
    Setting { name: EXPORT_ATTRIBUTE_SET, default: Some("full"), example: "basic", scope: Scope::Handler,
        description: "attributeSet for timer-started exports: full or basic." },
    Setting { name: EXPORT_INVOICE_IDS, default: None, example: "G016907411,G016907412", scope: Scope::Handler,
        description: "Invoice ids for billed exports; when empty the timer discovers last month's invoices from Partner Center." },
    Setting { name: EXPORT_UNBILLED_CURRENCIES, default: None, example: "USD,EUR", scope: Scope::Handler,
        description: "Currencies for unbilled exports (one export per period and currency), in addition to every currency on the partner's invoices of the look-back window (BILLED_LOOKBACK_MONTHS), which planning learns from Partner Center. A listed currency no invoice uses is planned but named in a warning. Empty and no invoice known: USD." },
    Setting { name: EXPORT_UNBILLED_PERIODS, default: Some("current"), example: "current,last", scope: Scope::Handler,
        description: "billingPeriod values for unbilled exports: current and/or last." },
    Setting { name: INVOICE_DISCOVERY, default: Some("partner-center"), example: "off", scope: Scope::Handler,
        description: "partner-center: list invoices to find billed exports; off: use EXPORT_INVOICE_IDS only." },
    Setting { name: POLL_DEADLINE_MINUTES, default: Some("1440"), example: "720", scope: Scope::Handler,
        description: "How long an operation may stay running before the run fails." },
    Setting { name: DEFAULT_RETRY_AFTER_SECONDS, default: Some("30"), example: "60", scope: Scope::Handler,
        description: "Poll delay when Graph sends no Retry-After." },
    Setting { name: MAX_RETRY_AFTER_SECONDS, default: Some("3600"), example: "900", scope: Scope::Handler,
        description: "Cap on any Retry-After Graph asks for." },
    Setting { name: MIN_RETRY_AFTER_SECONDS, default: Some("5"), example: "10", scope: Scope::Handler,
        description: "Floor under the poll delay: a Retry-After of 0 or a date in the past means soon, not a tight loop." },
    Setting { name: MAX_EXPORT_RESTARTS, default: Some("3"), example: "5", scope: Scope::Handler,
        description: "How often an export whose operation answers 410 Gone is started again." },
    Setting { name: MAX_EXPORT_ATTEMPTS, default: Some("3"), example: "5", scope: Scope::Handler,
        description: "Runs of one export that may fail (Graph refused it, or it failed) before planning gives it up: the plan then skips it with the reason and one ExportAbandoned event says so. POST /api/exports and export --force still start it." },
    Setting { name: NO_DATA_RETRY_HOURS, default: Some("72"), example: "48", scope: Scope::Handler,
        description: "A billed export Graph had no data for (code 5000) is planned once more this many hours later, while its month is inside the look-back window: Graph can answer 5000 on the day an invoice appears, before its daily-rated usage is ready. 0 turns the second try off." },
    Setting { name: KEEP_SUPERSEDED_VERSIONS, default: Some("2"), example: "all", scope: Scope::Handler,
        description: "Data versions of one export kept besides the current one. A daily unbilled export lands a new version each day; when a run becomes current, older superseded versions beyond this many are deleted (logged, and counted in ExportCompleted's retention). `all` keeps every version, e.g. to let a storage lifecycle rule expire them instead." },
    Setting { name: SERVICEBUS_NAMESPACE, default: None, example: "contoso-billing.servicebus.windows.net", scope: Scope::Handler,
        description: "Service Bus namespace; the triggers (identity-based connection) and our scheduled sends both use it." },
    Setting { name: SERVICEBUS_ENDPOINT, default: None, example: "http://127.0.0.1:7072", scope: Scope::Handler,
        description: "Overrides the Service Bus REST endpoint (local mode points it at the stand-in)." },
        Setting {
        name: SERVICEBUS_CONNECTION_STRING,
        default: None,
        example: "Endpoint=sb://contoso-billing.servicebus.windows.net/;SharedAccessKeyName=functions;SharedAccessKey=…",
        scope: Scope::Handler,
        description: "Keyed alternative to the managed identity: a Service Bus connection string, used by the triggers and by our scheduled sends. Leave unset for keyless deployments.",
    },
    Setting {
        name: EVENTGRID_TOPIC_KEY,
        default: None,
        example: "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/topic-key)",
        scope: Scope::Handler,
        description: "Keyed alternative to Entra auth for Event Grid: the topic access key, sent as aeg-sas-key. Leave unset for keyless deployments.",
    },
Setting { name: EVENTGRID_TOPIC_ENDPOINT, default: None, example: "https://billing-exports.westeurope-1.eventgrid.azure.net/api/events", scope: Scope::Handler,
        description: "Event Grid topic (CloudEvents 1.0 input schema). Unset: events are only logged." },
    Setting { name: EVENT_SOURCE, default: Some("/partner-billing-export"), example: "/contoso/partner-billing-export", scope: Scope::Handler,
        description: "CloudEvents `source` of every event we publish." },
    Setting { name: DESTINATION_KIND, default: Some("blob"), example: "filesystem", scope: Scope::Handler,
        description: "Where partitions land: blob (partner storage account) or filesystem (a local directory)." },
    Setting { name: DESTINATION_DIRECTORY, default: None, example: "./out", scope: Scope::Handler,
        description: "Output directory when DESTINATION_KIND=filesystem." },
    Setting { name: DESTINATION_ACCOUNT_URL, default: None, example: "https://contosobilling.blob.core.windows.net", scope: Scope::Handler,
        description: "Partner storage account blob endpoint when DESTINATION_KIND=blob." },
    Setting { name: DESTINATION_CONTAINER, default: Some("billing-exports"), example: "billing-exports", scope: Scope::Handler,
        description: "Container holding exports and the run ledger." },
    Setting { name: DESTINATION_PREFIX, default: Some("partner-billing"), example: "csp/exports", scope: Scope::Handler,
        description: "Folder prefix inside the container." },
    Setting { name: DESTINATION_SAS, default: None, example: "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/dest-sas)", scope: Scope::Handler,
        description: "Keyed alternative to the managed identity for the destination account: an account or container SAS (sv=…&sig=…). Leave unset for keyless deployments." },
    Setting { name: OUTPUT_FORMATS, default: Some("jsonl.gz"), example: "jsonl.gz,parquet", scope: Scope::Handler,
        description: "What lands per partition: jsonl.gz (Microsoft's file, byte for byte; always) and optionally parquet (typed Parquet in parquet/ and the FOCUS view in focus/ beside it; docs/schema.md, docs/focus.md)." },
    Setting { name: INVOICE_CHECK_TOLERANCE, default: Some("0.01"), example: "0.05", scope: Scope::Handler,
        description: "Invoice check (with parquet output): the largest difference, in the invoice currency, between an invoice's totalCharges and the sum of its billed reconciliation rows that still counts as balanced; also the rounding allowed per Azure line, times (1 + exchange rate), when billed usage is compared with those lines." },
    Setting { name: HUBS_INGESTION_CONTAINER, default: None, example: "ingestion", scope: Scope::Handler,
        description: "FinOps hubs landing (opt-in, needs parquet output): the container (same account as the destination; a folder of DESTINATION_DIRECTORY locally) where the FOCUS files land, one folder per partner and billing month replaced whole by each landing: Costs/{yyyy}/{mm}/csp/{tenant}/{ingestionId}__{file}.parquet plus manifest.json; an invoiced month holds billed usage plus the invoices' other charges, a month not yet invoiced its newest unbilled data per currency, counted the same way (docs/finops.md); an invoice that does not balance never lands." },
    Setting { name: COPY_STRATEGY, default: Some("auto"), example: "async-copy", scope: Scope::Handler,
        description: "How partitions reach the destination account: auto (Put Blob From URL, Put Block From URL for very large ones, async Copy Blob where those are unsupported), put-blob-from-url, block-from-url, async-copy, or relay (streamed through the function)." },
    Setting { name: AZURE_CREDENTIAL_KIND, default: Some("managed-identity"), example: "azure-cli", scope: Scope::Handler,
        description: "Credential for Azure resources (destination storage, Service Bus, Event Grid): managed-identity (the Function App's identity), workload-identity or azure-cli (a laptop)." },
    Setting { name: AZURE_CLIENT_ID, default: None, example: "00000000-0000-0000-0000-000000000000", scope: Scope::Handler,
        description: "Client id of the app's user-assigned managed identity (also the identity whose token federated-managed-identity presents); unset for the system-assigned one." },
    Setting { name: GRAPH_CREDENTIAL_KIND, default: Some("managed-identity"), example: "client-secret", scope: Scope::Handler,
        description: "Credential for Microsoft Graph and Partner Center: federated-managed-identity (recommended: the partner's app registration, registered in Partner Center, trusting the app's user-assigned identity; no secret), client-secret or client-certificate (an app registration), managed-identity (Graph PartnerBilling.Read.All app role; cannot discover invoices, so billed kinds need INVOICE_DISCOVERY=off and EXPORT_INVOICE_IDS or the handler refuses to start), workload-identity, azure-cli, or device-code (`export` only: a user's sign-in through the partner's public-client app)." },
    Setting { name: GRAPH_TENANT_ID, default: None, example: "00000000-0000-0000-0000-000000000000", scope: Scope::Handler,
        description: "Partner tenant id: where client-secret, client-certificate and federated-managed-identity sign in, and the tenant every Graph and Partner Center token (tid) and manifest (partnerTenantId) must name." },
    Setting { name: GRAPH_CLIENT_ID, default: None, example: "00000000-0000-0000-0000-000000000000", scope: Scope::Handler,
        description: "App registration client id (client-secret, client-certificate, federated-managed-identity), or a user-assigned identity for Graph other than AZURE_CLIENT_ID (managed-identity)." },
    Setting { name: GRAPH_CLIENT_SECRET, default: None, example: "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/graph-app)", scope: Scope::Handler,
        description: "App registration secret, best as a Key Vault reference (client-secret only). Named GRAPH_* so neither the Functions host nor the Azure SDK picks it up for Azure resources." },
    Setting { name: GRAPH_CLIENT_CERTIFICATE, default: None, example: "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/graph-app-cert)", scope: Scope::Handler,
        description: "client-certificate: the app registration's certificate and private key as one PEM document, best a Key Vault reference to a PEM certificate." },
    Setting { name: GRAPH_CLIENT_CERTIFICATE_PATH, default: None, example: "/home/site/graph-app.pem", scope: Scope::Handler,
        description: "client-certificate: a PEM file with the certificate and private key, instead of GRAPH_CLIENT_CERTIFICATE." },
    Setting { name: PARTNERS, default: None, example: "{\"partners\": [{\"id\": \"contoso\", \"tenantId\": \"…\", \"credential\": {…}}]}", scope: Scope::Handler,
        description: "Several partner tenants in one deployment: the partner list as JSON (see Several partner tenants). Unset: one partner from the GRAPH_* and EXPORT_* settings, with no partner level in paths, keys or events. Secrets are named by app setting, never written here." },
    Setting { name: PARTNERS_FILE, default: None, example: "/home/site/partners.json", scope: Scope::Handler,
        description: "Path of a file holding the partner list, instead of PARTNERS." },
    Setting { name: LOG_FORMAT, default: Some("json"), example: "text", scope: Scope::Handler,
        description: "Log format on stdout: json (Application Insights) or text." },
];

pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The settings table of docs/settings.md (a test keeps that file equal to it).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| setting | default | example | what it does |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let default = match s.default {
            Some(d) => format!("`{d}`"),
            None => "(none)".to_string(),
        };
        let scope = match s.scope {
            Scope::Host => " Read by the Functions host (function.json).",
            Scope::Handler => "",
        };
        out.push_str(&format!(
            "| `{}` | {default} | `{}` | {}{scope} |\n",
            s.name, s.example, s.description
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_doc_documents_every_setting() {
        let doc = include_str!("../docs/settings.md");
        let table = super::markdown_table();
        if std::env::var_os("PRINT_SETTINGS_TABLE").is_some() {
            println!("{table}");
        }
        assert!(
            doc.contains(&table),
            "docs/settings.md's settings table is out of date; run PRINT_SETTINGS_TABLE=1 cargo test -p partner-billing-export --lib settings_doc -- --nocapture and paste it there"
        );
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = super::SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
