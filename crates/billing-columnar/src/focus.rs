//! The FOCUS view: one table maps every FOCUS column to a Partner Center expression, per
//! dataset. docs/focus.md is generated from [`FOCUS_COLUMNS`] ([`crate::focus_markdown`]).

use std::fmt;

use crate::columns::{ColBuf, Values};
use crate::schema::{BillingStatus, ColumnType, Schema};
use crate::value::{civil_from_days, days_from_civil, Decimal, MICROS_PER_DAY};

/// The FOCUS specification version the view follows (also in the Parquet metadata).
pub const FOCUS_VERSION: &str = "1.2";

/// `x_SourceName` of every row: FinOps hubs keeps this column and its reports use it to tell
/// data sources apart.
pub const SOURCE_NAME: &str = "Microsoft Partner Center";

/// `x_SourceType` of a dataset's rows: `BilledUsage`, `BilledReconciliation`,
/// `UnbilledUsage` or `UnbilledReconciliation`, so that the kinds, which overlap (an invoice's
/// Azure lines are in both usage and reconciliation), stay apart in hubs.
pub fn source_type(dataset: crate::Dataset, status: BillingStatus) -> &'static str {
    use crate::Dataset::{Reconciliation, Usage};
    match (status, dataset) {
        (BillingStatus::Billed, Usage) => "BilledUsage",
        (BillingStatus::Billed, Reconciliation) => "BilledReconciliation",
        (BillingStatus::Unbilled, Usage) => "UnbilledUsage",
        (BillingStatus::Unbilled, Reconciliation) => "UnbilledReconciliation",
    }
}

/// How a FOCUS column is computed from one Partner Center row.
#[derive(Clone, Copy)]
pub(crate) enum Expr {
    /// The column's value (null when the column is absent, e.g. in `basic`); empty strings
    /// become null, as FOCUS wants nulls rather than empty strings.
    Col(&'static str),
    /// The first of these string columns that is present and not empty.
    Coalesce(&'static [&'static str]),
    Const(&'static str),
    /// `billed` or `unbilled`, from the convert options.
    Status,
    /// The kind of export ([`source_type`]): billing status and dataset.
    SourceType,
    /// Midnight (UTC) starting the day of a date or timestamp column.
    DayStart(&'static str),
    /// Midnight (UTC) after the day of a date or timestamp column (FOCUS ends are exclusive).
    NextDay(&'static str),
    /// Midnight of the first day of the month of a date or timestamp column.
    MonthStart(&'static str),
    /// Midnight of the first day of the following month.
    NextMonthStart(&'static str),
    /// Product of decimal columns, rounded half away from zero to the decimal scale.
    Mul(&'static [&'static str]),
    /// A value mapping of a string column (`None` when absent): name for docs, function.
    Map(
        &'static str,
        &'static str,
        fn(Option<&[u8]>) -> Option<&'static str>,
    ),
    Null,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |cols: &[&str], sep: &str| {
            cols.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(sep)
        };
        match self {
            Expr::Col(c) => write!(f, "`{c}`"),
            Expr::Coalesce(cs) => write!(f, "first non-empty of {}", list(cs, ", ")),
            Expr::Const(v) => write!(f, "\"{v}\""),
            Expr::Status => f.write_str("\"billed\" / \"unbilled\" (export kind)"),
            Expr::SourceType => f.write_str("source_type(export kind, dataset)"),
            Expr::DayStart(c) => write!(f, "day of `{c}`, 00:00Z"),
            Expr::NextDay(c) => write!(f, "day after `{c}`, 00:00Z"),
            Expr::MonthStart(c) => write!(f, "first of the month of `{c}`"),
            Expr::NextMonthStart(c) => write!(f, "first of the month after `{c}`"),
            Expr::Mul(cs) => f.write_str(&list(cs, " × ")),
            Expr::Map(c, name, _) => write!(f, "{name}(`{c}`)"),
            Expr::Null => f.write_str("null"),
        }
    }
}

/// One FOCUS column: its type and how each dataset fills it.
pub(crate) struct FocusColumn {
    pub name: &'static str,
    pub ty: ColumnType,
    pub usage: Expr,
    pub reconciliation: Expr,
    pub note: &'static str,
}

const fn f(
    name: &'static str,
    ty: ColumnType,
    usage: Expr,
    reconciliation: Expr,
    note: &'static str,
) -> FocusColumn {
    FocusColumn {
        name,
        ty,
        usage,
        reconciliation,
        note,
    }
}

fn correction(charge_type: Option<&[u8]>) -> Option<&'static str> {
    let t = charge_type?.to_ascii_lowercase();
    let corrects = [&b"refund"[..], b"cancel", b"remove"]
        .iter()
        .any(|w| t.windows(w.len()).any(|x| x == *w));
    corrects.then_some("Correction")
}

fn recon_frequency(freq: Option<&[u8]>) -> Option<&'static str> {
    match freq.map(<[u8]>::to_ascii_lowercase).as_deref() {
        Some(b"onetime" | b"one-time" | b"one time") => Some("One-Time"),
        _ => Some("Recurring"),
    }
}

fn service_category(meter_category: Option<&[u8]>) -> Option<&'static str> {
    Some(match meter_category.unwrap_or_default() {
        b"Virtual Machines" | b"Container Instances" | b"Functions" | b"App Service" => "Compute",
        b"Storage" => "Storage",
        b"Bandwidth" | b"Virtual Network" | b"Load Balancer" | b"VPN Gateway" => "Networking",
        b"SQL Database" | b"Azure Cosmos DB" | b"Redis Cache" => "Databases",
        b"Azure Monitor" | b"Log Analytics" => "Management and Governance",
        _ => "Other",
    })
}

