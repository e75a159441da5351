//! The column lists of Microsoft's partner billing exports (docs/graph-api.md §4) with the
//! Parquet logical type of each column: the one place the schema is written down.

use std::fmt;

/// Which family of export a partition belongs to; billed and unbilled share their columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// Billed and unbilled (daily-rated) usage.
    Usage,
    /// Billed and unbilled invoice reconciliation.
    Reconciliation,
}

impl Dataset {
    /// Both datasets, in documentation order.
    pub const ALL: [Dataset; 2] = [Dataset::Usage, Dataset::Reconciliation];

    fn columns(self) -> &'static [ColumnDef] {
        match self {
            Dataset::Usage => USAGE,
            Dataset::Reconciliation => RECONCILIATION,
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dataset::Usage => "usage",
            Dataset::Reconciliation => "reconciliation",
        })
    }
}

/// Graph's `attributeSet`: every column (`full`) or the documented subset (`basic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttributeSet {
    Full,
    Basic,
}

impl fmt::Display for AttributeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttributeSet::Full => "full",
            AttributeSet::Basic => "basic",
        })
    }
}

/// Whether the rows are already invoiced; only the FOCUS view (`x_BillingStatus`) records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BillingStatus {
    Billed,
    Unbilled,
}

impl BillingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingStatus::Billed => "billed",
            BillingStatus::Unbilled => "unbilled",
        }
    }
}

/// Scale of every [`ColumnType::Decimal`] column: 12 fractional digits. The product of two
/// such columns has scale 24, so readers that keep the full scale (DuckDB, Trino) can hold
/// products up to 10^14 in DECIMAL(38); with 18 places they overflow at 100. Values with more
/// places are rounded half to even and counted (docs/parquet.md).
pub const DECIMAL_SCALE: u32 = 12;
/// Precision of every [`ColumnType::Decimal`] column (16-byte two's complement in Parquet).
pub const DECIMAL_PRECISION: u32 = 38;

/// [`DECIMAL_PRECISION`] and [`DECIMAL_SCALE`] as SQL spells them.
const DECIMAL_TYPE: &str = "DECIMAL(38,12)";
const _: () = assert!(DECIMAL_PRECISION == 38 && DECIMAL_SCALE == 12);

/// The logical type a column is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// UTF-8 string (Parquet BYTE_ARRAY / STRING).
    String,
    /// Decimal, DECIMAL(38, 12) as a 16-byte FIXED_LEN_BYTE_ARRAY.
    Decimal,
    /// Whole number, INT64.
    Integer,
    /// Calendar day, DATE (INT32 days since 1970-01-01).
    Date,
    /// Instant, TIMESTAMP(MICROS, UTC) as INT64.
    Timestamp,
}

impl ColumnType {
    /// How docs/schema.md names the type.
    pub fn describe(self) -> &'static str {
        match self {
            ColumnType::String => "STRING",
            ColumnType::Decimal => DECIMAL_TYPE,
            ColumnType::Integer => "INT64",
            ColumnType::Date => "DATE",
            ColumnType::Timestamp => "TIMESTAMP(MICROS, UTC)",
        }
    }
}

/// One documented column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDef {
    /// The JSON key, exactly as Microsoft spells it.
    pub name: &'static str,
    /// Whether `basic` carries it (`full` carries every column).
    pub basic: bool,
    pub ty: ColumnType,
    /// Why this type (one short sentence, rendered into docs/schema.md).
    pub note: &'static str,
}

const fn c(name: &'static str, basic: bool, ty: ColumnType, note: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        basic,
        ty,
        note,
    }
}

use ColumnType::{Date as D, Decimal as N, Integer as I, String as S, Timestamp as T};

const AMOUNT: &str = "money; exact decimal, negative on credits and refunds";
const PRICE: &str = "unit price; Microsoft prints up to 6+ decimals";
const RATE: &str = "exchange rate; more decimals than money";
const QTY: &str = "fractional for metered usage";
const ID: &str = "identifier; digits kept as text (leading zeros)";
const DAY: &str = "a calendar day; a midnight time part is accepted, any other time is an error";
const INSTANT: &str = "ISO 8601 instant; sub-microsecond digits are truncated";
const PERCENT: &str = "whole percentage (0 or 15 in practice)";

