//! Exports, their operations and manifests: the sandbox's in-memory state and the operation
//! state machine.
//!
//! An *export* is identified by its request (`ExportRequest::key`): asking for the same export
//! again gives the same manifest id, eTag, directory and bytes, as Graph appears to re-serve a
//! cached export. Every POST makes a new *operation* on that export; operations advance one
//! step per GET.

use std::collections::HashMap;

use serde_json::{json, Value};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::data::{self, add_months, month_bounds, ExportFacts, Partition, Rng, UsageSource};
use super::sas::SasSigner;
use super::{ManifestShape, SandboxConfig};
use partner_billing_export::billing::types::{
    AttributeSet, BillingPeriod, ExportKind, ExportRequest, ExportScope,
};

/// Everything behind the sandbox's mutex.
#[derive(Debug)]
pub struct State {
    pub signer: SasSigner,
    pub exports: HashMap<String, Export>,
    pub operations: HashMap<Uuid, Operation>,
    /// Manifest id → export key.
    pub manifests: HashMap<Uuid, String>,
    /// Blob path (`/container/.../name`) → (export key, partition index).
    pub blobs: HashMap<String, (String, usize)>,
    /// Source of operation ids: deterministic per seed and POST order.
    pub op_ids: Rng,
}

impl State {
    pub fn new(seed: u64) -> Self {
        let mut ids = Rng::derived(seed, "sas-principal");
        Self {
            // sktid is Microsoft's own tenant: Graph's storage accounts live there.
            signer: SasSigner::new(
                ids.uuid(),
                Uuid::parse_str("72f988bf-86f1-41af-91ab-2d7cd011db47").expect("static uuid"),
            ),
            exports: HashMap::new(),
            operations: HashMap::new(),
            manifests: HashMap::new(),
            blobs: HashMap::new(),
            op_ids: Rng::derived(seed, "operations"),
        }
    }

    /// Starts an operation for `req` (creating the export on first request) and returns its id.
    pub fn start(
        &mut self,
        cfg: &SandboxConfig,
        today: Date,
        req: ExportRequest,
        version: &str,
        now: OffsetDateTime,
    ) -> Uuid {
        let key = export_key(cfg, &req, today);
        if !self.exports.contains_key(&key) {
            let export = Export::new(cfg, today, req, &key, now);
            self.manifests.insert(export.manifest_id, key.clone());
            for (i, name) in export.blob_names.iter().enumerate() {
                self.blobs
                    .insert(format!("{}/{name}", export.dir), (key.clone(), i));
            }
            self.exports.insert(key.clone(), export);
        }
        let export = self.exports.get_mut(&key).expect("inserted above");
        export.operations_started += 1;
        let gone_after = cfg
            .gone_after_polls
            .filter(|_| export.operations_started == 1);
        let id = self.op_ids.uuid();
        self.operations.insert(
            id,
            Operation {
                id,
                export_key: key,
                version: version.to_string(),
                polls: 0,
                created: now,
                last_action: now,
                gone_after,
            },
        );
        id
    }
}

impl State {
    /// The sum of `Total` over the billed reconciliation data of `invoice`, in hundredths of
    /// the invoice currency: what Partner Center's invoice detail reports as `totalCharges`,
    /// so the sandbox's invoices agree with its data. Read from the partitions the blob routes
    /// serve (generated once and kept) when the export exists, else generated the same way.
    pub fn reconciliation_total_cents(
        &mut self,
        cfg: &SandboxConfig,
        today: Date,
        invoice: &str,
        partner: Option<&str>,
    ) -> Option<i128> {
        let id = invoice.parse().ok()?;
        let mut req =
            ExportRequest::billed(ExportKind::BilledReconciliation, id, AttributeSet::Full).ok()?;
        if let Some(p) = partner {
            req.partner = p.parse().ok()?;
        }
        let key = export_key(cfg, &req, today);
        let mut fresh;
        let export = match self.exports.get_mut(&key) {
            Some(e) => e,
            None => {
                fresh = Export::new(cfg, today, req, &key, OffsetDateTime::now_utc());
                &mut fresh
            }
        };
        let mut cents: i128 = 0;
        for i in 0..export.blob_names.len() {
            let p = export.partition(i, cfg.rows_per_partition);
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(&p.gzip[..]),
                &mut text,
            )
            .ok()?;
            for line in text.lines() {
                let row: Value = serde_json::from_str(line).ok()?;
                // Written with two decimals; summed in cents so no float error accumulates.
                cents += (row.get("Total")?.as_f64()? * 100.0).round() as i128;
            }
        }
        Some(cents)
    }
}

