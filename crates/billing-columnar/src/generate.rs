//! Deterministic, real-shaped partitions (uncompressed JSON Lines) for tests and benchmarks.
//!
//! Values look like Microsoft's: GUIDs, long resource URIs, JSON text with escaped quotes in
//! `AdditionalInfo`/`Tags`, prices with many decimals. With `edge_cases`, rows also carry
//! numbers given as strings, exponents, negative amounts, nulls, missing keys, an unknown key
//! from the first row and another from row `late_unknown_from`, and non-ASCII text both raw
//! and `\u`-escaped. With `dotnet_doubles`, amounts, prices and quantities are printed the way
//! .NET prints a double with 17 significant digits (`0.10000000000000001`,
//! `3.5999999999999998E-06`), over a wider range of magnitudes.

use std::io::{self, Write};

use crate::calendar::civil_from_days;
use crate::schema::{AttributeSet, Dataset, Schema};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub dataset: Dataset,
    pub attribute_set: AttributeSet,
    pub rows: u64,
    pub seed: u64,
    pub edge_cases: bool,
    /// With `edge_cases`: the row from which the late unknown key `LateExtra` appears.
    pub late_unknown_from: u64,
    /// Decimals as .NET doubles (`G17`), exponents included.
    pub dotnet_doubles: bool,
}

impl GeneratorConfig {
    /// A full billed-usage partition of `rows` rows, no edge cases.
    pub fn usage(rows: u64, seed: u64) -> Self {
        Self {
            dataset: Dataset::Usage,
            attribute_set: AttributeSet::Full,
            rows,
            seed,
            edge_cases: false,
            late_unknown_from: u64::MAX,
            dotnet_doubles: false,
        }
    }
}

/// splitmix64 (stable across platforms; this is test data).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn guid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

struct Product {
    product: &'static str,
    sku: &'static str,
    name: &'static str,
    meter_category: &'static str,
    meter_sub: &'static str,
    meter_name: &'static str,
    service: &'static str,
    unit: &'static str,
    /// Price in millionths of a dollar.
    price_micros: u64,
}

const PRODUCTS: &[Product] = &[
    Product {
        product: "DZH318Z0BQ3Q",
        sku: "0007",
        name: "Virtual Machines Dv3 Series",
        meter_category: "Virtual Machines",
        meter_sub: "Dv3/DSv3 Series",
        meter_name: "D2 v3/D2s v3",
        service: "Microsoft.Compute",
        unit: "1 Hour",
        price_micros: 96_000,
    },
    Product {
        product: "DZH318Z0BNZJ",
        sku: "004N",
        name: "Storage",
        meter_category: "Storage",
        meter_sub: "General Block Blob v2",
        meter_name: "Hot LRS Data Stored",
        service: "Microsoft.Storage",
        unit: "1 GB/Month",
        price_micros: 18_400,
    },
    Product {
        product: "DZH318Z0BP88",
        sku: "0031",
        name: "Bandwidth",
        meter_category: "Bandwidth",
        meter_sub: "Inter-Region",
        meter_name: "Intra Continent Data Transfer Out",
        service: "Microsoft.Network",
        unit: "1 GB",
        price_micros: 20_000,
    },
    Product {
        product: "DZH318Z0BQ4D",
        sku: "0012",
        name: "SQL Database Single/Elastic Pool General Purpose - Compute Gen5",
        meter_category: "SQL Database",
        meter_sub: "Single/Elastic Pool General Purpose - Compute Gen5",
        meter_name: "vCore",
        service: "Microsoft.Sql",
        unit: "1 Hour",
        price_micros: 252_900,
    },
    Product {
        product: "DZH318Z0BQ3Q",
        sku: "00HT",
        name: "Virtual Machines Dv3 Series",
        meter_category: "Virtual Machines",
        meter_sub: "Dv3/DSv3 Series",
        meter_name: "D2 v3/D2s v3 Spot",
        service: "Microsoft.Compute",
        unit: "1 Hour",
        price_micros: 19_200,
    },
    Product {
        product: "DZH318Z0BXSR",
        sku: "000F",
        name: "Log Analytics",
        meter_category: "Log Analytics",
        meter_sub: "",
        meter_name: "Pay-as-you-go Data Ingestion",
        service: "Microsoft.OperationalInsights",
        unit: "1 GB",
        price_micros: 2_760_000,
    },
];

