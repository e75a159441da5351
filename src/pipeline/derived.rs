//! Formats derived from a copied partition (setting `OUTPUT_FORMATS`): typed Parquet and the
//! FOCUS view (crate `billing-columnar`), written beside Microsoft's file, plus what the
//! conversion learnt on the way (rows, unknown columns, amounts per customer and currency)
//! for the invoice check. Microsoft's gzip file stays the record; these are views of it.

use std::collections::BTreeMap;

use billing_columnar as columnar;
use serde::{Deserialize, Serialize};

use super::run::PartRecord;
use crate::billing::{AttributeSet, ExportKind};
use crate::pipeline::ports::storage::{ObjectPath, StorageError};

/// Sub-folders of a version folder holding the derived files, one per partition.
pub const TYPED_FOLDER: &str = "parquet";
pub const FOCUS_FOLDER: &str = "focus";
pub const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";

/// What is written besides Microsoft's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputFormats {
    /// Typed Parquet and the FOCUS view of every partition.
    pub parquet: bool,
}

impl OutputFormats {
    /// Parses `jsonl.gz,parquet`; `jsonl.gz` (the record) cannot be left out.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Self::default();
        let mut archive = false;
        for f in s
            .split([',', ';', ' '])
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            match f.to_ascii_lowercase().as_str() {
                "jsonl.gz" => archive = true,
                "parquet" => out.parquet = true,
                other => {
                    return Err(format!(
                        "unknown format {other:?}; known: jsonl.gz (always), parquet"
                    ))
                }
            }
        }
        if !archive {
            return Err("jsonl.gz must be listed: Microsoft's files are the record".into());
        }
        Ok(out)
    }
}

pub use crate::contracts::amount::Amount;

/// A product as usage and reconciliation rows both name it (`ProductId`, `SkuId`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub product_id: String,
    pub sku_id: String,
}

/// One customer's invoice-relevant amounts in one currency, per product for billed exports
/// (reconciliation: `Total`, `Subtotal` and Σ `PCToBCExchangeRate`; usage:
/// `BillingPreTaxTotal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerAmount {
    pub customer: String,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<Product>,
    pub rows: u64,
    pub amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtotal: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_sum: Option<Amount>,
}

/// What converting one partition produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Converted {
    pub rows: u64,
    pub typed_bytes: u64,
    pub focus_bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amounts: Vec<CustomerAmount>,
    /// Values the Parquet decimal type could not hold exactly, rounded half to even.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rounded_values: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Per-product totals kept in one part's ledger record at most; past this (a partition of
/// very many customers times products) the part keeps one total per customer and the usage
/// comparison says it could not be made rather than bloat the ledger.
pub const MAX_PRODUCT_TOTALS: usize = 20_000;

/// The amount column the invoice check sums, per dataset.
pub fn invoice_column(kind: ExportKind) -> &'static str {
    if kind.is_usage() {
        "BillingPreTaxTotal"
    } else {
        "Total"
    }
}

impl Converted {
    pub fn from_report(kind: ExportKind, r: &columnar::ConvertReport) -> Self {
        let column = invoice_column(kind);
        let sum = |t: &columnar::CustomerTotal, name: &str| {
            t.amounts
                .iter()
                .find(|s| s.column == name)
                .map(|s| Amount::from_decimal(s.sum))
        };
        let reconciliation = !kind.is_usage();
        let mut amounts: Vec<CustomerAmount> = r
            .customer_totals
            .iter()
            .map(|t| CustomerAmount {
                customer: t.customer.0.clone(),
                currency: t.currency.0.clone(),
                product: t.product.as_ref().map(|p| Product {
                    product_id: p.product_id.clone(),
                    sku_id: p.sku_id.clone(),
                }),
                rows: t.rows,
                amount: sum(t, column).unwrap_or_default(),
                subtotal: sum(t, "Subtotal").filter(|_| reconciliation),
                rate_sum: sum(t, "PCToBCExchangeRate").filter(|_| reconciliation),
            })
            .collect();
        if amounts.len() > MAX_PRODUCT_TOTALS {
            amounts = per_customer(amounts);
        }
        Self {
            rows: r.rows,
            typed_bytes: r.bytes_out_typed,
            focus_bytes: r.bytes_out_focus,
            unknown_columns: r.unknown_columns.iter().map(|u| u.name.clone()).collect(),
            amounts,
            rounded_values: r.rounded_values,
        }
    }
}

/// Folds per-product amounts into one per (customer, currency).
fn per_customer(amounts: Vec<CustomerAmount>) -> Vec<CustomerAmount> {
    let mut out: BTreeMap<(String, String), CustomerAmount> = BTreeMap::new();
    for a in amounts {
        let add = |x: Option<Amount>, y: Option<Amount>| match (x, y) {
            (Some(x), Some(y)) => x.checked_add(y),
            _ => None,
        };
        match out.entry((a.customer.clone(), a.currency.clone())) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(CustomerAmount { product: None, ..a });
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let t = o.get_mut();
                t.rows += a.rows;
                t.amount = t.amount.checked_add(a.amount).unwrap_or(t.amount);
                t.subtotal = add(t.subtotal, a.subtotal);
                t.rate_sum = add(t.rate_sum, a.rate_sum);
            }
        }
    }
    out.into_values().collect()
}

