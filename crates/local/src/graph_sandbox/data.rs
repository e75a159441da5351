//! Deterministic partition data: gzip-compressed JSON Lines whose keys are the attribute lists
//! of docs/graph-api.md §4.
//!
//! Everything is derived from a self-contained PRNG seeded from the sandbox seed, the export and
//! the partition index, so the same seed and request always give byte-identical blobs (no wall
//! clock, no gzip mtime, fixed compression level). Each row draws the same random values in the
//! same order whatever the attribute set, so a `basic` row is the projection of the `full` row.
//!
//! Usage rows are Azure meters only (daily-rated usage leaves licences, reservations and the
//! like out). Reconciliation exports draw licence rows and end, in their last partition, with
//! the Azure lines: the same scope's usage aggregated per customer and product, priced as
//! Microsoft prices usage-based lines, so billed usage adds up to the invoice's Azure lines.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use serde_json::{json, Value};
use time::{Date, Duration, Month};
use uuid::Uuid;

use partner_billing_export::billing::types::{AttributeSet, ExportKind};

mod reservation;

/// The column keys an export of `kind` with `set` carries, in file order. The lists live in
/// `billing-columnar` (docs/graph-api.md §4, docs/schema.md) so the sandbox writes exactly the
/// columns the converter types.
pub fn columns(kind: ExportKind, set: AttributeSet) -> Vec<&'static str> {
    partner_billing_export::pipeline::derived::schema(kind, set)
        .names()
        .collect()
}