/// Reconciliation lines that are not Azure consumption: a licence billed monthly and a
/// reservation paid up front (Microsoft leaves BillingFrequency blank for one-time charges).
const LICENCE: Product = Product {
    product: "CFQ7TTC0LF8R",
    sku: "0002",
    name: "Microsoft 365 E3",
    meter_category: "",
    meter_sub: "",
    meter_name: "Microsoft 365 E3",
    service: "",
    unit: "",
    price_micros: 36_000_000,
};
const RESERVATION: Product = Product {
    product: "DZH318Z0BQ5S",
    sku: "00C9",
    name: "Reserved VM Instance, Standard_D2s_v3, West Europe, 1 Year",
    meter_category: "",
    meter_sub: "",
    meter_name: "Standard_D2s_v3 West Europe 1 Year",
    service: "",
    unit: "",
    price_micros: 512_000_000,
};

/// What a row is besides its product.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Pay-as-you-go usage or an invoice's Azure consumption line.
    Azure,
    /// Usage a reservation or savings plan covers (price 0, the benefit's order id).
    Covered(&'static str),
    /// A licence billed monthly (reconciliation).
    Licence,
    /// A reservation purchase (reconciliation).
    Reservation,
}

const REGIONS: &[&str] = &[
    "westeurope",
    "eastus2",
    "northeurope",
    "uksouth",
    "centralindia",
    "japaneast",
];
const CUSTOMERS: &[(&str, &str)] = &[
    ("Contoso Ltd", "US"),
    ("Fabrikam Inc", "US"),
    ("Northwind Traders", "GB"),
    ("Tailspin Toys", "DE"),
    ("Woodgrove Bank", "FR"),
    ("Adventure Works Cycles", "NL"),
    ("Wide World Importers", "IN"),
    ("Litware Inc", "AU"),
    ("Proseware GmbH", "DE"),
    ("Lamna Healthcare", "CA"),
];

/// A decimal with `places` decimals from an integer count of 10^-places units.
fn fixed(v: i64, places: u32) -> String {
    let p = 10i64.pow(places);
    let sign = if v < 0 { "-" } else { "" };
    let (i, f) = (v.abs() / p, v.abs() % p);
    if places == 0 {
        return format!("{sign}{i}");
    }
    format!("{sign}{i}.{f:0width$}", width = places as usize)
}

/// `v` × 10^-places as .NET formats a double with `G17` (and as `R` did): 17 significant
/// digits, trailing zeros dropped, scientific notation below 10^-4 or from 10^17, with an
/// exponent of at least two digits (`E-06`).
pub fn dotnet_g17(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let sci = format!("{x:.16e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("exponent");
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let sign = if neg { "-" } else { "" };
    if (-4..17).contains(&exp) {
        if exp >= 0 {
            let e = exp as usize;
            let int: String = format!("{digits:0<width$}", width = e + 1);
            let (i, f) = int.split_at(e + 1);
            if f.is_empty() {
                format!("{sign}{i}")
            } else {
                format!("{sign}{i}.{f}")
            }
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}{rest}E{esign}{:02}", exp.abs())
    }
}

fn iso_day(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T00:00:00Z")
}

/// The values one generated row draws its columns from.
struct Row<'a> {
    cfg: &'a GeneratorConfig,
    partner: &'a str,
    ci: usize,
    cust_id: &'a str,
    cust_name: &'a str,
    domain: &'a str,
    country: &'a str,
    sub: &'a str,
    entitlement: &'a str,
    p: &'a Product,
    region: &'a str,
    day: i64,
    period_start: i64,
    rg: String,
    resource: String,
    quantity: i64,
    effective: i64,
    unit_price: i64,
    pricing_10: i64,
    billing_10: i64,
    rate_1e4: i64,
    refund: bool,
    kind: Kind,
    /// The reservation or savings plan order of the customer (covered usage, purchases).
    benefit: String,
    tags: String,
    additional: String,
}