/// Which export (data version) a request is served from. A billed invoice's data is fixed
/// once issued. Unbilled data grows every day until the period is invoiced, so each day's
/// request gets a new snapshot (new eTag, new rows), as Graph serves a new data version.
/// Whether an invoice's export ends in `failedOperation`: always (`fail_invoices`) or until
/// its data is ready (`no_data_until`).
fn invoice_fails(cfg: &SandboxConfig, invoice_id: &str, today: Date) -> bool {
    cfg.fail_invoices
        .iter()
        .any(|f| f.eq_ignore_ascii_case(invoice_id))
        || data_not_ready(cfg, invoice_id, today)
}

/// Whether `no_data_until` still holds the invoice's data back on `today`.
fn data_not_ready(cfg: &SandboxConfig, invoice_id: &str, today: Date) -> bool {
    cfg.no_data_until
        .iter()
        .any(|(f, until)| f.eq_ignore_ascii_case(invoice_id) && today < *until)
}

/// An invoice whose data is not ready yet (`no_data_until`) is a version of its own.
fn export_key(cfg: &SandboxConfig, req: &ExportRequest, today: Date) -> String {
    match &req.scope {
        ExportScope::Invoice { invoice_id } if data_not_ready(cfg, invoice_id.as_str(), today) => {
            format!("{}@not-ready", req.key())
        }
        ExportScope::Invoice { .. } => req.key(),
        ExportScope::Period { .. } => format!("{}@{today}", req.key()),
    }
}

/// What one GET of an operation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// `runningOperation` with this status (`notStarted` on the first GET, then `running`).
    Running(&'static str),
    Succeeded,
    Failed,
    /// 410: the operation is no longer known; the client must start the export again.
    Gone,
}

#[derive(Debug)]
pub struct Operation {
    pub id: Uuid,
    pub export_key: String,
    /// `v1.0` or `beta`: navigation links keep the version the export was started with.
    pub version: String,
    pub polls: u32,
    pub created: OffsetDateTime,
    pub last_action: OffsetDateTime,
    /// Answer 410 once more than this many GETs were made.
    pub gone_after: Option<u32>,
}

impl Operation {
    /// Advances by one GET. Pure apart from the counter, so the sequence is easy to test.
    pub fn poll(&mut self, polls_before_done: u32, fails: bool) -> Poll {
        self.polls = self.polls.saturating_add(1);
        if matches!(self.gone_after, Some(g) if self.polls > g) {
            return Poll::Gone;
        }
        if self.polls <= polls_before_done {
            Poll::Running(if self.polls == 1 {
                "notStarted"
            } else {
                "running"
            })
        } else if fails {
            Poll::Failed
        } else {
            Poll::Succeeded
        }
    }

    /// The common fields of every operation type.
    pub fn json(&self, odata_type: &str, status: &str) -> Value {
        json!({
            "@odata.type": format!("#microsoft.graph.partners.billing.{odata_type}"),
            "id": self.id.to_string(),
            "status": status,
            // Graph's example has no offset here, while lastActionDateTime has 7 digits and Z.
            "createdDateTime": format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                self.created.year(), u8::from(self.created.month()), self.created.day(),
                self.created.hour(), self.created.minute(), self.created.second()
            ),
            "lastActionDateTime": ticks_utc(self.last_action),
        })
    }
}

/// `2023-03-09T08:37:48.5046691Z`: .NET ticks precision (100 ns).
fn ticks_utc(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100
    )
}

/// `2023-03-09T06:34:34.87Z`: the manifest's style (centiseconds).
fn centis_utc(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 10_000_000
    )
}

#[derive(Debug)]
pub struct Export {
    pub facts: ExportFacts,
    pub manifest_id: Uuid,
    pub etag: String,
    /// Path of the export's folder below the blob endpoint: `/{container}/v1/...`.
    pub dir: String,
    pub created: OffsetDateTime,
    pub blob_names: Vec<String>,
    /// Partitions are generated on first need and kept.
    pub cache: Vec<Option<Partition>>,
    pub fails: bool,
    pub inline_manifest: bool,
    pub operations_started: u32,
    /// Whether some operation of this export has answered success (its data is "served").
    pub succeeded: bool,
    /// With an external blob store: set once every partition is uploaded there.
    pub uploaded: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub upload_started: bool,
}

/// The storage container Microsoft's export of `kind` lands in.
fn container_of(kind: ExportKind) -> &'static str {
    match (kind.is_usage(), kind.is_billed()) {
        (true, true) => "billedusagefastpath",
        (true, false) => "unbilledusagefastpath",
        (false, true) => "billedreconfastpath",
        (false, false) => "unbilledreconfastpath",
    }
}