/// splitmix64: tiny, well-distributed and stable across platforms and crate versions, which is
/// all determinism needs (this is test data, not cryptography).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one purpose, derived from the sandbox seed and a label.
    pub fn derived(seed: u64, label: &str) -> Self {
        Self(seed ^ stable_hash(label.as_bytes()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant for test data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[lo, hi)`.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + unit * (hi - lo)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A random (version 4 shaped) UUID from this generator.
    pub fn uuid(&mut self) -> Uuid {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(b).into_uuid()
    }

    pub fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// FNV-1a: a hash that, unlike `std`'s `DefaultHasher`, is promised never to change.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// What every row of one export shares.
#[derive(Debug, Clone)]
pub struct ExportFacts {
    pub kind: ExportKind,
    pub attribute_set: AttributeSet,
    pub seed: u64,
    /// Stable identity of the request (`ExportRequest::key`), mixed into every generator.
    pub export_key: String,
    pub partner_tenant_id: Uuid,
    pub partner_name: String,
    pub mpn_id: String,
    /// The invoice for billed exports; empty for unbilled ones (as in real unbilled files).
    pub invoice_number: String,
    pub currency: String,
    /// First and last day of the billing month the data covers.
    pub period_start: Date,
    pub period_end: Date,
    /// For reconciliation: the usage export of the same scope whose rows become the Azure
    /// lines of the last partition.
    pub azure_usage: Option<Box<UsageSource>>,
    /// For reconciliation: end the last partition with a reservation purchase.
    pub reservation_purchase: bool,
}

/// The usage export a reconciliation export's Azure lines aggregate.
#[derive(Debug, Clone)]
pub struct UsageSource {
    pub facts: ExportFacts,
    pub partitions: u32,
    pub rows_per_partition: u32,
    /// Leave the last line out (an invoice whose Azure lines miss some usage).
    pub omit_last_line: bool,
}

/// One generated partition.
#[derive(Debug, Clone)]
pub struct Partition {
    pub gzip: Bytes,
    pub rows: u32,
}

struct Customer {
    id: Uuid,
    name: &'static str,
    domain: String,
    country: &'static str,
}

struct Product {
    product_id: &'static str,
    sku_id: &'static str,
    name: &'static str,
    sku_name: &'static str,
    publisher: &'static str,
    meter_category: &'static str,
    meter_sub_category: &'static str,
    meter_name: &'static str,
    unit: &'static str,
    consumed_service: &'static str,
    unit_price_usd: f64,
    category: &'static str,
}

const CUSTOMER_NAMES: &[(&str, &str)] = &[
    ("Contoso Ltd", "US"),
    ("Fabrikam Inc", "US"),
    ("Northwind Traders", "GB"),
    ("Tailspin Toys", "DE"),
    ("Woodgrove Bank", "FR"),
    ("Adventure Works Cycles", "NL"),
    ("Wide World Importers", "IN"),
    ("Litware Inc", "AU"),
];

const PRODUCTS: &[Product] = &[
    Product {
        product_id: "DZH318Z0BQ3Q",
        sku_id: "0007",
        name: "Virtual Machines Dv3 Series",
        sku_name: "D2 v3",
        publisher: "Microsoft",
        meter_category: "Virtual Machines",
        meter_sub_category: "Dv3/DSv3 Series",
        meter_name: "D2 v3/D2s v3",
        unit: "1 Hour",
        consumed_service: "Microsoft.Compute",
        unit_price_usd: 0.096,
        category: "Azure",
    },
    Product {
        product_id: "DZH318Z0BNZJ",
        sku_id: "004N",
        name: "Storage",
        sku_name: "Hot LRS",
        publisher: "Microsoft",
        meter_category: "Storage",
        meter_sub_category: "General Block Blob v2",
        meter_name: "Hot LRS Data Stored",
        unit: "1 GB/Month",
        consumed_service: "Microsoft.Storage",
        unit_price_usd: 0.0184,
        category: "Azure",
    },
    Product {
        product_id: "DZH318Z0BP88",
        sku_id: "0031",
        name: "Bandwidth",
        sku_name: "Standard",
        publisher: "Microsoft",
        meter_category: "Bandwidth",
        meter_sub_category: "Inter-Region",
        meter_name: "Intra Continent Data Transfer Out",
        unit: "1 GB",
        consumed_service: "Microsoft.Network",
        unit_price_usd: 0.02,
        category: "Azure",
    },
    Product {
        product_id: "DZH318Z0BQ4D",
        sku_id: "0012",
        name: "SQL Database Single/Elastic Pool General Purpose - Compute Gen5",
        sku_name: "2 vCore",
        publisher: "Microsoft",
        meter_category: "SQL Database",
        meter_sub_category: "Single/Elastic Pool General Purpose - Compute Gen5",
        meter_name: "vCore",
        unit: "1 Hour",
        consumed_service: "Microsoft.Sql",
        unit_price_usd: 0.2529,
        category: "Azure",
    },
    Product {
        product_id: "CFQ7TTC0LH18",
        sku_id: "0001",
        name: "Microsoft 365 Business Basic",
        sku_name: "Microsoft 365 Business Basic",
        publisher: "Microsoft Corporation",
        meter_category: "Office",
        meter_sub_category: "Licences",
        meter_name: "Seat",
        unit: "1 Licence",
        consumed_service: "Microsoft.Office",
        unit_price_usd: 6.0,
        category: "OnlineServicesNCE",
    },
];

const REGIONS: &[&str] = &[
    "westeurope",
    "eastus2",
    "northeurope",
    "uksouth",
    "centralindia",
];
const CHARGE_TYPES_USAGE: &[&str] = &["new", "new", "new", "refund"];
const CHARGE_TYPES_RECON: &[&str] = &["New", "Renew", "Cycle charge", "Add quantity"];

/// `x` rounded to `places` decimals, as a JSON number.
fn money(x: f64, places: i32) -> Value {
    let f = 10f64.powi(places);
    json!((x * f).round() / f)
}

fn iso_midnight(d: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}T00:00:00Z",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// Price of one US dollar in `ccy` (`PCToBCExchangeRate`); roughly real, fixed for determinism.
fn usd_rate(ccy: &str) -> f64 {
    match ccy {
        "USD" => 1.0,
        "EUR" => 0.9213,
        "GBP" => 0.7894,
        "INR" => 83.1207,
        "JPY" => 151.37,
        "AUD" => 1.5262,
        "CAD" => 1.3604,
        other => 1.0 + (stable_hash(other.as_bytes()) % 500) as f64 / 100.0,
    }
}

/// Builds one partition: `rows` lines of flat JSON objects (plus, in the `last` partition of a
/// reconciliation export, its Azure lines and reservation), gzip'd with a fixed header.
pub fn generate_partition(facts: &ExportFacts, index: u32, rows: u32, last: bool) -> Partition {
    let cols = columns(facts.kind, facts.attribute_set);
    // Customers are shared by all exports of a seed, as a partner's customer base would be.
    let customers = customers(facts.seed);
    let mut rng = partition_rng(facts, index);
    let mut text = String::with_capacity(rows as usize * cols.len() * 40);
    for _ in 0..rows {
        write_line(&mut text, &cols, &draw_row(facts, &customers, &mut rng));
    }
    let mut closing = match facts.azure_usage.as_deref().filter(|_| last) {
        Some(usage) => azure_lines(facts, usage, &customers),
        None => vec![],
    };
    closing.extend(reservation::purchase(facts, &customers).filter(|_| last));
    for line in &closing {
        write_line(&mut text, &cols, line);
    }
    Partition {
        gzip: gzip(text.as_bytes()),
        rows: rows + closing.len() as u32,
    }
}

/// One JSON line with `cols` in order (absent values as null).
fn write_line(text: &mut String, cols: &[&str], row: &serde_json::Map<String, Value>) {
    text.push('{');
    for (i, col) in cols.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push('"');
        text.push_str(col);
        text.push_str("\":");
        let v = row.get(*col).unwrap_or(&Value::Null);
        text.push_str(&v.to_string());
    }
    text.push_str("}\n");
}

fn partition_rng(facts: &ExportFacts, index: u32) -> Rng {
    Rng::derived(
        facts.seed,
        &format!("{}#partition-{index}", facts.export_key),
    )
}

/// The usage of `usage` aggregated per customer and product into reconciliation lines of
/// `facts`' export. A usage-based line's `Subtotal` is
/// `ROUNDDOWN(ROUNDDOWN(EffectiveUnitPrice * BillableQuantity, 2) * PCToBCExchangeRate, 2)`
/// (learn.microsoft.com, partner-center/billing/modern-invoice-reconciliation-file), so each
/// line may be a little short of its usage, as on real invoices.
fn azure_lines(
    facts: &ExportFacts,
    usage: &UsageSource,
    customers: &[Customer],
) -> Vec<serde_json::Map<String, Value>> {
    // (customer index, product index) -> (Σ quantity, Σ pricing total)
    let mut groups: std::collections::BTreeMap<(usize, usize), (f64, f64)> = Default::default();
    for index in 0..usage.partitions {
        let mut rng = partition_rng(&usage.facts, index);
        for _ in 0..usage.rows_per_partition {
            let d = draw(&usage.facts, customers, &mut rng);
            let g = groups.entry((d.customer, d.product)).or_default();
            g.0 += d.quantity * d.sign;
            g.1 += d.pricing_total;
        }
    }
    if usage.omit_last_line {
        groups.pop_last();
    }
    let rate = usd_rate(&facts.currency);
    let mut rng = Rng::derived(facts.seed, &format!("{}#azure-lines", facts.export_key));
    groups
        .into_iter()
        .map(|((ci, pi), (quantity, pricing_total))| {
            let mut row = draw_row(facts, customers, &mut rng);
            let (c, p) = (&customers[ci], &PRODUCTS[pi]);
            let subtotal = round_down(round_down(pricing_total, 2) * rate, 2);
            let tax = (subtotal * 0.19 * 100.0).round() / 100.0;
            let effective = if quantity == 0.0 {
                0.0
            } else {
                pricing_total / quantity
            };
            let mut put = |k: &str, v: Value| {
                row.insert(k.to_string(), v);
            };
            put("CustomerId", json!(c.id.to_string()));
            put("CustomerName", json!(c.name));
            put("CustomerDomainName", json!(c.domain));
            put("CustomerCountry", json!(c.country));
            put_product(&mut row, p);
            let mut put = |k: &str, v: Value| {
                row.insert(k.to_string(), v);
            };
            put("ChargeType", json!("New"));
            put("UnitType", json!(p.unit));
            put("TermAndBillingCycle", json!("None"));
            put("UnitPrice", money(p.unit_price_usd, 6));
            put("EffectiveUnitPrice", money(effective, 6));
            // Whole units in reconciliation; the usage is in BillableQuantity.
            put("Quantity", json!(1));
            put("BillableQuantity", money(quantity, 6));
            put("PCToBCExchangeRate", money(rate, 4));
            put("Subtotal", money(subtotal, 2));
            put("TaxTotal", money(tax, 2));
            put("Total", money(subtotal + tax, 2));
            put("Currency", json!(facts.currency));
            row
        })
        .collect()
}

/// Excel's ROUNDDOWN: towards zero, to `places` decimals (a hair of slack for binary floats).
fn round_down(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f + x.signum() * 1e-6).trunc() / f
}

/// Gzip with mtime 0, no file name and level 6, so output depends only on the input.
pub fn gzip(data: &[u8]) -> Bytes {
    let mut enc: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(6));
    enc.write_all(data).expect("writing to a Vec cannot fail");
    Bytes::from(enc.finish().expect("writing to a Vec cannot fail"))
}

fn customers(seed: u64) -> Vec<Customer> {
    let mut rng = Rng::derived(seed, "customers");
    CUSTOMER_NAMES
        .iter()
        .map(|(name, country)| {
            let id = rng.uuid();
            let slug: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            Customer {
                id,
                name,
                domain: format!("{slug}.onmicrosoft.com"),
                country,
            }
        })
        .collect()
}

/// Every random value of one row, drawn in a fixed order (so a generator stays in step with
/// the served rows whether or not the row is written out).
struct Draw {
    customer: usize,
    product: usize,
    quantity: f64,
    /// -1 for refunds.
    sign: f64,
    pricing_total: f64,
    subscription_id: Uuid,
    entitlement_id: Uuid,
    meter_id: Uuid,
    order_id: String,
    reference_id: Uuid,
    region: &'static str,
    day: Date,
    charge_recon: &'static str,
    rg_digits: String,
    tier2: String,
    tax_rate: f64,
    sub_start: Date,
}

/// Usage rows are Azure meters; reconciliation rows drawn here are licences (its Azure
/// lines come from aggregated usage).
fn is_choice(kind: ExportKind, p: &Product) -> bool {
    (p.category == "Azure") == kind.is_usage()
}

/// Draws one row's values.
fn draw(facts: &ExportFacts, customers: &[Customer], rng: &mut Rng) -> Draw {
    let customer = rng.below(customers.len() as u64) as usize;
    let choices = PRODUCTS.iter().filter(|p| is_choice(facts.kind, p)).count();
    let k = rng.below(choices as u64) as usize;
    let product = (0..PRODUCTS.len())
        .filter(|&i| is_choice(facts.kind, &PRODUCTS[i]))
        .nth(k)
        .expect("k < choices");
    let quantity = rng.between(0.01, 48.0);
    let discount = *rng.pick(&[0.0, 0.0, 0.05, 0.15]);
    let refund = *rng.pick(CHARGE_TYPES_USAGE) == "refund";
    let sign = if refund { -1.0 } else { 1.0 };
    let effective = PRODUCTS[product].unit_price_usd * (1.0 - discount);
    let subscription_id = rng.uuid();
    let entitlement_id = rng.uuid();
    let meter_id = rng.uuid();
    let order_id = rng.digits(12);
    let reference_id = rng.uuid();
    let region = *rng.pick(REGIONS);
    let days_in_period = (facts.period_end - facts.period_start).whole_days().max(0);
    let day = facts.period_start + Duration::days(rng.below(days_in_period as u64 + 1) as i64);
    let charge_recon = *rng.pick(CHARGE_TYPES_RECON);
    let rg_digits = rng.digits(2);
    let tier2 = rng.digits(7);
    let tax_rate = *rng.pick(&[0.0, 0.07, 0.19, 0.2]);
    let sub_start = facts.period_start - Duration::days(rng.below(400) as i64);
    Draw {
        customer,
        product,
        quantity,
        sign,
        pricing_total: sign * effective * quantity,
        subscription_id,
        entitlement_id,
        meter_id,
        order_id,
        reference_id,
        region,
        day,
        charge_recon,
        rg_digits,
        tier2,
        tax_rate,
        sub_start,
    }
}

/// Draws one row and maps its values to column keys.
fn draw_row(
    facts: &ExportFacts,
    customers: &[Customer],
    rng: &mut Rng,
) -> serde_json::Map<String, Value> {
    let d = draw(facts, customers, rng);
    let c = &customers[d.customer];
    let p = &PRODUCTS[d.product];
    let Draw {
        subscription_id,
        entitlement_id,
        meter_id,
        reference_id,
        region,
        day,
        charge_recon,
        tax_rate,
        sub_start,
        ..
    } = d;
    let (order_id, tier2) = (&d.order_id, &d.tier2);
    let quantity = d.quantity;
    let charge_usage = if d.sign < 0.0 { "refund" } else { "new" };
    let rg = format!(
        "rg-{}-{}",
        c.name.split(' ').next().unwrap_or("app"),
        d.rg_digits
    )
    .to_ascii_lowercase();

    let rate = usd_rate(&facts.currency);
    let unit_price = p.unit_price_usd;
    let pricing_total = d.pricing_total;
    let effective = if quantity == 0.0 {
        0.0
    } else {
        (pricing_total / quantity).abs()
    };
    let billing_total = pricing_total * rate;
    let subtotal = billing_total;
    let tax = subtotal * tax_rate;
    let resource_uri = format!(
        "/subscriptions/{subscription_id}/resourceGroups/{rg}/providers/{}/{}",
        p.consumed_service,
        p.meter_category.replace(' ', "").to_ascii_lowercase()
    );
    let charge_start = facts.period_start;
    let charge_end = facts.period_end;
    let usage = facts.kind.is_usage();

    let mut row = serde_json::Map::new();
    let m = &mut row;
    put_parties(m, facts, c, tier2);
    put(m, "SubscriptionId", json!(subscription_id.to_string()));
    put(m, "ChargeStartDate", json!(iso_midnight(charge_start)));
    put(m, "ChargeEndDate", json!(iso_midnight(charge_end)));
    put(m, "UnitPrice", money(unit_price, 6));
    put(m, "EffectiveUnitPrice", money(effective, 6));
    put(m, "PricingCurrency", json!("USD"));
    put(m, "PCToBCExchangeRate", money(rate, 4));
    put(
        m,
        "PCToBCExchangeRateDate",
        json!(iso_midnight(charge_start)),
    );
    put(
        m,
        "UnitType",
        json!(if usage { "1 Hour" } else { "Licenses" }),
    );
    put_no_credit(m);
    if usage {
        put(m, "ChargeType", json!(charge_usage));
        put(m, "Quantity", money(quantity, 6));
    } else {
        put(m, "ChargeType", json!(charge_recon));
        put(m, "Quantity", money(quantity.ceil(), 0));
    }
    put(m, "BillingCurrency", json!(facts.currency));
    put(m, "BillingPreTaxTotal", money(billing_total, 6));
    put(m, "PricingPreTaxTotal", money(pricing_total, 6));
    put(m, "EntitlementId", json!(entitlement_id.to_string()));
    put(
        m,
        "EntitlementDescription",
        json!(format!("Azure plan for {}", c.name)),
    );
    put(m, "MeterId", json!(meter_id.to_string()));
    put(m, "MeterRegion", json!(region));
    put(m, "ResourceGroup", json!(rg));
    put(m, "ResourceLocation", json!(region));
    put(m, "ResourceURI", json!(resource_uri));
    put(m, "ServiceInfo1", json!(""));
    put(m, "ServiceInfo2", json!(""));
    put(m, "Tags", json!(""));
    put(m, "UsageDate", json!(iso_midnight(day)));
    put(m, "OrderId", json!(order_id));
    put(m, "OrderDate", json!(iso_midnight(sub_start)));
    put(m, "Subtotal", money(subtotal, 2));
    put(m, "TaxTotal", money(tax, 2));
    put(m, "Total", money(subtotal + tax, 2));
    put(m, "Currency", json!(facts.currency));
    put_terms(m, quantity, &reference_id, sub_start);
    put_product(m, p);
    row
}

/// Inserts column `k`; the map keeps insertion order, which is the file's column order.
fn put(m: &mut serde_json::Map<String, Value>, k: &str, v: Value) {
    m.insert(k.to_string(), v);
}

/// The partner, customer and invoice columns.
fn put_parties(
    m: &mut serde_json::Map<String, Value>,
    facts: &ExportFacts,
    c: &Customer,
    tier2: &str,
) {
    put(m, "PartnerId", json!(facts.partner_tenant_id.to_string()));
    put(m, "PartnerName", json!(facts.partner_name));
    put(m, "MpnId", json!(facts.mpn_id));
    put(m, "Tier2MpnId", json!(tier2));
    put(m, "CustomerId", json!(c.id.to_string()));
    put(m, "CustomerName", json!(c.name));
    put(m, "CustomerDomainName", json!(c.domain));
    put(m, "CustomerCountry", json!(c.country));
    put(m, "InvoiceNumber", json!(facts.invoice_number));
    put(m, "PublisherId", json!(""));
    put(
        m,
        "SubscriptionDescription",
        json!(format!("{} subscription", c.name)),
    );
}

/// The benefit and credit columns: no benefit, no credit.
fn put_no_credit(m: &mut serde_json::Map<String, Value>) {
    put(m, "AdditionalInfo", json!(""));
    put(m, "BenefitID", json!(""));
    put(m, "BenefitOrderID", json!(""));
    put(m, "BenefitType", json!(""));
    put(m, "CreditPercentage", json!(0));
    put(m, "CreditType", json!("Credit Not Applied"));
    put(m, "PartnerEarnedCreditPercentage", json!(0));
}

/// The billing terms, subscription dates and references.
fn put_terms(
    m: &mut serde_json::Map<String, Value>,
    quantity: f64,
    reference_id: &Uuid,
    sub_start: Date,
) {
    put(m, "PriceAdjustmentDescription", json!(""));
    put(m, "TermAndBillingCycle", json!("1 Month Subscription"));
    put(m, "BillableQuantity", money(quantity, 6));
    put(m, "BillingFrequency", json!("Monthly"));
    put(m, "AlternateId", json!(rng_hex(reference_id)));
    put(m, "ReservationOrderId", json!(""));
    put(m, "CreditReasonCode", json!(""));
    put(m, "SubscriptionStartDate", json!(iso_midnight(sub_start)));
    put(
        m,
        "SubscriptionEndDate",
        json!(iso_midnight(sub_start + Duration::days(365))),
    );
    put(m, "ReferenceId", json!(reference_id.to_string()));
    put(m, "ProductQualifiers", json!("[]"));
    put(m, "PromotionId", json!(""));
}

/// The columns that name the product (and its meter).
fn put_product(m: &mut serde_json::Map<String, Value>, p: &Product) {
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("ProductId", json!(p.product_id));
    put("SkuId", json!(p.sku_id));
    put(
        "AvailabilityId",
        json!(format!("DZH318Z0{}", &p.product_id[8..])),
    );
    put("SkuName", json!(p.sku_name));
    put("ProductName", json!(p.name));
    put("PublisherName", json!(p.publisher));
    put("MeterCategory", json!(p.meter_category));
    put("MeterSubCategory", json!(p.meter_sub_category));
    put("MeterName", json!(p.meter_name));
    put("MeterType", json!(p.unit));
    put("MeterDescription", json!(p.meter_name));
    put("ConsumedService", json!(p.consumed_service));
    put("Unit", json!(p.unit));
    put("ProductCategory", json!(p.category));
}

fn rng_hex(id: &Uuid) -> String {
    id.simple().to_string()[..12].to_string()
}

/// First and last day of the month containing `d`.
pub fn month_bounds(d: Date) -> (Date, Date) {
    let first = d.replace_day(1).expect("day 1 exists");
    let next = add_months(first, 1);
    (first, next - Duration::days(1))
}

/// `d` moved by `n` months, clamped to day 1 (only used on first-of-month dates).
pub fn add_months(d: Date, n: i32) -> Date {
    let total = d.year() * 12 + (u8::from(d.month()) as i32 - 1) + n;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    Date::from_calendar_date(y, Month::try_from(m as u8).expect("1..=12"), 1)
        .expect("first of month exists")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn facts(kind: ExportKind, set: AttributeSet) -> ExportFacts {
        ExportFacts {
            kind,
            attribute_set: set,
            seed: 7,
            export_key: format!("{kind}/x/{set}"),
            partner_tenant_id: Uuid::nil(),
            partner_name: "Sandbox Partner".into(),
            mpn_id: "1234567".into(),
            invoice_number: "G000000001".into(),
            currency: "EUR".into(),
            period_start: time::macros::date!(2026 - 01 - 01),
            period_end: time::macros::date!(2026 - 01 - 31),
            azure_usage: None,
            reservation_purchase: false,
        }
    }

    #[test]
    fn attribute_lists_have_the_documented_sizes() {
        for k in ExportKind::ALL {
            let (full, basic) = if k.is_usage() { (54, 30) } else { (47, 35) };
            assert_eq!(columns(k, AttributeSet::Full).len(), full, "{k} full");
            assert_eq!(columns(k, AttributeSet::Basic).len(), basic, "{k} basic");
        }
    }

    #[test]
    fn every_column_has_a_value() {
        let f = facts(ExportKind::BilledUsage, AttributeSet::Full);
        let mut rng = Rng::new(1);
        let row = draw_row(&f, &customers(1), &mut rng);
        for k in [ExportKind::BilledUsage, ExportKind::BilledReconciliation] {
            for c in columns(k, AttributeSet::Full) {
                assert!(row.contains_key(c), "{c} missing");
            }
        }
    }

    #[test]
    fn partitions_are_deterministic_and_parse() {
        let f = facts(ExportKind::BilledReconciliation, AttributeSet::Basic);
        let a = generate_partition(&f, 0, 25, false);
        let b = generate_partition(&f, 0, 25, false);
        assert_eq!(a.gzip, b.gzip);
        assert_ne!(a.gzip, generate_partition(&f, 1, 25, false).gzip);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&a.gzip[..])
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 25);
        let obj: serde_json::Map<String, Value> = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(obj.len(), 35);
        assert_eq!(obj["InvoiceNumber"], "G000000001");
        assert_eq!(obj["Currency"], "EUR");
    }

    #[test]
    fn months_roll_over_years() {
        use time::macros::date;
        assert_eq!(add_months(date!(2026 - 01 - 01), -1), date!(2025 - 12 - 01));
        assert_eq!(
            month_bounds(date!(2024 - 02 - 10)),
            (date!(2024 - 02 - 01), date!(2024 - 02 - 29))
        );
    }
}
