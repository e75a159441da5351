//! docs/schema.md and docs/focus.md, generated from the tables in code so they cannot drift
//! (tests/docs.rs compares the files with these functions).

use std::fmt::Write;

use crate::convert::{FOCUS_UNKNOWN_PREFIX, LATE_UNKNOWN_COLUMN};
use crate::focus::{FOCUS_COLUMNS, FOCUS_VERSION};
use crate::schema::{ColumnType, Dataset, Schema};

const REGENERATE: &str = "UPDATE_DOCS=1 cargo test -p billing-columnar --test docs";

/// The text of docs/schema.md.
pub fn schema_markdown() -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "# Typed Parquet schema of the partner billing exports\n\n\
         <!-- Generated from crates/billing-columnar/src/schema.rs; do not edit. \
         Regenerate: `{REGENERATE}` -->\n\n\
         `billing-columnar` converts Microsoft's gzip JSON Lines partitions (docs/graph-api.md §4) \
         into zstd Parquet with these columns, in this order. Billed and unbilled exports share \
         their columns; `basic` carries the rows marked yes.\n\n\
         Rules for every column:\n\n\
         - Every column is OPTIONAL: a missing key or `null` is null.\n\
         - Keys are matched exactly, then ASCII case-insensitively (Microsoft spells \
         `BenefitId` / `BenefitID` both ways).\n\
         - Typed columns accept the JSON type or a string holding it (`\"12.5\"`); an empty \
         string is null. Anything else is an error naming the line and the column.\n\
         - Decimals are DECIMAL({p},{sc}) (16-byte FIXED_LEN_BYTE_ARRAY), parsed from the JSON \
         text without floating point (exponents allowed). Digits past {sc} places, as in a .NET \
         double printed with 17 significant digits (`3.5999999999999998E-06`), are rounded half \
         to even and counted in the report (`rounded_values`); more than 38 significant digits, \
         or a value of 10^{int} or more, is an error. Why {sc} places: docs/parquet.md. Sums in the \
         report are exact sums of the stored values (i128).\n\
         - Timestamps are TIMESTAMP(MICROS, UTC); a missing zone means UTC (Microsoft writes `Z`), \
         offsets are normalised, digits below a microsecond (.NET writes 7) are truncated.\n\
         - Dates are DATE; a time part is accepted only at midnight.\n\
         - Integers are INT64, for values that are whole by definition; a fraction is an error.\n\
         - Keys not in the schema are never dropped: those seen in the first row group become \
         STRING columns after the known ones; keys first seen later go into the last column, \
         `{LATE_UNKNOWN_COLUMN}`, a JSON object of those keys with their values as written. \
         The conversion report lists both kinds.\n\
         - Input is treated as hostile: lines are limited (1 MiB by default), so is the number \
         of distinct columns (512), nesting inside a value (64), and a key twice in a row is an \
         error. Nested objects or arrays in a string column are kept as their JSON text; raw \
         control characters inside strings (invalid JSON, harmless here) are kept as is.\n\
         - Row groups of 65,536 rows; chunk min/max statistics on every column (strings up to \
         64 bytes); dictionaries chosen per row group (docs/parquet.md).\n\
         - Key-value metadata: `billing_columnar.view` (`typed`), `billing_columnar.dataset`, \
         `billing_columnar.attribute_set`, `billing_columnar.unknown_columns`.\n",
        p = crate::DECIMAL_PRECISION,
        sc = crate::DECIMAL_SCALE,
        int = crate::DECIMAL_PRECISION - crate::DECIMAL_SCALE,
    );
    for d in Dataset::ALL {
        let all = Schema::all_columns(d);
        let basic = all.iter().filter(|c| c.basic).count();
        let _ = write!(
            s,
            "\n## {} exports ({} columns in `full`, {} in `basic`)\n\n\
             | # | Column | Type | in `basic` | Why |\n|---:|---|---|:---:|---|\n",
            match d {
                Dataset::Usage => "Usage",
                Dataset::Reconciliation => "Reconciliation",
            },
            all.len(),
            basic
        );
        for (i, c) in all.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {} | {} |",
                i + 1,
                c.name,
                c.ty.describe(),
                if c.basic { "yes" } else { "no" },
                c.note
            );
        }
    }
    s
}

