//! What lands in the FinOps hubs ingestion container (`HUBS_INGESTION_CONTAINER`), decided per
//! partner and billing month so that hubs counts each charge once (docs/finops.md, "FinOps
//! hubs").
//!
//! One scope folder per partner and month, `Costs/{yyyy}/{mm}/csp/{partnerTenant}`, holds one
//! dataset: hubs replaces a folder's rows by the files of the newest ingestion id, and nothing
//! else ever removes rows from its tables, so what must disappear (unbilled rows once the
//! month is invoiced, yesterday's unbilled rows) has to be replaced in the same folder.
//!
//! - An invoiced month (at least one invoice landed): per invoice, billed usage whole plus the
//!   reconciliation rows that are not the invoice's Azure lines (licences, marketplace,
//!   reservations...): an Azure line is a reconciliation row whose customer, `ProductId` and
//!   `SkuId` occur in that invoice's billed usage. Without usage, the reconciliation whole.
//! - A month not invoiced yet: per currency still exported, the newest unbilled usage whole
//!   plus the newest unbilled reconciliation without the lines that usage details (the same
//!   rule as an invoice's).
//!
//! The ledger keeps, per partner and month, which runs make up the dataset
//! ([`HubsMonth`]); the ingestion id is a hash of that composition, so landing the same
//! composition again changes nothing and a landing cut short is redone whole by the next
//! attempt.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::run::{RunId, RunRecord};
use crate::billing::ExportScope;

/// An unbilled currency whose newest run is this much older than the month's newest unbilled
/// run no longer lands: the partner stopped exporting it (a day's failed run is covered).
pub const UNBILLED_STALE_AFTER: time::Duration = time::Duration::days(3);

/// One run of the dataset, with when it was created (the newer run of a slot wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubsRun {
    pub run_id: RunId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl HubsRun {
    pub fn of(run: &RunRecord) -> Self {
        Self {
            run_id: run.run_id.clone(),
            created_at: run.created_at,
        }
    }
}

/// The runs of one invoice, or of one currency's unbilled data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubsInvoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<HubsRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<HubsRun>,
}

/// Who is landing a month's folder, until when (a crashed lander's lease runs out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubsLease {
    pub holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// The ledger's document of one partner's month in hubs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubsMonth {
    /// Invoices whose data may land (a mismatched invoice check never registers one).
    #[serde(default)]
    pub invoices: BTreeMap<String, HubsInvoice>,
    /// The newest unbilled runs per currency.
    #[serde(default)]
    pub unbilled: BTreeMap<String, HubsInvoice>,
    /// The ingestion id whose files and manifest are all in the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<HubsLease>,
}

/// Keeps the newer of two runs in a slot; true when it changed.
fn offer(slot: &mut Option<HubsRun>, run: &RunRecord) -> bool {
    let newer = slot
        .as_ref()
        .is_none_or(|s| (run.created_at, &run.run_id) > (s.created_at, &s.run_id));
    if newer {
        *slot = Some(HubsRun::of(run));
    }
    newer
}

/// What a completed run adds to its month.
#[derive(Debug, Clone, Copy)]
pub enum Offer<'a> {
    /// An unbilled run (its currency's usage or reconciliation slot).
    Unbilled(&'a RunRecord),
    /// An invoice's billed runs, either or both.
    Invoice {
        invoice: &'a str,
        usage: Option<&'a RunRecord>,
        reconciliation: Option<&'a RunRecord>,
    },
}

impl HubsMonth {
    /// Registers what `offer` adds; true when the composition changed.
    pub fn register(&mut self, o: Offer<'_>) -> bool {
        match o {
            Offer::Unbilled(run) => {
                let ExportScope::Period { currency, .. } = &run.request.scope else {
                    return false;
                };
                let entry = self.unbilled.entry(currency.to_string()).or_default();
                if run.request.kind.is_usage() {
                    offer(&mut entry.usage, run)
                } else {
                    offer(&mut entry.reconciliation, run)
                }
            }
            Offer::Invoice {
                invoice,
                usage,
                reconciliation,
            } => {
                let entry = self.invoices.entry(invoice.to_string()).or_default();
                let a = usage.is_some_and(|u| offer(&mut entry.usage, u));
                let b = reconciliation.is_some_and(|r| offer(&mut entry.reconciliation, r));
                a || b
            }
        }
    }

    /// Whether the month is invoiced: then only billed data lands.
    pub fn invoiced(&self) -> bool {
        self.invoices
            .values()
            .any(|i| i.usage.is_some() || i.reconciliation.is_some())
    }