impl Export {
    fn new(
        cfg: &SandboxConfig,
        today: Date,
        req: ExportRequest,
        key: &str,
        now: OffsetDateTime,
    ) -> Self {
        let key = key.to_string();
        let seed = cfg.seed;
        let partner = cfg
            .partners
            .iter()
            .find(|p| !req.partner.is_default() && p.id == req.partner.as_str());
        let tenant = cfg
            .manifest_tenant
            .unwrap_or_else(|| partner.map_or_else(partner_tenant_id, |p| p.tenant_id));
        let invoices = partner.map_or(&cfg.invoices, |p| &p.invoices);
        let mut ids = Rng::derived(seed, &format!("export#{key}"));
        let manifest_id = ids.uuid();
        let etag = base62(&mut ids, 17);
        let spark_job = ids.uuid();
        let this_month = today.replace_day(1).expect("day 1");
        let fragment = req.attribute_set.as_str();
        let container = container_of(req.kind);
        let (dir, invoice_number, currency, month, fails) = match &req.scope {
            ExportScope::Invoice { invoice_id } => {
                let known = invoices
                    .iter()
                    .find(|i| i.id.eq_ignore_ascii_case(invoice_id.as_str()));
                // Unknown invoices are taken as last month's, issued this month.
                let (month, version, ccy) = match known {
                    Some(i) => (
                        i.billing_period_start.replace_day(1).expect("day 1"),
                        i.invoice_date,
                        i.currency_code.clone(),
                    ),
                    None => (add_months(this_month, -1), this_month, "USD".to_string()),
                };
                let dir = format!(
                    "/{container}/v1/PartnerTenantId={tenant}/BillingMonth={}/InvoiceId={invoice_id}/InvoiceVersion={}/Fragment={fragment}/PartitionType=default",
                    yyyymm(month),
                    yyyymm(version)
                );
                let fails = invoice_fails(cfg, invoice_id.as_str(), today);
                (dir, invoice_id.to_string(), ccy, month, fails)
            }
            ExportScope::Period { period, currency } => {
                let month = match period {
                    BillingPeriod::Current => this_month,
                    BillingPeriod::Last => add_months(this_month, -1),
                };
                // Real unbilled folders start with the snapshot time (yyyyMMddHHmm).
                let snapshot = format!(
                    "{}{:02}{:02}{:02}",
                    yyyymm(today),
                    today.day(),
                    ids.below(24),
                    ids.below(60)
                );
                let dir = format!(
                    "/{container}/v1/{snapshot}/PartnerTenantId={tenant}/BillingMonth={}/Currency={currency}/Fragment={fragment}/PartitionType=default",
                    yyyymm(month)
                );
                let fails = cfg
                    .fail_invoices
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(currency.as_str()));
                (dir, String::new(), currency.to_string(), month, fails)
            }
        };
        let (period_start, period_end) = month_bounds(month);
        let blob_names: Vec<String> = match &cfg.blob_names {
            Some(names) => names.clone(),
            None => (0..cfg.partitions)
                .map(|i| format!("part-{i:05}-{spark_job}.c000.json.gz"))
                .collect(),
        };
        let inline_manifest = match cfg.manifest_shape {
            ManifestShape::Inline => true,
            ManifestShape::Link => false,
            ManifestShape::Alternate => ids.below(2) == 0,
        };
        let azure_usage = Self::azure_usage(cfg, today, &req, now);
        Self {
            facts: ExportFacts {
                reservation_purchase: cfg.reservation_purchases && !req.kind.is_usage(),
                azure_usage,
                kind: req.kind,
                attribute_set: req.attribute_set,
                seed,
                export_key: key,
                partner_tenant_id: tenant,
                partner_name: partner.map_or_else(
                    || "Sandbox CSP Partner".into(),
                    |p| format!("Sandbox CSP Partner {}", p.id),
                ),
                mpn_id: format!("{}", 4_000_000 + seed % 1_000_000),
                invoice_number,
                currency,
                period_start,
                period_end,
            },
            manifest_id,
            etag,
            dir,
            created: now,
            cache: vec![None; blob_names.len()],
            blob_names,
            fails,
            inline_manifest,
            operations_started: 0,
            succeeded: false,
            uploaded: Default::default(),
            upload_started: false,
        }
    }

    /// A reconciliation export ends with the Azure lines of the same scope's usage: that
    /// usage export, as a source of lines.
    fn azure_usage(
        cfg: &SandboxConfig,
        today: Date,
        req: &ExportRequest,
        now: OffsetDateTime,
    ) -> Option<Box<UsageSource>> {
        if req.kind.is_usage() {
            return None;
        }
        let usage_req = ExportRequest {
            kind: if req.kind.is_billed() {
                ExportKind::BilledUsage
            } else {
                ExportKind::UnbilledUsage
            },
            attribute_set: AttributeSet::Full,
            ..req.clone()
        };
        let usage_key = export_key(cfg, &usage_req, today);
        let usage = Export::new(cfg, today, usage_req, &usage_key, now);
        let omit_last_line = cfg.unlined_usage_invoices.iter().any(|i| {
            matches!(&req.scope, ExportScope::Invoice { invoice_id } if i.eq_ignore_ascii_case(invoice_id.as_str()))
        });
        Some(Box::new(UsageSource {
            omit_last_line,
            partitions: usage.blob_names.len() as u32,
            rows_per_partition: cfg.rows_per_partition,
            facts: usage.facts,
        }))
    }

    /// The manifest (docs/graph-api.md §3) with `root` (absolute URL of the blob endpoint, no
    /// trailing slash) and a freshly minted `sas`.
    pub fn manifest_json(&self, blob_root: &str, sas: &str) -> Value {
        let blobs: Vec<Value> = self
            .blob_names
            .iter()
            .map(|n| json!({"name": n, "partitionValue": "default"}))
            .collect();
        json!({
            "id": self.manifest_id.to_string(),
            "schemaVersion": "2",
            "dataFormat": "compressedJSON",
            "createdDateTime": centis_utc(self.created),
            "eTag": self.etag,
            "partnerTenantId": self.facts.partner_tenant_id.to_string(),
            "rootDirectory": format!("{blob_root}{}", self.dir),
            "sasToken": sas,
            "partitionType": "default",
            "blobCount": self.blob_names.len(),
            "blobs": blobs,
        })
    }

    /// Partition `i`, generating it if needed. Generation is CPU-only and small, so callers
    /// may hold the state lock; it happens once per partition.
    pub fn partition(&mut self, i: usize, rows: u32) -> Partition {
        if let Some(p) = &self.cache[i] {
            return p.clone();
        }
        let last = i + 1 == self.cache.len();
        let p = data::generate_partition(&self.facts, i as u32, rows, last);
        self.cache[i] = Some(p.clone());
        p
    }
}