use ColumnType::{Decimal as N, Integer as I, String as S, Timestamp as T};
use Expr::{Col, Const};

/// Partner Center to FOCUS 1.2: the single source of the mapping and of docs/focus.md.
pub(crate) const FOCUS_COLUMNS: &[FocusColumn] = &[
    f("BilledCost", N, Col("BillingPreTaxTotal"), Col("Subtotal"), "pre-tax, billing currency; tax is x_BilledTax"),
    f("BillingAccountId", S, Col("PartnerId"), Col("PartnerId"), "the CSP partner's tenant"),
    f("BillingAccountName", S, Col("PartnerName"), Col("PartnerName"), "not in reconciliation files: null there"),
    f("BillingAccountType", S, Const("CSP Partner"), Const("CSP Partner"), ""),
    f("BillingCurrency", S, Col("BillingCurrency"), Col("Currency"), ""),
    f("BillingPeriodEnd", T, Expr::NextDay("ChargeEndDate"), Expr::NextMonthStart("ChargeStartDate"), "exclusive end"),
    f("BillingPeriodStart", T, Expr::DayStart("ChargeStartDate"), Expr::MonthStart("ChargeStartDate"), "usage: the billing cycle; reconciliation: month of the charge start"),
    f("ChargeCategory", S, Const("Usage"), Const("Purchase"), "reconciliation lines are licence/seat purchases and their changes"),
    f("ChargeClass", S, Expr::Map("ChargeType", "correction", correction), Expr::Map("ChargeType", "correction", correction), "\"Correction\" when ChargeType names a refund, cancellation or removal"),
    f("ChargeDescription", S, Col("SkuName"), Col("SkuName"), ""),
    f("ChargeFrequency", S, Const("Usage-Based"), Expr::Map("BillingFrequency", "frequency", recon_frequency), "OneTime → One-Time, otherwise Recurring"),
    f("ChargePeriodEnd", T, Expr::NextDay("UsageDate"), Expr::NextDay("ChargeEndDate"), "exclusive end"),
    f("ChargePeriodStart", T, Expr::DayStart("UsageDate"), Expr::DayStart("ChargeStartDate"), ""),
    f("CommitmentDiscountId", S, Col("BenefitOrderID"), Col("ReservationOrderId"), ""),
    f("CommitmentDiscountType", S, Col("BenefitType"), Expr::Null, ""),
    f("ConsumedQuantity", N, Col("Quantity"), Expr::Null, "purchases have no consumed quantity"),
    f("ConsumedUnit", S, Col("Unit"), Expr::Null, ""),
    f("ContractedCost", N, Expr::Mul(&["EffectiveUnitPrice", "Quantity", "PCToBCExchangeRate"]), Expr::Mul(&["EffectiveUnitPrice", "BillableQuantity", "PCToBCExchangeRate"]), "unit prices are in the pricing currency; Microsoft's own rounding (ROUNDDOWN to cents) is not replayed"),
    f("ContractedUnitPrice", N, Expr::Mul(&["EffectiveUnitPrice", "PCToBCExchangeRate"]), Expr::Mul(&["EffectiveUnitPrice", "PCToBCExchangeRate"]), "in the billing currency"),
    f("EffectiveCost", N, Col("BillingPreTaxTotal"), Col("Subtotal"), "no amortisation data in these exports: equals BilledCost"),
    f("InvoiceId", S, Col("InvoiceNumber"), Col("InvoiceNumber"), "null (empty) in unbilled exports"),
    f("InvoiceIssuerName", S, Const("Microsoft"), Const("Microsoft"), "Microsoft invoices the CSP partner"),
    f("ListCost", N, Expr::Mul(&["UnitPrice", "Quantity", "PCToBCExchangeRate"]), Expr::Mul(&["UnitPrice", "BillableQuantity", "PCToBCExchangeRate"]), "list price converted to the billing currency"),
    f("ListUnitPrice", N, Expr::Mul(&["UnitPrice", "PCToBCExchangeRate"]), Expr::Mul(&["UnitPrice", "PCToBCExchangeRate"]), "in the billing currency"),
    f("PricingCategory", S, Const("Standard"), Const("Standard"), "the exports carry no spot/commitment pricing distinction"),
    f("PricingCurrency", S, Col("PricingCurrency"), Col("PricingCurrency"), ""),
    f("PricingCurrencyEffectiveCost", N, Col("PricingPreTaxTotal"), Expr::Mul(&["EffectiveUnitPrice", "BillableQuantity"]), ""),
    f("PricingQuantity", N, Col("Quantity"), Col("BillableQuantity"), ""),
    f("PricingUnit", S, Col("UnitType"), Col("UnitType"), "Microsoft's unit text, not normalised"),
    f("ProviderName", S, Const("Microsoft"), Const("Microsoft"), ""),
    f("PublisherName", S, Col("PublisherName"), Col("PublisherName"), ""),
    f("RegionId", S, Col("ResourceLocation"), Expr::Null, ""),
    f("RegionName", S, Col("MeterRegion"), Expr::Null, ""),
    f("ResourceId", S, Col("ResourceURI"), Expr::Null, ""),
    f("ServiceCategory", S, Expr::Map("MeterCategory", "category", service_category), Const("Other"), "small lookup of meter categories; Other otherwise"),
    f("ServiceName", S, Expr::Coalesce(&["MeterCategory", "ProductName", "SkuName"]), Col("ProductName"), ""),
    f("SkuId", S, Col("SkuId"), Col("SkuId"), ""),
    f("SkuPriceId", S, Col("AvailabilityId"), Col("AvailabilityId"), ""),
    f("SubAccountId", S, Col("CustomerId"), Col("CustomerId"), "the CSP customer's tenant"),
    f("SubAccountName", S, Col("CustomerName"), Col("CustomerName"), ""),
    f("SubAccountType", S, Const("Customer"), Const("Customer"), ""),
    f("Tags", S, Col("Tags"), Expr::Null, "Microsoft's text as is"),
    f("x_BillingStatus", S, Expr::Status, Expr::Status, "unbilled rows may still change"),
    f("x_BilledTax", N, Expr::Null, Col("TaxTotal"), ""),
    f("x_BilledTotal", N, Expr::Null, Col("Total"), "the invoice amount: BilledCost + x_BilledTax"),
    f("x_ChargeType", S, Col("ChargeType"), Col("ChargeType"), ""),
    f("x_CreditPercentage", I, Col("CreditPercentage"), Expr::Null, ""),
    f("x_CreditReasonCode", S, Expr::Null, Col("CreditReasonCode"), ""),
    f("x_CreditType", S, Col("CreditType"), Expr::Null, ""),
    f("x_CustomerCountry", S, Col("CustomerCountry"), Col("CustomerCountry"), ""),
    f("x_CustomerDomainName", S, Col("CustomerDomainName"), Col("CustomerDomainName"), ""),
    f("x_EntitlementId", S, Col("EntitlementId"), Expr::Null, "the Azure plan entitlement"),
    f("x_MeterId", S, Col("MeterId"), Expr::Null, ""),
    f("x_MpnId", S, Col("MpnId"), Col("MpnId"), ""),
    f("x_OrderId", S, Expr::Null, Col("OrderId"), ""),
    f("x_PartnerEarnedCreditPercentage", I, Col("PartnerEarnedCreditPercentage"), Expr::Null, ""),
    f("x_PCToBCExchangeRate", N, Col("PCToBCExchangeRate"), Col("PCToBCExchangeRate"), "pricing to billing currency"),
    f("x_ProductId", S, Col("ProductId"), Col("ProductId"), ""),
    f("x_PromotionId", S, Expr::Null, Col("PromotionId"), ""),
    f("x_ReferenceId", S, Expr::Null, Col("ReferenceId"), ""),
    f("x_SourceName", S, Const(SOURCE_NAME), Const(SOURCE_NAME), "a column FinOps hubs keeps"),
    f("x_SourceType", S, Expr::SourceType, Expr::SourceType, "BilledUsage, BilledReconciliation, UnbilledUsage or UnbilledReconciliation; kept by FinOps hubs"),
    f("x_SubscriptionId", S, Col("SubscriptionId"), Col("SubscriptionId"), ""),
    f("x_Tier2MpnId", S, Col("Tier2MpnId"), Col("Tier2MpnId"), "indirect reseller"),
];