/// Sums per (customer, currency) over parts; `None` on overflow (never with real invoices).
pub fn total_by_customer<'a>(
    parts: impl IntoIterator<Item = &'a Converted>,
) -> Option<BTreeMap<(String, String), Amount>> {
    let mut out: BTreeMap<(String, String), Amount> = BTreeMap::new();
    for c in parts {
        for a in &c.amounts {
            let slot = out
                .entry((a.customer.clone(), a.currency.clone()))
                .or_default();
            *slot = slot.checked_add(a.amount)?;
        }
    }
    Some(out)
}

/// Totals of one (customer, currency, product) over a run's parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineTotals {
    pub rows: u64,
    /// `BillingPreTaxTotal` (usage) or `Subtotal` (reconciliation).
    pub pre_tax: Amount,
    /// Σ `PCToBCExchangeRate` (reconciliation).
    pub rate_sum: Amount,
}

/// Pre-tax totals per (customer, currency, product) over parts; `None` when a part kept no
/// per-product totals (see [`MAX_PRODUCT_TOTALS`]) or a sum overflows.
pub fn total_by_product<'a>(
    parts: impl IntoIterator<Item = &'a Converted>,
) -> Option<BTreeMap<(String, String, Product), LineTotals>> {
    let mut out: BTreeMap<(String, String, Product), LineTotals> = BTreeMap::new();
    for c in parts {
        for a in &c.amounts {
            let product = a.product.clone()?;
            let slot = out
                .entry((a.customer.clone(), a.currency.clone(), product))
                .or_default();
            slot.rows += a.rows;
            slot.pre_tax = slot.pre_tax.checked_add(a.subtotal.unwrap_or(a.amount))?;
            slot.rate_sum = slot.rate_sum.checked_add(a.rate_sum.unwrap_or_default())?;
        }
    }
    Some(out)
}

/// The documented columns of an export of `kind` with `set` (docs/schema.md).
pub fn schema(kind: ExportKind, set: AttributeSet) -> columnar::Schema {
    let dataset = if kind.is_usage() {
        columnar::Dataset::Usage
    } else {
        columnar::Dataset::Reconciliation
    };
    let set = match set {
        AttributeSet::Full => columnar::AttributeSet::Full,
        AttributeSet::Basic => columnar::AttributeSet::Basic,
    };
    columnar::Schema::new(dataset, set)
}

/// The converter's schema and options for a run's partitions.
pub fn schema_for(
    kind: ExportKind,
    set: AttributeSet,
) -> (columnar::Schema, columnar::ConvertOptions) {
    let options = columnar::ConvertOptions {
        billing_status: if kind.is_billed() {
            columnar::BillingStatus::Billed
        } else {
            columnar::BillingStatus::Unbilled
        },
        // Usage is matched with the reconciliation's Azure lines product by product: by the
        // invoice check (billed) and by the FinOps hubs landing (both).
        totals_by_product: true,
        // Both views are written in one pass; the converter's defaults (640 KiB batches, 64k-row
        // row groups) keep the peak under 64 MiB (measured with its bench).
        ..Default::default()
    };
    (schema(kind, set), options)
}

/// Where a part's typed Parquet and FOCUS files go: `{version}/parquet/{stem}.parquet` and
/// `{version}/focus/{stem}.parquet`, `stem` being the copied file's name without `.json.gz`.
pub fn derived_paths(
    folder: &ObjectPath,
    part: &PartRecord,
) -> Result<(ObjectPath, ObjectPath), StorageError> {
    let name = part.dest.file_name();
    let stem = name
        .strip_suffix(".json.gz")
        .or_else(|| name.strip_suffix(".gz"))
        .unwrap_or(name);
    Ok((
        folder.join(&format!("{TYPED_FOLDER}/{stem}.parquet"))?,
        folder.join(&format!("{FOCUS_FOLDER}/{stem}.parquet"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_keep_the_record() {
        assert_eq!(
            OutputFormats::parse("jsonl.gz,parquet").unwrap(),
            OutputFormats { parquet: true }
        );
        assert_eq!(
            OutputFormats::parse("jsonl.gz").unwrap(),
            OutputFormats::default()
        );
        assert!(OutputFormats::parse("parquet")
            .unwrap_err()
            .contains("record"));
        assert!(OutputFormats::parse("jsonl.gz,csv")
            .unwrap_err()
            .contains("csv"));
    }

    #[test]
    fn amounts_parse_exactly() {
        let a: Amount = "12840.55".parse().unwrap();
        let b: Amount = "-120".parse().unwrap();
        assert_eq!(a.to_string().trim_end_matches('0'), "12840.55");
        assert_eq!(
            a.checked_add(b).unwrap(),
            "12720.55".parse::<Amount>().unwrap()
        );
        assert_eq!("1.5e2".parse::<Amount>().unwrap(), "150".parse().unwrap());
        assert!("12,5".parse::<Amount>().is_err());
        assert!("".parse::<Amount>().is_err());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Amount>(&json).unwrap(), a);
    }
}