/// The single-tenant sandbox partner's tenant: the one its local tokens name.
pub fn partner_tenant_id() -> Uuid {
    Uuid::parse_str(crate::tokens::LOCAL_TENANT_ID).expect("a GUID")
}

fn yyyymm(d: Date) -> String {
    format!("{:04}{:02}", d.year(), u8::from(d.month()))
}

fn base62(rng: &mut Rng, n: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..n).map(|_| char::from(*rng.pick(ALPHABET))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(gone_after: Option<u32>) -> Operation {
        Operation {
            id: Uuid::nil(),
            export_key: String::new(),
            version: "v1.0".into(),
            polls: 0,
            created: OffsetDateTime::UNIX_EPOCH,
            last_action: OffsetDateTime::UNIX_EPOCH,
            gone_after,
        }
    }

    #[test]
    fn runs_then_finishes() {
        let mut o = op(None);
        assert_eq!(o.poll(2, false), Poll::Running("notStarted"));
        assert_eq!(o.poll(2, false), Poll::Running("running"));
        assert_eq!(o.poll(2, false), Poll::Succeeded);
        assert_eq!(o.poll(2, false), Poll::Succeeded);
        let mut f = op(None);
        assert_eq!(f.poll(0, true), Poll::Failed);
    }

    #[test]
    fn gone_after_n_polls() {
        let mut o = op(Some(1));
        assert_eq!(o.poll(3, false), Poll::Running("notStarted"));
        assert_eq!(o.poll(3, false), Poll::Gone);
        assert_eq!(o.poll(3, false), Poll::Gone);
        assert_eq!(op(Some(0)).poll(3, false), Poll::Gone);
    }

    #[test]
    fn timestamps_have_graphs_precision() {
        let t = time::macros::datetime!(2023-03-09 08:37:48.504669123 UTC);
        assert_eq!(ticks_utc(t), "2023-03-09T08:37:48.5046691Z");
        assert_eq!(centis_utc(t), "2023-03-09T08:37:48.50Z");
        let mut o = op(None);
        o.created = t;
        assert_eq!(
            o.json("runningOperation", "running")["createdDateTime"],
            "2023-03-09T08:37:48"
        );
    }
}