/// The text of docs/focus.md.
pub fn focus_markdown() -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "# FOCUS view of the partner billing exports\n\n\
         <!-- Generated from crates/billing-columnar/src/focus.rs; do not edit. \
         Regenerate: `{REGENERATE}` -->\n\n\
         `billing-columnar` can write, in the same pass as the typed Parquet (docs/schema.md), a \
         Parquet file aligned with **FOCUS {FOCUS_VERSION}** (FinOps Open Cost and Usage \
         Specification); the file's key-value metadata says `focus_version` = `{FOCUS_VERSION}`. \
         One row per Partner Center row, plus, in reconciliation, a `Tax` row (ChargeCategory \
         `Tax`, BilledCost = `TaxTotal`) after each row with tax, so that BilledCost per \
         InvoiceId adds up to the invoice, tax included, as FOCUS requires. Without the Tax rows \
         (`ChargeCategory <> 'Tax'`), sums of `BilledCost` equal the source sums \
         (`BillingPreTaxTotal` for usage, `Subtotal` for reconciliation). A Tax row repeats its \
         charge's columns except the amounts (its tax), the price, quantity, SKU and commitment \
         columns (null) and `x_BilledTax`/`x_BilledTotal` (null: the charge's row has them); \
         its PricingCurrencyEffectiveCost is the tax ÷ `PCToBCExchangeRate`.\n\n\
         Conventions:\n\n\
         - Costs and prices are DECIMAL(38,12) (docs/parquet.md); products (`×`) are exact \
         products rounded half away from zero to 12 places. Microsoft rounds its own totals differently (ROUNDDOWN to \
         cents), so derived costs are approximations; BilledCost is Microsoft's amount as is.\n\
         - Period columns are TIMESTAMP(MICROS, UTC); ends are exclusive (midnight after the \
         last day).\n\
         - Empty strings become null. A source column absent from the export (`basic`) gives \
         null.\n\
         - Partner Center specifics are `x_` extension columns. Unknown keys of the source \
         become `{FOCUS_UNKNOWN_PREFIX}<Key>` columns and `{LATE_UNKNOWN_COLUMN}` as in the typed \
         view.\n\
         - Columns the exports cannot fill are present and null (AvailabilityZone, \
         CapacityReservationId/Status, CommitmentDiscountName, SkuPriceDetails), so readers \
         and the validator find every column Microsoft's platform supports. The exports cannot \
         tell which charges use a capacity reservation, so the validator is not told the \
         platform supports them (docs/focus.md, MUST rules the validator skips).\n\
         - Extension columns carry the names of Microsoft's own FOCUS exports and of FinOps \
         hubs' `Costs_raw` table where Microsoft has one (`x_CustomerId`, `x_ResellerId`, \
         `x_BillingExchangeRate`, `x_PartnerCreditApplied`, `x_SkuMeterId`, \
         `x_ResourceGroupName`, …), so hubs keeps them; Partner Center columns Microsoft has no \
         name for keep theirs (`x_ChargeType`, `x_CreditType`, `x_MpnId`, `x_OrderId`, \
         `x_SubscriptionId`, …). `x_SourceName`/`x_SourceType` name the export kind.\n\
         - SubAccount is the subscription, as in Microsoft's exports (usage: the Azure \
         subscription, `EntitlementId`; reconciliation: Partner Center's billing subscription); \
         the customer is `x_CustomerId`/`x_CustomerName`.\n\
         - Where FOCUS and Microsoft's own mapping differ, the view follows FOCUS: `ChargeClass` is \
         `Correction` only for reversals of an earlier billing period (Microsoft: every \
         refund); units are in FOCUS's unit format (`GB-Months` for Microsoft's \
         `1 GB/Month`).\n\
         - Commitments: reservation and savings-plan purchases have EffectiveCost 0 and usage a \
         commitment covers is `Committed` with the purchase's order id. Partner Center's usage \
         carries no amortised cost (covered usage is priced 0), so the commitment's cost is in \
         the purchase's BilledCost only; amortising it needs the purchase and the usage \
         together, which a single export does not have.\n\
         - BillingPeriodStart/End: the pipeline passes the run's billing month, the invoice's \
         (billed) or the export's (unbilled). Billed exports serve new-commerce invoices only \
         (`G…` ids; Microsoft answers others with \"no reconciliation data\"), and a \
         new-commerce invoice bills a calendar month, so the period is the invoice's; latent \
         usage and refunds of earlier months stay in the period that invoices them.\n\n\
         | FOCUS column | Type | Usage (billed/unbilled) | Reconciliation (billed/unbilled) | Note |\n\
         |---|---|---|---|---|\n"
    );
    for c in FOCUS_COLUMNS {
        let ty = match c.ty {
            ColumnType::Decimal => "Decimal",
            ColumnType::Timestamp => "Date/Time",
            ColumnType::Integer => "Integer",
            _ => "String",
        };
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            c.name, ty, c.usage, c.reconciliation, c.note
        );
    }
    // Written by the validator test (tests/focus_validator.rs) with UPDATE_DOCS=1.
    s.push('\n');
    s.push_str(include_str!("focus_validator_skips.md"));
    s
}