impl FocusColumn {
    pub fn expr(&self, schema: &Schema) -> Expr {
        match schema.dataset() {
            crate::Dataset::Usage => self.usage,
            crate::Dataset::Reconciliation => self.reconciliation,
        }
    }
}

/// Values of a typed column row by row (nulls included).
fn rows_of(col: &ColBuf) -> impl Iterator<Item = Option<usize>> + '_ {
    let mut k = 0;
    col.defs.iter().map(move |&d| {
        (d == 1).then(|| {
            k += 1;
            k - 1
        })
    })
}

/// Micros since the epoch of a date or timestamp value.
fn instant(col: &ColBuf, i: usize) -> i64 {
    match &col.values {
        Values::Date(v) => i64::from(v[i]) * MICROS_PER_DAY,
        Values::Ts(v) => v[i],
        _ => 0,
    }
}

fn month_start(days: i64, months_after: i64) -> i64 {
    let (y, m, _) = civil_from_days(days);
    let total = y * 12 + i64::from(m) - 1 + months_after;
    days_from_civil(total.div_euclid(12), (total.rem_euclid(12) + 1) as u32, 1)
}

/// Computes the FOCUS columns of one row group from its typed columns (in schema order).
pub(crate) fn derive(
    schema: &Schema,
    typed: &[ColBuf],
    rows: usize,
    status: BillingStatus,
    out: &mut Vec<ColBuf>,
) -> Result<(), crate::Error> {
    // The buffers are reused from one row group to the next (no allocation per group).
    if out.len() != FOCUS_COLUMNS.len() {
        *out = FOCUS_COLUMNS.iter().map(|fc| ColBuf::new(fc.ty)).collect();
    }
    let col = |name: &str| schema.index_of(name).map(|i| &typed[i]);
    for (fc, b) in FOCUS_COLUMNS.iter().zip(out.iter_mut()) {
        b.clear();
        let push_str = |b: &mut ColBuf, s: Option<&[u8]>| match s {
            Some(s) if !s.is_empty() => b.push_str(s),
            _ => b.push_null(),
        };
        match fc.expr(schema) {
            Expr::Null => (0..rows).for_each(|_| b.push_null()),
            Expr::Const(v) => (0..rows).for_each(|_| b.push_str(v.as_bytes())),
            Expr::Status => (0..rows).for_each(|_| b.push_str(status.as_str().as_bytes())),
            Expr::SourceType => {
                let v = source_type(schema.dataset(), status);
                (0..rows).for_each(|_| b.push_str(v.as_bytes()));
            }
            Expr::Col(name) => match col(name) {
                None => (0..rows).for_each(|_| b.push_null()),
                Some(src) if fc.ty == ColumnType::String => {
                    for v in rows_of(src) {
                        push_str(b, v.map(|i| src.str_at(i)));
                    }
                }
                Some(src) => {
                    // Same type: the typed buffer is the FOCUS buffer.
                    b.copy_from(src);
                }
            },
            Expr::Coalesce(names) => {
                let srcs: Vec<&ColBuf> = names.iter().filter_map(|n| col(n)).collect();
                let mut iters: Vec<_> = srcs.iter().map(|c| rows_of(c)).collect();
                for _ in 0..rows {
                    let mut chosen: Option<&[u8]> = None;
                    for (c, it) in srcs.iter().zip(iters.iter_mut()) {
                        let v = it.next().flatten().map(|i| c.str_at(i));
                        if chosen.is_none() && v.is_some_and(|s| !s.is_empty()) {
                            chosen = v;
                        }
                    }
                    push_str(b, chosen);
                }
            }
            Expr::Map(name, _, func) => match col(name) {
                None => (0..rows).for_each(|_| push_str(b, func(None).map(str::as_bytes))),
                Some(src) => {
                    for v in rows_of(src) {
                        let s = v.map(|i| src.str_at(i));
                        push_str(b, func(s).map(str::as_bytes));
                    }
                }
            },
            e @ (Expr::DayStart(name)
            | Expr::NextDay(name)
            | Expr::MonthStart(name)
            | Expr::NextMonthStart(name)) => {
                let Values::Ts(vals) = &mut b.values else {
                    return Err(crate::Error::Internal(
                        "FOCUS period column is not a timestamp",
                    ));
                };
                match col(name) {
                    None => (0..rows).for_each(|_| b.defs.push(0)),
                    Some(src) => {
                        for v in rows_of(src) {
                            let Some(i) = v else {
                                b.defs.push(0);
                                continue;
                            };
                            let day = instant(src, i).div_euclid(MICROS_PER_DAY);
                            let day = match e {
                                Expr::DayStart(_) => day,
                                Expr::NextDay(_) => day + 1,
                                Expr::MonthStart(_) => month_start(day, 0),
                                _ => month_start(day, 1),
                            };
                            vals.push(day * MICROS_PER_DAY);
                            b.defs.push(1);
                        }
                    }
                }
            }
            Expr::Mul(names) => {
                let srcs: Option<Vec<&ColBuf>> = names.iter().map(|n| col(n)).collect();
                product(b, srcs.as_deref(), rows)?;
            }
        }
    }
    Ok(())
}