    /// The runs whose files make up the folder, in a stable order, each with the name its
    /// files start with; empty when nothing may land.
    pub fn composition(&self) -> Vec<Component> {
        if self.invoiced() {
            return self
                .invoices
                .iter()
                .flat_map(|(invoice, i)| components(invoice, i))
                .collect();
        }
        // A currency the partner no longer exports stops counting once it is
        // [`UNBILLED_STALE_AFTER`] older than the newest unbilled run.
        let newest_of = |i: &HubsInvoice| {
            [&i.usage, &i.reconciliation]
                .into_iter()
                .flatten()
                .map(|r| r.created_at)
                .max()
        };
        let newest = self.unbilled.values().filter_map(newest_of).max();
        self.unbilled
            .iter()
            .filter(|(_, i)| {
                newest
                    .zip(newest_of(i))
                    .is_some_and(|(n, t)| n - t <= UNBILLED_STALE_AFTER)
            })
            .flat_map(|(ccy, i)| components(&format!("unbilled-{ccy}"), i))
            .collect()
    }

    /// The ingestion id of the composition: the same runs always give the same id, and no
    /// id contains `__` (hubs takes the id from the file name, up to `__`).
    pub fn ingestion_id(&self) -> Option<String> {
        let parts = self.composition();
        if parts.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        for c in &parts {
            h.update(c.label.as_bytes());
            h.update(b"=");
            h.update(c.run.run_id.as_str().as_bytes());
            if let Role::ChargesBeside(u) = &c.role {
                h.update(b"-");
                h.update(u.as_str().as_bytes());
            }
            h.update(b";");
        }
        Some(format!("pbe-{}", hex::encode(&h.finalize()[..12])))
    }

    /// Takes the lease for `holder` when it is free, expired or already `holder`'s.
    pub fn take_lease(&mut self, holder: &str, now: OffsetDateTime, hold: time::Duration) -> bool {
        let free = self
            .lease
            .as_ref()
            .is_none_or(|l| l.holder == holder || l.until <= now);
        if free {
            self.lease = Some(HubsLease {
                holder: holder.to_string(),
                until: now + hold,
            });
        }
        free
    }
}

/// An invoice's (or a currency's unbilled) files: usage whole, the reconciliation without the
/// lines the usage details, or whole without usage.
fn components(name: &str, i: &HubsInvoice) -> Vec<Component> {
    let mut out = Vec::new();
    if let Some(u) = &i.usage {
        out.push(Component {
            label: format!("{name}-usage"),
            run: u.clone(),
            role: Role::Usage,
        });
    }
    if let Some(r) = &i.reconciliation {
        out.push(Component {
            label: format!("{name}-charges"),
            run: r.clone(),
            role: match &i.usage {
                Some(u) => Role::ChargesBeside(u.run_id.clone()),
                None => Role::Whole,
            },
        });
    }
    out
}

/// How a run's FOCUS files go into the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Every row.
    Whole,
    /// Usage: every row, and its products are what the reconciliation leaves out.
    Usage,
    /// A reconciliation without the Azure lines the usage run beside it details.
    ChargesBeside(RunId),
}

/// One run of a month's dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// File names start with `{ingestionId}__{label}-`.
    pub label: String,
    pub run: HubsRun,
    pub role: Role,
}

/// A reconciliation row's Azure line: (customer, `ProductId`, `SkuId`).
pub type LineKey = (String, String, String);

#[derive(Deserialize)]
struct RowKey {
    #[serde(rename = "CustomerId", default)]
    customer: Option<String>,
    #[serde(rename = "ProductId", default)]
    product: Option<String>,
    #[serde(rename = "SkuId", default)]
    sku: Option<String>,
}