/// docs/graph-api.md §4.1, usage exports (billed and unbilled), in the documented order.
const USAGE: &[ColumnDef] = &[
    c("AdditionalInfo", true, S, "free text / JSON text"),
    c("AvailabilityId", false, S, ""),
    c("BenefitID", false, S, ""),
    c("BenefitOrderID", true, S, ""),
    c("BenefitType", true, S, ""),
    c("BillingCurrency", true, S, "ISO 4217 code"),
    c("BillingPreTaxTotal", true, N, AMOUNT),
    c(
        "ChargeEndDate",
        true,
        T,
        "end of the billing cycle; real files carry 23:59 times",
    ),
    c("ChargeStartDate", true, T, INSTANT),
    c("ChargeType", true, S, ""),
    c("ConsumedService", false, S, ""),
    c("CreditPercentage", true, I, PERCENT),
    c("CreditType", true, S, ""),
    c("CustomerCountry", false, S, ""),
    c("CustomerDomainName", false, S, ""),
    c("CustomerId", true, S, "Entra tenant GUID"),
    c("CustomerName", true, S, ""),
    c("EffectiveUnitPrice", true, N, PRICE),
    c("EntitlementDescription", false, S, ""),
    c("EntitlementId", true, S, ""),
    c("InvoiceNumber", true, S, "empty in unbilled files"),
    c("MeterCategory", false, S, ""),
    c("MeterId", false, S, ""),
    c("MeterName", false, S, ""),
    c("MeterRegion", false, S, ""),
    c("MeterSubCategory", false, S, ""),
    c("MeterType", false, S, ""),
    c("MpnId", false, S, ID),
    c("PartnerEarnedCreditPercentage", false, I, PERCENT),
    c("PartnerId", true, S, "Entra tenant GUID"),
    c("PartnerName", true, S, ""),
    c("PCToBCExchangeRate", true, N, RATE),
    c("PricingCurrency", true, S, "ISO 4217 code"),
    c("PricingPreTaxTotal", true, N, AMOUNT),
    c("ProductId", true, S, ""),
    c("ProductName", false, S, ""),
    c("PublisherId", false, S, ""),
    c("PublisherName", true, S, ""),
    c("Quantity", true, N, QTY),
    c("ResourceGroup", false, S, ""),
    c("ResourceLocation", false, S, ""),
    c("ResourceURI", true, S, ""),
    c("ServiceInfo1", false, S, ""),
    c("ServiceInfo2", false, S, ""),
    c("SkuId", true, S, ID),
    c("SkuName", true, S, ""),
    c("SubscriptionDescription", false, S, ""),
    c("SubscriptionId", true, S, ""),
    c("Tags", false, S, "JSON text as Microsoft writes it"),
    c("Tier2MpnId", false, S, ID),
    c("Unit", false, S, ""),
    c("UnitPrice", true, N, PRICE),
    c("UnitType", true, S, ""),
    c("UsageDate", true, D, DAY),
];