impl Row<'_> {
    /// A decimal with `places` decimals from an integer count of 10^-places units, as
    /// Microsoft's exact decimals or as a .NET double.
    fn num(&self, v: i64, places: u32) -> String {
        if self.cfg.dotnet_doubles {
            dotnet_g17(v as f64 / 10f64.powi(places as i32))
        } else {
            fixed(v, places)
        }
    }

    /// The JSON value of column `name` in this row (drawing from `rng` where the value varies).
    fn field(&self, name: &str, rng: &mut Rng) -> String {
        let Row {
            cfg,
            ci,
            cust_id,
            cust_name,
            domain,
            country,
            p,
            day,
            period_start,
            pricing_10,
            billing_10,
            refund,
            additional,
            ..
        } = self;
        let (ci, day, period_start) = (*ci, *day, *period_start);
        let (pricing_10, billing_10, refund) = (*pricing_10, *billing_10, *refund);
        let edge = cfg.edge_cases;
        let pick = |rng: &mut Rng, n: u64| edge && rng.below(n) == 0;
        let benefit = |v: &str| match self.kind {
            Kind::Covered(_) | Kind::Reservation => json_str(v),
            _ => json_str(""),
        };
        match name {
            "AdditionalInfo" => json_str(additional),
            "AvailabilityId" => json_str(&format!("DZH318Z0{}{}", &p.product[8..], p.sku)),
            "BenefitOrderID" | "ReservationOrderId" => benefit(&self.benefit),
            "BenefitID" => benefit(&format!("{}-0001", self.benefit)),
            "BenefitType" => match self.kind {
                Kind::Covered(t) => json_str(t),
                _ => json_str(""),
            },
            "BillingFrequency" => json_str(match self.kind {
                Kind::Reservation => "",
                _ => "Monthly",
            }),
            "TermAndBillingCycle" => json_str(match self.kind {
                Kind::Licence => "One-Year commitment for monthly billing",
                Kind::Reservation => "One-Year commitment, paid up front",
                _ => "1 Month Subscription",
            }),
            "PublisherId"
            | "ServiceInfo1"
            | "ServiceInfo2"
            | "CreditReasonCode"
            | "PromotionId"
            | "PriceAdjustmentDescription" => json_str(""),
            "BillingCurrency" | "Currency" => json_str("EUR"),
            "PricingCurrency" => json_str("USD"),
            "BillingPreTaxTotal" | "Subtotal" => {
                let v = self.num(billing_10, 10);
                if pick(rng, 7) {
                    json_str(&v)
                } else {
                    v
                }
            }
            "TaxTotal" => self.num(billing_10 / 5, 10),
            "Total" => self.num(billing_10 + billing_10 / 5, 10),
            "PricingPreTaxTotal" => {
                if pick(rng, 9) {
                    "null".into()
                } else {
                    self.num(pricing_10, 10)
                }
            }
            // A refund in reconciliation reverses a charge of the previous month.
            "ChargeStartDate" if refund && cfg.dataset == Dataset::Reconciliation => {
                json_str(&iso_day(period_start - 31))
            }
            "ChargeEndDate" if refund && cfg.dataset == Dataset::Reconciliation => {
                json_str(&iso_day(period_start - 1))
            }
            "ChargeStartDate" => json_str(&iso_day(period_start)),
            "ChargeEndDate" => json_str(&iso_day(period_start + 29)),
            "UsageDate" => json_str(&iso_day(day)),
            "OrderDate" => json_str(&format!(
                "{}T07:52:32.9930816Z",
                &iso_day(period_start - 40)[..10]
            )),
            "SubscriptionStartDate" => json_str(&iso_day(period_start - 200)),
            "SubscriptionEndDate" => json_str(&iso_day(period_start + 165)),
            "PCToBCExchangeRateDate" => json_str(&iso_day(period_start)),
            "ChargeType" => json_str(if refund { "refund" } else { "new" }),
            "ConsumedService" => json_str(p.service),
            "CreditPercentage" | "PartnerEarnedCreditPercentage" => {
                if pick(rng, 11) {
                    json_str("15")
                } else {
                    "0".into()
                }
            }
            "CreditType" => json_str("Credit Not Applied"),
            "CustomerCountry" => json_str(country),
            "CustomerDomainName" => json_str(domain),
            "CustomerId" => json_str(cust_id),
            "CustomerName" => {
                if edge && ci == 3 {
                    // Raw UTF-8 and \u escapes (é, 😀).
                    "\"Tailspin Spielwaren Zürich \\u00e9\\ud83d\\ude00\"".into()
                } else {
                    json_str(cust_name)
                }
            }
            _ => self.more(name, rng),
        }
    }

    /// The columns `field` leaves: descriptions, identifiers, prices and quantities.
    fn more(&self, name: &str, rng: &mut Rng) -> String {
        let Row {
            cfg,
            partner,
            cust_name,
            sub,
            entitlement,
            p,
            region,
            rg,
            resource,
            quantity,
            effective,
            unit_price,
            rate_1e4,
            tags,
            ..
        } = self;
        let (quantity, effective, unit_price, rate_1e4) =
            (*quantity, *effective, *unit_price, *rate_1e4);
        let edge = cfg.edge_cases;
        let pick = |rng: &mut Rng, n: u64| edge && rng.below(n) == 0;
        match name {
            "EffectiveUnitPrice" => self.num(effective, 8),
            "EntitlementDescription" => json_str(&format!("Azure plan for {cust_name}")),
            "EntitlementId" => json_str(entitlement),
            "InvoiceNumber" => json_str("G026100001"),
            "MeterCategory" => json_str(p.meter_category),
            "MeterId" => json_str(&format!(
                "{:08x}-0000-4000-8000-{:012x}",
                p.price_micros, p.price_micros
            )),
            "MeterName" | "MeterDescription" => json_str(p.meter_name),
            "MeterRegion" | "ResourceLocation" => json_str(region),
            "MeterSubCategory" => json_str(p.meter_sub),
            "MeterType" | "Unit" => json_str(p.unit),
            "MpnId" => json_str("4390934"),
            "Tier2MpnId" => json_str("6048879"),
            "PartnerId" => json_str(partner),
            "PartnerName" => json_str("Sandbox Partner Ltd"),
            "PCToBCExchangeRate" => self.num(rate_1e4, 4),
            "ProductId" => json_str(p.product),
            "ProductName" => json_str(p.name),
            "PublisherName" => json_str("Microsoft"),
            "Quantity" => {
                if cfg.dataset == Dataset::Reconciliation {
                    format!("{}", quantity / 100_000_000 + 1)
                } else if pick(rng, 13) {
                    // Exponent form, as some serialisers write small numbers.
                    format!("{}E-8", quantity)
                } else {
                    self.num(quantity, 8)
                }
            }
            "BillableQuantity" => self.num(quantity, 8),
            "ResourceGroup" => json_str(rg),
            "ResourceURI" => json_str(&format!(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/{}/virtualMachines/{resource}",
                p.service
            )),
            "SkuId" => json_str(p.sku),
            "SkuName" => json_str(p.meter_name),
            "SubscriptionDescription" => json_str(&format!("{cust_name} Azure plan")),
            "SubscriptionId" => json_str(sub),
            // Edge cases: some tags as Microsoft also writes them, without braces (a tenth,
            // chosen without the random stream so the other values stay as they were).
            "Tags" if edge && tags.ends_with("7\"}") => {
                json_str(&format!(" {} ", &tags[1..tags.len() - 1]))
            }
            "Tags" => json_str(tags),
            "UnitPrice" => self.num(unit_price, 8),
            "UnitType" => json_str(p.unit),
            "OrderId" => json_str(&format!("{:012}", rng.below(1_000_000_000_000))),
            "AlternateId" => json_str(&format!("{:012x}", rng.below(1 << 48))),
            "ReferenceId" => json_str(&rng.guid()),
            "ProductQualifiers" => json_str("[\"Consumption\"]"),
            "ProductCategory" => json_str(match self.kind {
                Kind::Licence => "OnlineServicesNCE",
                _ => "Azure",
            }),
            _ => json_str(""),
        }
    }
}