/// Splits the gzip JSON Lines partition `src`: the rows whose (customer, product, SKU) is in
/// `leave_out` go to `left`, the others to `kept`; returns (rows kept, rows left out). Lines
/// are copied byte for byte, so the converter sees Microsoft's values exactly.
pub fn filter_partition(
    src: &Path,
    kept: &Path,
    left: &Path,
    leave_out: &BTreeSet<LineKey>,
) -> Result<(u64, u64), String> {
    let io = |e: std::io::Error| format!("filtering a reconciliation partition: {e}");
    let input = std::fs::File::open(src).map_err(io)?;
    let mut reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
        std::io::BufReader::new(input),
    ));
    let gz = |p: &Path| -> Result<_, String> {
        let out = std::io::BufWriter::new(std::fs::File::create(p).map_err(io)?);
        Ok(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::fast(),
        ))
    };
    let mut outs = [gz(kept)?, gz(left)?];
    let mut counts = [0u64, 0u64];
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            break;
        }
        let body = line.trim_ascii();
        if body.is_empty() {
            continue;
        }
        let k: RowKey = serde_json::from_slice(body)
            .map_err(|e| format!("reconciliation row {}: {e}", counts[0] + counts[1] + 1))?;
        let key = (
            k.customer.unwrap_or_default(),
            k.product.unwrap_or_default(),
            k.sku.unwrap_or_default(),
        );
        let side = usize::from(leave_out.contains(&key));
        outs[side].write_all(body).map_err(io)?;
        outs[side].write_all(b"\n").map_err(io)?;
        counts[side] += 1;
    }
    for out in outs {
        out.finish().map_err(io)?.flush().map_err(io)?;
    }
    Ok((counts[0], counts[1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::{AttributeSet, ExportKind, ExportRequest};
    use crate::pipeline::run::Trigger;
    use time::macros::datetime;

    fn run(req: ExportRequest, at: OffsetDateTime) -> RunRecord {
        RunRecord::new(RunId::generate(at), req, Trigger::Timer, at, at)
    }

    fn unbilled(at: OffsetDateTime) -> RunRecord {
        let req = ExportRequest::unbilled(
            ExportKind::UnbilledUsage,
            crate::billing::BillingPeriod::Current,
            "EUR".parse().unwrap(),
            AttributeSet::Full,
        )
        .unwrap();
        run(req, at)
    }

    fn billed(kind: ExportKind, at: OffsetDateTime) -> RunRecord {
        let req =
            ExportRequest::billed(kind, "G026100001".parse().unwrap(), AttributeSet::Full).unwrap();
        run(req, at)
    }

    #[test]
    fn the_newest_unbilled_run_lands_until_the_month_is_invoiced() {
        let mut m = HubsMonth::default();
        let day1 = unbilled(datetime!(2026-11-02 06:30 UTC));
        let day2 = unbilled(datetime!(2026-11-03 06:30 UTC));
        assert!(m.register(Offer::Unbilled(&day2)));
        assert!(
            !m.register(Offer::Unbilled(&day1)),
            "an older run never wins"
        );
        let id = m.ingestion_id().unwrap();
        assert!(!id.contains("__"));
        assert_eq!(m.composition().len(), 1);
        assert_eq!(m.composition()[0].run.run_id, day2.run_id);

        let recon = billed(
            ExportKind::BilledReconciliation,
            datetime!(2026-12-08 06:30 UTC),
        );
        let usage = billed(ExportKind::BilledUsage, datetime!(2026-12-08 06:31 UTC));
        m.register(Offer::Invoice {
            invoice: "G026100001",
            usage: None,
            reconciliation: Some(&recon),
        });
        let c = m.composition();
        assert_eq!((c.len(), &c[0].role), (1, &Role::Whole), "{c:?}");
        m.register(Offer::Invoice {
            invoice: "G026100001",
            usage: Some(&usage),
            reconciliation: Some(&recon),
        });
        let c = m.composition();
        assert_eq!(c.len(), 2, "unbilled left out: {c:?}");
        assert_eq!(c[0].role, Role::Usage);
        assert_eq!(c[1].role, Role::ChargesBeside(usage.run_id.clone()));
        assert_ne!(m.ingestion_id().unwrap(), id);
        let again = m.ingestion_id();
        assert!(m.register(Offer::Unbilled(&unbilled(datetime!(2026-12-09 06:30 UTC)))));
        assert_eq!(
            m.ingestion_id(),
            again,
            "unbilled data never lands in an invoiced month"
        );
    }

    #[test]
    fn a_lease_is_held_until_it_runs_out() {
        let mut m = HubsMonth::default();
        let t = datetime!(2026-11-02 06:30 UTC);
        let hold = time::Duration::minutes(10);
        assert!(m.take_lease("a", t, hold));
        assert!(!m.take_lease("b", t, hold));
        assert!(m.take_lease("a", t, hold));
        assert!(m.take_lease("b", t + hold, hold));
    }

    #[test]
    fn filtering_splits_off_the_azure_lines_and_keeps_the_rest_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst, left) = (
            dir.path().join("in.gz"),
            dir.path().join("out.gz"),
            dir.path().join("left.gz"),
        );
        let rows = [
            r#"{"CustomerId":"c1","ProductId":"P1","SkuId":"0001","Subtotal":1.5}"#,
            r#"{"CustomerId":"c1","ProductId":"P2","SkuId":"0001","Subtotal":3.5999999999999998E-06}"#,
            r#"{"CustomerId":"c2","ProductId":"P1","SkuId":"0001","Subtotal":2}"#,
        ];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rows.join("\n").as_bytes()).unwrap();
        std::fs::write(&src, gz.finish().unwrap()).unwrap();
        let leave: BTreeSet<LineKey> = [("c1".into(), "P1".into(), "0001".into())].into();
        assert_eq!(filter_partition(&src, &dst, &left, &leave).unwrap(), (2, 1));
        let read = |p: &Path| {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap()),
                &mut text,
            )
            .unwrap();
            text
        };
        assert_eq!(read(&dst), format!("{}\n{}\n", rows[1], rows[2]));
        assert_eq!(read(&left), format!("{}\n", rows[0]));
    }
}