/// The exact product of `srcs` row by row into `b` (null where a factor is null or the
/// product overflows); all null when a source column is missing.
fn product(b: &mut ColBuf, srcs: Option<&[&ColBuf]>, rows: usize) -> Result<(), crate::Error> {
    let Values::Dec(vals) = &mut b.values else {
        return Err(crate::Error::Internal(
            "FOCUS product column is not a decimal",
        ));
    };
    let Some(srcs) = srcs else {
        (0..rows).for_each(|_| b.defs.push(0));
        return Ok(());
    };
    let mut iters: Vec<_> = srcs.iter().map(|c| rows_of(c)).collect();
    for _ in 0..rows {
        let mut acc = Some(Decimal::ONE);
        for (c, it) in srcs.iter().zip(iters.iter_mut()) {
            let v = it.next().flatten().and_then(|i| match &c.values {
                Values::Dec(v) => Some(Decimal::from_scaled(v[i])),
                Values::Int(v) => Some(Decimal::from_integer(v[i])),
                _ => None,
            });
            acc = acc.zip(v).and_then(|(a, v)| a.checked_mul(v));
        }
        match acc {
            Some(d) => {
                vals.push(d.scaled());
                b.defs.push(1);
            }
            None => b.defs.push(0),
        }
    }
    Ok(())
}