/// The customers: (tenant id, name, domain, country).
fn customers(rng: &mut Rng) -> Vec<(String, &'static str, String, &'static str)> {
    CUSTOMERS
        .iter()
        .map(|(name, country)| {
            let slug: String = name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase();
            (
                rng.guid(),
                *name,
                format!("{slug}.onmicrosoft.com"),
                *country,
            )
        })
        .collect()
}

/// What a row is and its product. One usage row in ten is covered by a reservation or
/// savings plan; in reconciliation, one row in eight is a licence and one in twenty-five a
/// reservation purchase.
fn pick_kind(dataset: Dataset, rng: &mut Rng) -> (Kind, &'static Product) {
    let draw = rng.below(200);
    let kind = match (dataset, draw) {
        (Dataset::Usage, 0..=13) => Kind::Covered("Reservation"),
        (Dataset::Usage, 14..=19) => Kind::Covered("SavingsPlan"),
        (Dataset::Reconciliation, 0..=24) => Kind::Licence,
        (Dataset::Reconciliation, 25..=32) => Kind::Reservation,
        _ => Kind::Azure,
    };
    let p = match kind {
        Kind::Licence => &LICENCE,
        Kind::Reservation => &RESERVATION,
        _ => &PRODUCTS[rng.below(PRODUCTS.len() as u64) as usize],
    };
    (kind, p)
}

