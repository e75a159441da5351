//! The FOCUS view: one table maps every FOCUS column to a Partner Center expression, per
//! dataset. docs/focus.md is generated from [`FOCUS_COLUMNS`] ([`crate::focus_markdown`]).

use std::fmt;

use crate::calendar::MICROS_PER_DAY;
use crate::columns::{ColBuf, Values};
use crate::focus_lookup as lookup;
use crate::focus_rules::{self as rules, Out, RowCtx, RowFn, Val};
use crate::schema::{BillingStatus, ColumnType, Schema};
use crate::value::Decimal;

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
    /// Product of decimal columns, rounded half away from zero to the decimal scale.
    Mul(&'static [&'static str]),
    /// A rule of `focus_rules` over these columns: the columns, the rule's name for the docs,
    /// the rule.
    Row(&'static [&'static str], &'static str, RowFn),
    /// A string column as a JSON object: trimmed, braces added when it has none
    /// ([`rules::tags`]). Where every value already is one, the column as it is.
    JsonObject(&'static str),
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
            Expr::SourceType => f.write_str("source type (export kind, dataset)"),
            Expr::DayStart(c) => write!(f, "day of `{c}`, 00:00Z"),
            Expr::NextDay(c) => write!(f, "day after `{c}`, 00:00Z"),
            Expr::Mul(cs) => f.write_str(&list(cs, " × ")),
            Expr::Row(cs, name, _) => write!(f, "{name}({})", list(cs, ", ")),
            Expr::JsonObject(c) => write!(f, "JSON object(`{c}`)"),
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

use ColumnType::{Decimal as N, Integer as I, String as S, Timestamp as T};
use Expr::{Col, Const, Null, Row};

const U_COMMIT: &[&str] = &[
    "BenefitOrderID",
    "ChargeType",
    "UsageDate",
    "Quantity",
    "UnitType",
];
const R_COMMIT: &[&str] = &[
    "ReservationOrderId",
    "ChargeType",
    "ChargeStartDate",
    "BillableQuantity",
    "UnitType",
];
const U_PRICE: &[&str] = &[
    "EffectiveUnitPrice",
    "UnitPrice",
    "BenefitOrderID",
    "PCToBCExchangeRate",
    "Quantity",
    "BillingPreTaxTotal",
];
const R_PRICE: &[&str] = &[
    "EffectiveUnitPrice",
    "UnitPrice",
    "ReservationOrderId",
    "PCToBCExchangeRate",
    "BillableQuantity",
    "Subtotal",
];
const U_SERVICE: &[&str] = &[
    "ConsumedService",
    "ResourceURI",
    "MeterCategory",
    "ProductName",
    "SkuName",
];
const R_SERVICE: &[&str] = &["ConsumedService", "ResourceURI", "ProductName", "SkuName"];
const R_LINE: &[&str] = &["ProductId", "ReservationOrderId"];

/// Partner Center to FOCUS 1.2: the single source of the mapping and of docs/focus.md.
/// Extension columns use the names Microsoft's own FOCUS exports and FinOps hubs use where
/// Microsoft has one; the rest keep Partner Center's names after `x_`.
pub(crate) const FOCUS_COLUMNS: &[FocusColumn] = &[
    f("AvailabilityZone", S, Null, Null, "not in the exports"),
    f("BilledCost", N, Col("BillingPreTaxTotal"), Col("Subtotal"), "pre-tax, billing currency; the tax is in the Tax rows (and x_BilledTax)"),
    f("BillingAccountId", S, Col("PartnerId"), Col("PartnerId"), "the CSP partner's tenant"),
    f("BillingAccountName", S, Expr::Coalesce(&["PartnerName", "PartnerId"]), Expr::Coalesce(&["PartnerName", "PartnerId"]), "reconciliation files carry no partner name: the tenant id there"),
    f("BillingAccountType", S, Const("CSP Partner"), Const("CSP Partner"), ""),
    f("BillingCurrency", S, Col("BillingCurrency"), Col("Currency"), ""),
    f("BillingPeriodEnd", T, Row(&["ChargeEndDate"], "period end", rules::usage_period_end), Row(&["ChargeStartDate"], "period end", rules::recon_period_end), "exclusive end of the invoice's billing period (billed) or the export period (unbilled) when the run gives it; otherwise the day after ChargeEndDate (usage) or the month after ChargeStartDate (reconciliation)"),
    f("BillingPeriodStart", T, Row(&["ChargeStartDate"], "period start", rules::usage_period_start), Row(&["ChargeStartDate"], "period start", rules::recon_period_start), "the invoice's (billed) or the export's (unbilled) billing period when the run gives it; otherwise ChargeStartDate's day (usage) or month (reconciliation)"),
    f("CapacityReservationId", S, Null, Null, "not in the exports"),
    f("CapacityReservationStatus", S, Null, Null, "not in the exports"),
    f("ChargeCategory", S, Const("Usage"), Row(R_LINE, "usage or purchase", rules::recon_category), "the invoice's Azure consumption lines (Azure plan products, no reservation order) are Usage; licences, marketplace and commitment purchases are Purchase"),
    f("ChargeClass", S, Row(&["ChargeType", "UsageDate"], "correction", rules::charge_class), Row(&["ChargeType", "ChargeStartDate"], "correction", rules::charge_class), "\"Correction\" for a refund, cancellation or removal of a charge that started before the billing period; same-period reversals are not corrections"),
    f("ChargeDescription", S, Expr::Coalesce(&["ProductName", "MeterName", "SkuName"]), Expr::Coalesce(&["ProductName", "SkuName"]), "the product's name, as Microsoft's own FOCUS export"),
    f("ChargeFrequency", S, Const("Usage-Based"), Row(&["ProductId", "ReservationOrderId", "BillingFrequency", "TermAndBillingCycle"], "frequency", rules::recon_frequency), "Azure lines Usage-Based; blank BillingFrequency (Microsoft: one-time) One-Time, any other Recurring; unbilled rows (always blank) and basic files (no column): from the term's billing cycle"),
    f("ChargePeriodEnd", T, Expr::NextDay("UsageDate"), Expr::NextDay("ChargeEndDate"), "exclusive end"),
    f("ChargePeriodStart", T, Expr::DayStart("UsageDate"), Expr::DayStart("ChargeStartDate"), ""),
    f("CommitmentDiscountCategory", S, Row(&["BenefitOrderID", "BenefitType"], "category", rules::commitment_category), Row(&["ReservationOrderId", "ProductName"], "category", rules::commitment_category), "Spend for savings plans, Usage for reservations"),
    f("CommitmentDiscountId", S, Col("BenefitOrderID"), Col("ReservationOrderId"), "the order id on both sides, so usage joins its purchase"),
    f("CommitmentDiscountName", S, Null, Null, "not in the exports"),
    f("CommitmentDiscountQuantity", N, Row(U_COMMIT, "commitment quantity", rules::commitment_quantity), Row(R_COMMIT, "commitment quantity", rules::commitment_quantity), "the pricing quantity of rows with a commitment, except corrections"),
    f("CommitmentDiscountStatus", S, Row(&["BenefitOrderID"], "used", rules::commitment_status), Null, "Used on usage a commitment covers; the exports show no unused commitment"),
    f("CommitmentDiscountType", S, Col("BenefitType"), Row(&["ReservationOrderId", "ProductName"], "type", rules::recon_commitment_type), "Microsoft's benefit type (usage); Reservation or Savings Plan (reconciliation)"),
    f("CommitmentDiscountUnit", S, Row(U_COMMIT, "commitment unit", rules::commitment_unit), Row(R_COMMIT, "commitment unit", rules::commitment_unit), "the pricing unit where there is a commitment quantity"),
    f("ConsumedQuantity", N, Col("Quantity"), Row(&["ProductId", "ReservationOrderId", "BillableQuantity"], "consumed", rules::recon_consumed_quantity), "Azure lines only in reconciliation: purchases consume nothing"),
    f("ConsumedUnit", S, Row(&["Unit", "UnitType"], "unit", lookup::unit), Row(&["ProductId", "ReservationOrderId", "BillableQuantity", "UnitType"], "consumed unit", rules::recon_consumed_unit), "FOCUS unit format, as PricingUnit"),
    f("ContractedCost", N, Row(U_PRICE, "contracted cost", rules::contracted_cost), Row(R_PRICE, "contracted cost", rules::contracted_cost), "contracted unit price × quantity; BilledCost where a factor is missing. Microsoft's own rounding (ROUNDDOWN to cents) is not replayed"),
    f("ContractedUnitPrice", N, Row(U_PRICE, "contracted price", rules::contracted_price), Row(R_PRICE, "contracted price", rules::contracted_price), "EffectiveUnitPrice × PCToBCExchangeRate; UnitPrice on rows a commitment covers (their effective price is 0, the contracted price is before commitment discounts)"),
    f("EffectiveCost", N, Col("BillingPreTaxTotal"), Row(&["ProductId", "ReservationOrderId", "Subtotal"], "effective cost", rules::recon_effective_cost), "0 for reservation and savings-plan purchases (FOCUS); usage a commitment covers is 0 in Microsoft's data, which carries no amortised cost"),
    f("InvoiceId", S, Col("InvoiceNumber"), Col("InvoiceNumber"), "null (empty) in unbilled exports"),
    f("InvoiceIssuerName", S, Const("Microsoft"), Const("Microsoft"), "Microsoft invoices the CSP partner"),
    f("ListCost", N, Row(&["UnitPrice", "Quantity", "PCToBCExchangeRate", "BillingPreTaxTotal"], "list cost", rules::list_cost), Row(&["UnitPrice", "BillableQuantity", "PCToBCExchangeRate", "Subtotal"], "list cost", rules::list_cost), "list price converted to the billing currency × quantity; BilledCost where a factor is missing"),
    f("ListUnitPrice", N, Expr::Mul(&["UnitPrice", "PCToBCExchangeRate"]), Expr::Mul(&["UnitPrice", "PCToBCExchangeRate"]), "in the billing currency"),
    f("PricingCategory", S, Row(&["BenefitOrderID", "MeterName", "MeterSubCategory", "SkuName"], "pricing category", rules::usage_pricing_category), Const("Standard"), "Committed when a reservation or savings plan covers the row, Dynamic for spot meters"),
    f("PricingCurrency", S, Col("PricingCurrency"), Col("PricingCurrency"), ""),
    f("PricingCurrencyContractedUnitPrice", N, Row(U_PRICE, "contracted price", rules::pricing_contracted_price), Row(R_PRICE, "contracted price", rules::pricing_contracted_price), "as ContractedUnitPrice, in the pricing currency"),
    f("PricingCurrencyEffectiveCost", N, Col("PricingPreTaxTotal"), Row(&["ProductId", "ReservationOrderId", "EffectiveUnitPrice", "BillableQuantity"], "effective cost", rules::recon_pricing_effective_cost), "0 for commitment purchases"),
    f("PricingCurrencyListUnitPrice", N, Col("UnitPrice"), Col("UnitPrice"), ""),
    f("PricingQuantity", N, Col("Quantity"), Col("BillableQuantity"), ""),
    f("PricingUnit", S, Row(&["UnitType"], "unit", lookup::unit), Row(&["UnitType"], "unit", lookup::unit), "FOCUS unit format: \"1 Hour\" → Hours, \"1 GB/Month\" → GB-Months, \"10K\" → 10000 Units; Units when the export has none"),
    f("ProviderName", S, Const("Microsoft"), Const("Microsoft"), ""),
    f("PublisherName", S, Row(&["PublisherName"], "or Microsoft", rules::or_microsoft), Row(&["PublisherName"], "or Microsoft", rules::or_microsoft), "Microsoft when empty"),
    f("RegionId", S, Row(&["ResourceLocation"], "region id", rules::region_id), Null, "lower case without spaces"),
    f("RegionName", S, Col("ResourceLocation"), Null, "the resource's location as Microsoft writes it; the meter's pricing zone is x_SkuRegion"),
    f("ResourceId", S, Col("ResourceURI"), Null, ""),
    f("ResourceName", S, Row(&["ResourceURI"], "last segment", rules::resource_name), Null, "last segment of the resource id"),
    f("ResourceType", S, Row(&["ResourceURI"], "resource type", rules::resource_type), Null, "the Azure resource type in the resource id"),
    f("ServiceCategory", S, Row(U_SERVICE, "service category", lookup::service_category), Row(R_SERVICE, "service category", lookup::service_category), "from the resource provider (ConsumedService or the resource id), else words of the product's name; Other otherwise"),
    f("ServiceName", S, Row(U_SERVICE, "service name", lookup::service_name), Row(R_SERVICE, "service name", lookup::service_name), "the provider's service, else the meter category or product name"),
    f("ServiceSubcategory", S, Row(U_SERVICE, "service subcategory", lookup::service_subcategory), Row(R_SERVICE, "service subcategory", lookup::service_subcategory), "as ServiceCategory; one of FOCUS's subcategories of that category"),
    f("SkuId", S, Row(&["ProductId", "SkuId"], "product/sku", rules::sku_id), Row(&["ProductId", "SkuId"], "product/sku", rules::sku_id), "ProductId/SkuId: Partner Center's SkuId alone is an index within its product"),
    f("SkuMeter", S, Expr::Coalesce(&["MeterName", "SkuName"]), Col("SkuName"), ""),
    f("SkuPriceDetails", S, Null, Null, "not derived"),
    f("SkuPriceId", S, Col("AvailabilityId"), Col("AvailabilityId"), ""),
    f("SubAccountId", S, Col("EntitlementId"), Col("SubscriptionId"), "usage: the Azure subscription (EntitlementId); reconciliation: the billing subscription. The customer is x_CustomerId"),
    f("SubAccountName", S, Expr::Coalesce(&["EntitlementDescription", "EntitlementId"]), Expr::Coalesce(&["SubscriptionDescription", "SubscriptionId"]), "the subscription's name, else its id"),
    f("SubAccountType", S, Const("Subscription"), Const("Subscription"), ""),
    f("Tags", S, Expr::JsonObject("Tags"), Null, "a JSON object: braces added when Microsoft's text has none"),
    f("x_BilledTax", N, Null, Col("TaxTotal"), ""),
    f("x_BilledTotal", N, Null, Col("Total"), "the invoice amount: BilledCost + x_BilledTax"),
    f("x_BillingAccountId", S, Col("PartnerId"), Col("PartnerId"), "Microsoft's name; with x_BillingProfileId it keeps FinOps hubs from labelling CSP rows EA"),
    f("x_BillingExchangeRate", N, Col("PCToBCExchangeRate"), Col("PCToBCExchangeRate"), "pricing to billing currency (PCToBCExchangeRate)"),
    f("x_BillingExchangeRateDate", T, Null, Expr::DayStart("PCToBCExchangeRateDate"), ""),
    f("x_BillingProfileId", S, Row(&["PartnerId", "BillingCurrency"], "profile", rules::billing_profile), Row(&["PartnerId", "Currency"], "profile", rules::billing_profile), "PartnerId/billing currency: a partner is invoiced per currency; differs from x_BillingAccountId, which FinOps hubs needs to tell CSP from EA"),
    f("x_BillingStatus", S, Expr::Status, Expr::Status, "unbilled rows may still change"),
    f("x_ChargeType", S, Col("ChargeType"), Col("ChargeType"), ""),
    f("x_CreditPercentage", I, Col("CreditPercentage"), Null, ""),
    f("x_CreditReasonCode", S, Null, Col("CreditReasonCode"), ""),
    f("x_CreditType", S, Col("CreditType"), Null, ""),
    f("x_CustomerCountry", S, Col("CustomerCountry"), Col("CustomerCountry"), ""),
    f("x_CustomerDomainName", S, Col("CustomerDomainName"), Col("CustomerDomainName"), ""),
    f("x_CustomerId", S, Col("CustomerId"), Col("CustomerId"), "the CSP customer's tenant (Microsoft's name)"),
    f("x_CustomerName", S, Col("CustomerName"), Col("CustomerName"), ""),
    f("x_EffectiveUnitPrice", N, Col("EffectiveUnitPrice"), Col("EffectiveUnitPrice"), "pricing currency, after discounts and credits"),
    f("x_MpnId", S, Col("MpnId"), Col("MpnId"), "the partner's MPN id"),
    f("x_OrderId", S, Null, Col("OrderId"), ""),
    f("x_PartnerCreditApplied", S, Row(&["PartnerEarnedCreditPercentage"], "applied", rules::credit_applied), Null, "\"true\" when partner earned credit applies (Microsoft's name, a string as FinOps hubs declares it)"),
    f("x_PartnerCreditRate", S, Row(&["PartnerEarnedCreditPercentage"], "rate", rules::credit_rate), Null, "the partner earned credit as a fraction (0.15)"),
    f("x_ProductId", S, Col("ProductId"), Col("ProductId"), ""),
    f("x_PromotionId", S, Null, Col("PromotionId"), ""),
    f("x_ReferenceId", S, Null, Col("ReferenceId"), ""),
    f("x_ResellerId", S, Col("Tier2MpnId"), Col("Tier2MpnId"), "the indirect reseller's MPN id (Tier2MpnId)"),
    f("x_ResourceGroupName", S, Col("ResourceGroup"), Null, ""),
    f("x_SkuMeterCategory", S, Col("MeterCategory"), Null, ""),
    f("x_SkuMeterId", S, Col("MeterId"), Null, ""),
    f("x_SkuMeterSubcategory", S, Col("MeterSubCategory"), Null, ""),
    f("x_SkuRegion", S, Col("MeterRegion"), Null, "the meter's pricing zone"),
    f("x_SourceName", S, Const(SOURCE_NAME), Const(SOURCE_NAME), "a column FinOps hubs keeps"),
    f("x_SourceType", S, Expr::SourceType, Expr::SourceType, "BilledUsage, BilledReconciliation, UnbilledUsage or UnbilledReconciliation; kept by FinOps hubs"),
    f("x_SubscriptionId", S, Col("SubscriptionId"), Col("SubscriptionId"), "Partner Center's billing subscription id (not the Azure subscription)"),
];

/// The FOCUS columns that repeat a typed column as it is, value for value except that FOCUS
/// turns empty strings into nulls: (FOCUS column, typed column) by index.
pub(crate) fn repeated_columns(schema: &Schema) -> Vec<(usize, usize)> {
    FOCUS_COLUMNS
        .iter()
        .enumerate()
        .filter_map(|(k, fc)| match fc.expr(schema) {
            Expr::Col(name) | Expr::JsonObject(name) => schema
                .index_of(name)
                .filter(|&j| schema.columns()[j].ty == fc.ty)
                .map(|j| (k, j)),
            _ => None,
        })
        .collect()
}

/// Whether FOCUS column `k`, one of [`repeated_columns`], differs from `typed`, a batch of
/// its typed column: an empty string (null in FOCUS), or for a JSON object column a value
/// that is not one as it stands (braces or spaces to change).
pub(crate) fn differs(schema: &Schema, k: usize, typed: &ColBuf) -> bool {
    if typed.has_empty_str() {
        return true;
    }
    let Values::Str { ends, .. } = &typed.values else {
        return false;
    };
    matches!(FOCUS_COLUMNS[k].expr(schema), Expr::JsonObject(_))
        && (0..ends.len()).any(|i| !rules::tags_unchanged(typed.str_at(i)))
}

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

/// Computes the FOCUS columns of one row group from its typed columns (in schema order);
/// columns marked in `skip` (taken from the typed file as they are) are left empty.
pub(crate) fn derive(
    schema: &Schema,
    typed: &[ColBuf],
    rows: usize,
    ctx: &RowCtx,
    skip: &[bool],
    out: &mut Vec<ColBuf>,
) -> Result<(), crate::Error> {
    let status = ctx.status;
    // The buffers are reused from one row group to the next (no allocation per group).
    if out.len() != FOCUS_COLUMNS.len() {
        *out = FOCUS_COLUMNS.iter().map(|fc| ColBuf::new(fc.ty)).collect();
    }
    let col = |name: &str| schema.index_of(name).map(|i| &typed[i]);
    let mut sources = Sources::new(schema, typed, rows);
    for (k, (fc, b)) in FOCUS_COLUMNS.iter().zip(out.iter_mut()).enumerate() {
        b.clear();
        if skip.get(k) == Some(&true) {
            continue;
        }
        let push_str = |b: &mut ColBuf, s: Option<&[u8]>| match s {
            Some(s) if !s.is_empty() => b.push_str(s),
            _ => b.push_null(),
        };
        match fc.expr(schema) {
            Expr::Null => b.push_nulls(rows),
            Expr::Const(v) => b.push_str_n(v.as_bytes(), rows),
            Expr::Status => b.push_str_n(status.as_str().as_bytes(), rows),
            Expr::SourceType => {
                b.push_str_n(source_type(schema.dataset(), status).as_bytes(), rows)
            }
            Expr::Col(name) => match col(name) {
                None => b.push_nulls(rows),
                Some(src) if fc.ty == ColumnType::String => {
                    if src.has_empty_str() {
                        for v in rows_of(src) {
                            push_str(b, v.map(|i| src.str_at(i)));
                        }
                    } else {
                        // No empty string to turn into null: the column as it is.
                        b.copy_from(src);
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
            Expr::Row(names, _, func) => row_rule(b, names, func, &mut sources, ctx, rows)?,
            Expr::JsonObject(name) => {
                row_rule(b, &[name], rules::tags, &mut sources, ctx, rows)?;
            }
            e @ (Expr::DayStart(name) | Expr::NextDay(name)) => {
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
                                Expr::NextDay(_) => day + 1,
                                _ => day,
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

/// FOCUS columns a Tax row sets to its tax amount (`TaxTotal`); the rest of
/// [`TAX_NULL`] are null, and every other column repeats the charge's value.
const TAX_AMOUNT: &[&str] = &["BilledCost", "EffectiveCost", "ListCost", "ContractedCost"];
/// Columns that describe a price, a quantity or a commitment: null on Tax rows (FOCUS wants
/// SkuPriceId, PricingCategory and the pricing columns null for taxes), and the tax columns,
/// which the charge's row carries.
const TAX_NULL: &[&str] = &[
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "x_BilledTax",
    "x_BilledTotal",
    "x_EffectiveUnitPrice",
];

/// Appends a Tax row for each reconciliation row with a non-zero `TaxTotal` (after the row
/// group's rows), so that BilledCost per InvoiceId adds up to the invoice, tax included, as
/// FOCUS requires; returns the rows taxed, whose other columns the caller repeats.
pub(crate) fn append_tax_rows(schema: &Schema, typed: &[ColBuf], out: &mut [ColBuf]) -> Vec<usize> {
    let Some(tax) = schema.index_of("TaxTotal").map(|i| &typed[i]) else {
        return Vec::new();
    };
    let Values::Dec(amounts) = &tax.values else {
        return Vec::new();
    };
    // The tax in the pricing currency: TaxTotal ÷ PCToBCExchangeRate (null without a rate).
    let rate = schema.index_of("PCToBCExchangeRate").map(|i| &typed[i]);
    let rates: Vec<Option<i128>> = match rate.map(|c| (c, &c.values)) {
        Some((c, Values::Dec(r))) => rows_of(c).map(|v| v.map(|i| r[i])).collect(),
        _ => vec![None; tax.defs.len()],
    };
    let mut rows = Vec::new();
    let mut values = Vec::new();
    let mut pricing = Vec::new();
    for (row, v) in rows_of(tax).enumerate() {
        if let Some(i) = v.filter(|&i| amounts[i] != 0) {
            rows.push(row);
            values.push(amounts[i]);
            pricing.push(rates[row].and_then(|r| divide(amounts[i], r)));
        }
    }
    if rows.is_empty() {
        return rows;
    }
    for (fc, b) in FOCUS_COLUMNS.iter().zip(out.iter_mut()) {
        if fc.name == "ChargeCategory" {
            (0..rows.len()).for_each(|_| b.push_str(b"Tax"));
        } else if let ("PricingCurrencyEffectiveCost", Values::Dec(v)) = (fc.name, &mut b.values) {
            for p in &pricing {
                v.extend(*p);
                b.defs.push(i16::from(p.is_some()));
            }
        } else if TAX_NULL.contains(&fc.name) {
            (0..rows.len()).for_each(|_| b.push_null());
        } else if let (true, Values::Dec(v)) = (TAX_AMOUNT.contains(&fc.name), &mut b.values) {
            v.extend_from_slice(&values);
            b.defs.extend(std::iter::repeat_n(1, values.len()));
        } else {
            b.repeat_rows(&rows);
        }
    }
    rows
}

/// `a ÷ b` of two scaled decimals, rounded half away from zero (`None` for 0 or overflow).
fn divide(a: i128, b: i128) -> Option<i128> {
    if b == 0 {
        return None;
    }
    let num = a.checked_mul(Decimal::ONE.scaled())?;
    let (q, r) = (num / b, num % b);
    let up = r.unsigned_abs().checked_mul(2)? >= b.unsigned_abs();
    Some(if up { q + num.signum() * b.signum() } else { q })
}

/// One source column's values for the rules, one per row, and whether each row's value
/// equals the previous row's: gathered once per batch and column, however many rules read
/// the column (the rules read about 70 columns, 40 of them distinct).
struct Source<'c> {
    vals: Vec<Val<'c>>,
    same: Vec<bool>,
}

impl<'c> Source<'c> {
    /// Gathered a column at a time, so the match on the column's type runs once per column,
    /// not once per value (as an indirect jump per row and source, it mispredicted often
    /// enough to be a quarter of deriving, profiled).
    fn gather(col: Option<&'c ColBuf>, rows: usize) -> Self {
        // Generic, so each column type's loop is its own inlined code (through `&dyn Fn`
        // every value cost an indirect call); values are taken in order, not looked up by
        // index (a string's start was a branch and two bounds checks, profiled).
        fn each<'c>(defs: &[i16], vals: &mut Vec<Val<'c>>, mut next: impl FnMut() -> Val<'c>) {
            vals.extend(
                defs.iter()
                    .map(|&d| if d == 1 { next() } else { Val::Null }),
            );
        }
        const VALUES: &str = "a value for every defined row";
        let mut vals = Vec::with_capacity(rows);
        match col {
            None => vals.resize(rows, Val::Absent),
            Some(col) => match &col.values {
                Values::Str { bytes, ends } => {
                    let (mut ends, mut start) = (ends.iter(), 0);
                    each(&col.defs, &mut vals, || {
                        let end = *ends.next().expect(VALUES) as usize;
                        let s = &bytes[start..end];
                        start = end;
                        if s.is_empty() {
                            Val::Null
                        } else {
                            Val::Str(s)
                        }
                    })
                }
                Values::Dec(v) => {
                    let mut v = v.iter();
                    each(&col.defs, &mut vals, || {
                        Val::Dec(Decimal::from_scaled(*v.next().expect(VALUES)))
                    })
                }
                Values::Int(v) => {
                    let mut v = v.iter();
                    each(&col.defs, &mut vals, || Val::Int(*v.next().expect(VALUES)))
                }
                Values::Date(v) => {
                    let mut v = v.iter();
                    each(&col.defs, &mut vals, || {
                        Val::Time(i64::from(*v.next().expect(VALUES)) * MICROS_PER_DAY)
                    })
                }
                Values::Ts(v) => {
                    let mut v = v.iter();
                    each(&col.defs, &mut vals, || Val::Time(*v.next().expect(VALUES)))
                }
            },
        }
        // Strings compare inline (a `memcmp` call per row was a third of this).
        let eq = |a: &Val, b: &Val| match (a, b) {
            (Val::Str(x), Val::Str(y)) => crate::dict::same(x, y),
            _ => a == b,
        };
        let same = std::iter::once(false)
            .take(vals.len())
            .chain(vals.windows(2).map(|w| eq(&w[1], &w[0])))
            .collect();
        Self { vals, same }
    }
}

/// The batch's [`Source`]s, by schema column, gathered on first use; columns the export
/// does not have share one source of `Absent` values.
struct Sources<'c> {
    schema: &'c Schema,
    typed: &'c [ColBuf],
    rows: usize,
    /// By schema index, then the absent columns' slot last.
    gathered: Vec<Option<Source<'c>>>,
}

impl<'c> Sources<'c> {
    fn new(schema: &'c Schema, typed: &'c [ColBuf], rows: usize) -> Self {
        Self {
            schema,
            typed,
            rows,
            gathered: (0..=typed.len()).map(|_| None).collect(),
        }
    }

    /// The slot of column `name`, gathered if it was not yet.
    fn gather(&mut self, name: &str) -> usize {
        let index = self.schema.index_of(name);
        let slot = index.unwrap_or(self.typed.len());
        if self.gathered[slot].is_none() {
            let col = index.map(|i| &self.typed[i]);
            self.gathered[slot] = Some(Source::gather(col, self.rows));
        }
        slot
    }
}

/// Fills `b` with a `focus_rules` rule over the columns `names`, row by row.
fn row_rule(
    b: &mut ColBuf,
    names: &[&str],
    func: RowFn,
    sources: &mut Sources<'_>,
    ctx: &RowCtx,
    rows: usize,
) -> Result<(), crate::Error> {
    let slots: Vec<usize> = names.iter().map(|n| sources.gather(n)).collect();
    let srcs: Vec<&Source> = slots
        .iter()
        .map(|&i| sources.gathered[i].as_ref().expect("gathered"))
        .collect();
    // A rule is a function of its row's values (and the run's context): rows come clustered
    // by customer and subscription, so the inputs often repeat the previous row's, and
    // repeating its answer saves the lookups. Which rows do is settled for all sources at
    // once, a vectorised AND per source, rather than source by source in the row loop.
    let mut repeat = vec![true; rows];
    if let Some(first) = repeat.first_mut() {
        *first = false;
    }
    for s in &srcs {
        repeat
            .iter_mut()
            .zip(&s.same)
            .for_each(|(r, &same)| *r &= same);
    }
    let mut vals: Vec<Val> = srcs.iter().map(|_| Val::Absent).collect();
    let mut scratch = Vec::new();
    for (row, &repeat) in repeat.iter().enumerate() {
        if repeat {
            b.repeat_last();
            continue;
        }
        vals.iter_mut()
            .zip(&srcs)
            .for_each(|(v, s)| *v = s.vals[row]);
        scratch.clear();
        match (func(ctx, &vals, &mut scratch), &mut b.values) {
            (Out::Null, _) => b.push_null(),
            (Out::Str(v), Values::Str { .. }) => b.push_str(v.as_bytes()),
            (Out::Scratch, Values::Str { .. }) => b.push_str(&scratch),
            (Out::Dec(d), Values::Dec(v)) => {
                v.push(d.scaled());
                b.defs.push(1);
            }
            (Out::Time(t), Values::Ts(v)) => {
                v.push(t);
                b.defs.push(1);
            }
            _ => return Err(crate::Error::Internal("FOCUS rule of the wrong type")),
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
    let mut factors = Vec::with_capacity(srcs.len());
    for _ in 0..rows {
        // Every source's iterator advances, whatever the row's factors are.
        factors.clear();
        factors.extend(srcs.iter().zip(iters.iter_mut()).map(|(c, it)| {
            it.next().flatten().and_then(|i| match &c.values {
                Values::Dec(v) => Some(Decimal::from_scaled(v[i])),
                Values::Int(v) => Some(Decimal::from_integer(v[i])),
                _ => None,
            })
        }));
        let acc = Decimal::product(factors.iter().copied());
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
    fn a_repeated_column_differs_only_where_focus_changes_a_value() {
        let s = Schema::new(Dataset::Usage, AttributeSet::Full);
        let col = |values: &[&str]| {
            let mut c = ColBuf::new(ColumnType::String);
            values.iter().for_each(|v| c.push_str(v.as_bytes()));
            c.push_null();
            c
        };
        let repeated = repeated_columns(&s);
        let k_of = |name: &str| {
            let k = FOCUS_COLUMNS.iter().position(|f| f.name == name).unwrap();
            assert!(repeated.iter().any(|&(r, _)| r == k), "{name} is repeated");
            k
        };
        let (tags, sub) = (k_of("Tags"), k_of("SubAccountId"));
        assert!(!differs(&s, tags, &col(&[r#"{"a":"1"}"#, "{}"])));
        assert!(differs(&s, tags, &col(&[r#"{"a":"1"}"#, r#""a":"1""#])));
        assert!(differs(&s, tags, &col(&[r#"{"a":"1"} "#])));
        assert!(differs(&s, tags, &col(&["{}", ""])));
        assert!(!differs(&s, sub, &col(&["x", "no braces"])));
        assert!(differs(&s, sub, &col(&["x", ""])));
    }

    #[test]
    fn sources_exist_and_have_the_focus_type() {
        for d in Dataset::ALL {
            let s = Schema::new(d, AttributeSet::Full);
            for fc in FOCUS_COLUMNS {
                let names: Vec<&str> = match fc.expr(&s) {
                    Expr::Col(c) | Expr::JsonObject(c) => vec![c],
                    Expr::DayStart(c) | Expr::NextDay(c) => vec![c],
                    // A rule's columns may be absent: the rule handles that.
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
                    if let Expr::Col(_) | Expr::JsonObject(_) = fc.expr(&s) {
                        assert_eq!(ty, fc.ty, "{d}: {} from {n}", fc.name);
                    }
                }
            }
        }
    }

    #[test]
    fn division_rounds_half_away_from_zero() {
        let d = |x: i128| x * Decimal::ONE.scaled();
        assert_eq!(divide(d(1), d(4)), Some(Decimal::ONE.scaled() / 4));
        assert_eq!(divide(d(-2), d(3)), Some(-666_666_666_667));
        assert_eq!(divide(d(1), 0), None);
    }
}