/// docs/graph-api.md §4.2, reconciliation exports (billed and unbilled), in the documented order.
const RECONCILIATION: &[ColumnDef] = &[
    c("PartnerId", true, S, "Entra tenant GUID"),
    c("CustomerId", true, S, "Entra tenant GUID"),
    c("CustomerName", true, S, ""),
    c("CustomerDomainName", false, S, ""),
    c("CustomerCountry", false, S, ""),
    c("InvoiceNumber", true, S, "empty in unbilled files"),
    c("MpnId", false, S, ID),
    c("Tier2MpnId", true, S, ID),
    c("OrderId", true, S, ID),
    c("OrderDate", true, T, INSTANT),
    c("ProductId", true, S, ""),
    c("SkuId", true, S, ID),
    c("AvailabilityId", true, S, ""),
    c("SkuName", true, S, ""),
    c("ProductName", true, S, ""),
    c("ChargeType", true, S, ""),
    c("UnitPrice", true, N, PRICE),
    c(
        "Quantity",
        false,
        I,
        "licences/units purchased: whole numbers",
    ),
    c("Subtotal", true, N, AMOUNT),
    c("TaxTotal", true, N, AMOUNT),
    c("Total", true, N, AMOUNT),
    c("Currency", true, S, "ISO 4217 code (billing currency)"),
    c("PriceAdjustmentDescription", true, S, ""),
    c("PublisherName", true, S, ""),
    c("PublisherId", false, S, ""),
    c("SubscriptionDescription", false, S, ""),
    c("SubscriptionId", true, S, ""),
    c("ChargeStartDate", true, T, INSTANT),
    c("ChargeEndDate", true, T, "real files carry 23:59 times"),
    c("TermAndBillingCycle", true, S, ""),
    c("EffectiveUnitPrice", true, N, PRICE),
    c("UnitType", false, S, ""),
    c("AlternateId", false, S, ""),
    c(
        "BillableQuantity",
        true,
        N,
        "fractional for usage-based lines",
    ),
    c("BillingFrequency", false, S, ""),
    c("PricingCurrency", true, S, "ISO 4217 code"),
    c("PCToBCExchangeRate", true, N, RATE),
    c("PCToBCExchangeRateDate", false, D, DAY),
    c("MeterDescription", false, S, ""),
    c("ReservationOrderId", true, S, ""),
    c("CreditReasonCode", true, S, ""),
    c("SubscriptionStartDate", true, D, DAY),
    c("SubscriptionEndDate", true, D, DAY),
    c("ReferenceId", true, S, ""),
    c(
        "ProductQualifiers",
        false,
        S,
        "JSON text as Microsoft writes it",
    ),
    c("PromotionId", true, S, ""),
    c("ProductCategory", true, S, ""),
];

/// The ordered, typed columns of one dataset and attribute set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    dataset: Dataset,
    attribute_set: AttributeSet,
    columns: Vec<&'static ColumnDef>,
}

impl Schema {
    pub fn new(dataset: Dataset, attribute_set: AttributeSet) -> Self {
        let columns = dataset
            .columns()
            .iter()
            .filter(|c| attribute_set == AttributeSet::Full || c.basic)
            .collect();
        Self {
            dataset,
            attribute_set,
            columns,
        }
    }

    pub fn dataset(&self) -> Dataset {
        self.dataset
    }

    pub fn attribute_set(&self) -> AttributeSet {
        self.attribute_set
    }

    /// The columns in file order.
    pub fn columns(&self) -> &[&'static ColumnDef] {
        &self.columns
    }

    /// The JSON keys in file order (what the sandbox writes).
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns.iter().map(|c| c.name)
    }

    /// Position of `name` (exact spelling) in [`Schema::columns`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Every documented column of the dataset, whatever the attribute set (for docs).
    pub fn all_columns(dataset: Dataset) -> &'static [ColumnDef] {
        dataset.columns()
    }

    /// The amount summed per (customer, currency) for the invoice check, and that currency's
    /// column: reconciliation `Total`, `Subtotal` and `PCToBCExchangeRate` by `Currency`, usage `BillingPreTaxTotal`
    /// by `BillingCurrency`.
    pub(crate) fn invoice_amounts(&self) -> (&'static str, &'static [&'static str]) {
        match self.dataset {
            Dataset::Usage => ("BillingCurrency", &["BillingPreTaxTotal"]),
            // The exchange rate is summed so a check can bound Microsoft's per-line rounding.
            Dataset::Reconciliation => ("Currency", &["Total", "Subtotal", "PCToBCExchangeRate"]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_lists_have_the_documented_sizes() {
        for (d, full, basic) in [(Dataset::Usage, 54, 30), (Dataset::Reconciliation, 47, 35)] {
            assert_eq!(Schema::new(d, AttributeSet::Full).columns().len(), full);
            assert_eq!(Schema::new(d, AttributeSet::Basic).columns().len(), basic);
        }
    }

    #[test]
    fn names_are_unique_and_invoice_columns_exist() {
        for d in Dataset::ALL {
            for set in [AttributeSet::Full, AttributeSet::Basic] {
                let s = Schema::new(d, set);
                let mut names: Vec<_> = s.names().map(str::to_ascii_lowercase).collect();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), s.columns().len());
                let (ccy, amounts) = s.invoice_amounts();
                assert!(s.index_of(ccy).is_some() && s.index_of("CustomerId").is_some());
                for a in amounts {
                    assert_eq!(s.columns()[s.index_of(a).unwrap()].ty, ColumnType::Decimal);
                }
            }
        }
    }
}