/// Writes the partition as JSON Lines (one object per line, keys in the documented order).
pub fn write_partition(cfg: &GeneratorConfig, mut out: impl Write) -> io::Result<()> {
    let schema = Schema::new(cfg.dataset, cfg.attribute_set);
    let mut rng = Rng(cfg.seed ^ 0x005E_ED0F_B111);
    let partner = rng.guid();
    let customers = customers(&mut rng);
    // A few hundred subscriptions, as a partner's customer base has.
    let subscriptions: Vec<(usize, String, String)> = (0..300)
        .map(|_| {
            let c = rng.below(customers.len() as u64) as usize;
            (c, rng.guid(), rng.guid())
        })
        .collect();
    let period_start = crate::calendar::days_from_civil(2026, 9, 1);
    let mut line = Vec::with_capacity(4096);
    for row in 0..cfg.rows {
        line.clear();
        let (ci, sub, entitlement) = &subscriptions[rng.below(subscriptions.len() as u64) as usize];
        let (cust_id, cust_name, domain, country) = &customers[*ci];
        let (kind, p) = pick_kind(cfg.dataset, &mut rng);
        let region = REGIONS[rng.below(REGIONS.len() as u64) as usize];
        let day = period_start + rng.below(30) as i64;
        let rg = format!(
            "rg-{}-{:02}",
            cust_name
                .split(' ')
                .next()
                .unwrap_or("app")
                .to_ascii_lowercase(),
            rng.below(40)
        );
        let resource = format!("vm-{}-{:03}", region, rng.below(500));
        let mut quantity = rng.below(48_000_000) as i64 + 1; // 8 decimals
        if cfg.dotnet_doubles {
            // Small quantities too, so that costs print with exponents.
            quantity = (quantity >> rng.below(20)).max(1);
        }
        let discount = [0, 0, 5, 15][rng.below(4) as usize];
        let refund = rng.below(50) == 0;
        let rate_1e4: i64 = 9213; // USD → EUR
        let unit_price = p.price_micros as i64 * 100; // 8 decimals
        let effective = match kind {
            Kind::Covered(_) => 0,
            _ => unit_price * (100 - discount) / 100,
        };
        // Exact: effective (8 dp) × quantity (8 dp) = 16 dp; × rate (4 dp) = 20 dp, shown
        // rounded to 10 places like Microsoft's long decimals.
        let pricing_16 = i128::from(effective) * i128::from(quantity) * if refund { -1 } else { 1 };
        let pricing_10 = (pricing_16 / 1_000_000) as i64;
        let billing_10 = (pricing_16 * i128::from(rate_1e4) / 10_000_000_000) as i64;
        let tags = format!(
            "{{\"env\":\"{}\",\"costCenter\":\"{}\"}}",
            ["prod", "dev", "test"][rng.below(3) as usize],
            1000 + rng.below(9000)
        );
        let additional = format!(
            "{{\"ImageType\":null,\"ServiceType\":\"Standard_D2s_v3\",\"VMName\":\"{resource}\",\"VCPUs\":2}}"
        );
        let edge = cfg.edge_cases;
        let row_values = Row {
            cfg,
            partner: &partner,
            ci: *ci,
            cust_id,
            cust_name,
            domain,
            country,
            sub,
            entitlement,
            p,
            region,
            day,
            period_start,
            rg,
            resource,
            quantity,
            effective,
            unit_price,
            pricing_10,
            billing_10,
            rate_1e4,
            refund,
            kind,
            benefit: format!("{:08x}-7e57-4000-8000-{:012x}", ci, ci * 7919),
            tags,
            additional,
        };
        line.push(b'{');
        let mut first = true;
        for name in schema.names() {
            if edge
                && rng.below(40) == 0
                && !matches!(name, "CustomerId" | "BillingCurrency" | "Currency")
            {
                continue; // missing key
            }
            let value = row_values.field(name, &mut rng);
            if !first {
                line.push(b',');
            }
            first = false;
            write!(line, "\"{name}\":{value}")?;
        }
        if cfg.edge_cases {
            write!(line, ",\"NewColumn\":\"first-group-{}\"", row % 3)?;
            if row >= cfg.late_unknown_from && row % 2 == 0 {
                write!(line, ",\"LateExtra\":{{\"n\":{row}}}")?;
            }
        }
        line.extend_from_slice(b"}\n");
        out.write_all(&line)?;
    }
    out.flush()
}

/// A JSON string literal (escapes quotes, backslashes and controls).
fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::dotnet_g17;

    #[test]
    fn doubles_print_like_dotnet() {
        assert_eq!(dotnet_g17(3.6e-6), "3.5999999999999998E-06");
        assert_eq!(dotnet_g17(0.1), "0.10000000000000001");
        assert_eq!(dotnet_g17(1e-5), "1.0000000000000001E-05");
        assert_eq!(dotnet_g17(0.0001), "0.0001");
        assert_eq!(dotnet_g17(-12.5), "-12.5");
        assert_eq!(dotnet_g17(250.0), "250");
        assert_eq!(dotnet_g17(1e17), "1E+17");
        assert_eq!(dotnet_g17(0.0), "0");
    }
}