/// (name, type) of every FOCUS column, in file order.
pub(crate) fn focus_fields() -> Vec<(String, ColumnType)> {
    FOCUS_COLUMNS
        .iter()
        .map(|c| (c.name.to_string(), c.ty))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttributeSet, Dataset};

    #[test]
    fn sources_exist_and_have_the_focus_type() {
        for d in Dataset::ALL {
            let s = Schema::new(d, AttributeSet::Full);
            for fc in FOCUS_COLUMNS {
                let names: Vec<&str> = match fc.expr(&s) {
                    Expr::Col(c) | Expr::Map(c, ..) => vec![c],
                    Expr::DayStart(c) | Expr::NextDay(c) => vec![c],
                    Expr::MonthStart(c) | Expr::NextMonthStart(c) => vec![c],
                    Expr::Mul(cs) | Expr::Coalesce(cs) => cs.to_vec(),
                    _ => vec![],
                };
                for n in names {
                    let i = s.index_of(n);
                    // PartnerName is the one documented gap (reconciliation has no name).
                    if n == "PartnerName" && d == Dataset::Reconciliation {
                        continue;
                    }
                    let i = i.unwrap_or_else(|| panic!("{d}: {} needs {n}", fc.name));
                    let ty = s.columns()[i].ty;
                    if let Expr::Col(_) = fc.expr(&s) {
                        assert_eq!(ty, fc.ty, "{d}: {} from {n}", fc.name);
                    }
                }
            }
        }
    }

    #[test]
    fn mappings() {
        assert_eq!(correction(Some(b"Refund")), Some("Correction"));
        assert_eq!(correction(Some(b"new")), None);
        assert_eq!(recon_frequency(Some(b"OneTime")), Some("One-Time"));
        assert_eq!(recon_frequency(None), Some("Recurring"));
        let d = days_from_civil(2026, 12, 15);
        assert_eq!(month_start(d, 1), days_from_civil(2027, 1, 1));
        assert_eq!(month_start(d, 0), days_from_civil(2026, 12, 1));
    }
}
