//! Correctness by an independent reader: generated partitions (with edge cases) are converted,
//! then DuckDB reads the Parquet back and its counts, sums and types are compared with what
//! serde_json computes from the JSON source.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use billing_columnar::generate::{write_partition, GeneratorConfig};
use billing_columnar::{
    convert_both, AttributeSet, BillingStatus, ColumnType, ConvertOptions, ConvertReport, Dataset,
    Schema, UnknownPlacement, FOCUS_VERSION, LATE_UNKNOWN_COLUMN,
};
use serde_json::{Map, Value};
use support::{duckdb_rows, gzip, json_amount, scaled, scratch};

/// What the JSON source says, computed with serde_json only.
struct Expected {
    rows: usize,
    sums: BTreeMap<String, i128>,
    /// (CustomerId, currency) → sums of the invoice amounts.
    customers: BTreeMap<(String, String), Vec<i128>>,
    late_rows: usize,
}

fn expected(json: &[u8], schema: &Schema, amounts: &[&str], ccy: &str) -> Expected {
    let mut e = Expected {
        rows: 0,
        sums: BTreeMap::new(),
        customers: BTreeMap::new(),
        late_rows: 0,
    };
    for line in json.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let row: Map<String, Value> = serde_json::from_slice(line).unwrap();
        e.rows += 1;
        for c in schema
            .columns()
            .iter()
            .filter(|c| c.ty == ColumnType::Decimal)
        {
            let v = row.get(c.name).and_then(json_amount).unwrap_or(0);
            *e.sums.entry(c.name.to_string()).or_default() += v;
        }
        let key = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let t = e
            .customers
            .entry((key("CustomerId"), key(ccy)))
            .or_insert_with(|| vec![0; amounts.len()]);
        for (i, a) in amounts.iter().enumerate() {
            t[i] += row.get(*a).and_then(json_amount).unwrap_or(0);
        }
        if row.contains_key("LateExtra") {
            e.late_rows += 1;
        }
    }
    e
}

fn one(sql: &str) -> Vec<Value> {
    duckdb_rows(sql).remove(0)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn check(dataset: Dataset, set: AttributeSet, rows: u64, status: BillingStatus) {
    let name = format!("{dataset}-{set}");
    let dir = scratch(&name);
    let schema = Schema::new(dataset, set);
    let cfg = GeneratorConfig {
        dataset,
        attribute_set: set,
        rows,
        seed: 42,
        edge_cases: true,
        late_unknown_from: rows / 2,
        dotnet_doubles: false,
    };
    let mut json = Vec::new();
    write_partition(&cfg, &mut json).unwrap();
    let gz = gzip(&json);
    let typed_path = dir.join("typed.parquet");
    let focus_path = dir.join("focus.parquet");
    let options = ConvertOptions {
        billing_status: status,
        // Small row groups: several groups, and the late key arrives after the first.
        row_group_rows: 700,
        ..ConvertOptions::default()
    };
    let report = convert_both(
        &gz[..],
        &schema,
        std::fs::File::create(&typed_path).unwrap(),
        std::fs::File::create(&focus_path).unwrap(),
        &options,
    )
    .unwrap();

    let (ccy, amounts): (&str, &[&str]) = match dataset {
        Dataset::Usage => ("BillingCurrency", &["BillingPreTaxTotal"]),
        Dataset::Reconciliation => ("Currency", &["Total", "Subtotal", "PCToBCExchangeRate"]),
    };
    let exp = expected(&json, &schema, amounts, ccy);
    assert_eq!(report.rows as usize, exp.rows);
    assert_eq!(report.bytes_in as usize, gz.len());
    assert_eq!(report.bytes_json as usize, json.len());
    assert!(report.row_groups > 1, "{name}: several row groups");

    // Unknown keys: one from the first row group (own column), one later (JSON column).
    let unknown: BTreeSet<_> = report
        .unknown_columns
        .iter()
        .map(|u| (u.name.as_str(), u.placement))
        .collect();
    assert_eq!(
        unknown,
        BTreeSet::from([
            ("NewColumn", UnknownPlacement::Column),
            ("LateExtra", UnknownPlacement::LateKeys)
        ])
    );

    let t = typed_path.display().to_string();
    let f = focus_path.display().to_string();
    check_typed_sums(&name, &t, &schema, &report, &exp, amounts, ccy);
    check_typed_columns(&name, &t, &schema, dataset, &exp);
    check_focus_file(&name, &f, dataset, status, &exp);
}

/// Row count, every decimal sum and the per-customer totals of the typed file, as DuckDB reads
/// them and as the report has them, against the JSON.
fn check_typed_sums(
    name: &str,
    t: &str,
    schema: &Schema,
    report: &ConvertReport,
    exp: &Expected,
    amounts: &[&str],
    ccy: &str,
) {
    // Row count and every decimal sum, as DuckDB reads them.
    let dec_cols: Vec<&str> = schema
        .columns()
        .iter()
        .filter(|c| c.ty == ColumnType::Decimal)
        .map(|c| c.name)
        .collect();
    let sums_sql: Vec<String> = dec_cols
        .iter()
        .map(|c| format!("coalesce(sum(\"{c}\"), 0)::VARCHAR"))
        .collect();
    let row = one(&format!(
        "SELECT count(*), {} FROM read_parquet('{t}')",
        sums_sql.join(", ")
    ));
    assert_eq!(
        text(&row[0]),
        exp.rows.to_string(),
        "{name}: DuckDB row count"
    );
    for (i, c) in dec_cols.iter().enumerate() {
        let duck = scaled(text(&row[i + 1]));
        assert_eq!(duck, exp.sums[*c], "{name}: DuckDB sum of {c}");
        let ours = report.sums.iter().find(|s| s.column == *c).unwrap();
        assert_eq!(ours.sum.scaled(), exp.sums[*c], "{name}: report sum of {c}");
    }
    assert!(
        exp.sums[amounts[0]] != 0 && exp.sums.len() == report.sums.len(),
        "{name}: sums cover every decimal column"
    );

    // Per (customer, currency) totals: report and DuckDB against the JSON.
    for ct in &report.customer_totals {
        let want = &exp.customers[&(ct.customer.0.clone(), ct.currency.0.clone())];
        for (k, a) in ct.amounts.iter().enumerate() {
            assert_eq!(a.column, amounts[k]);
            assert_eq!(
                a.sum.scaled(),
                want[k],
                "{name}: {:?} {}",
                ct.customer,
                a.column
            );
        }
    }
    assert_eq!(report.customer_totals.len(), exp.customers.len());
    let duck = duckdb_rows(&format!(
        "SELECT \"CustomerId\", \"{ccy}\", coalesce(sum(\"{}\"), 0)::VARCHAR FROM read_parquet('{t}') GROUP BY ALL",
        amounts[0]
    ));
    assert_eq!(duck.len(), exp.customers.len());
    for r in duck {
        let key = (text(&r[0]).to_string(), text(&r[1]).to_string());
        assert_eq!(
            scaled(text(&r[2])),
            exp.customers[&key][0],
            "{name}: DuckDB {key:?}"
        );
    }
}

/// The typed file's logical types, late keys, unicode and dates, as DuckDB sees them.
fn check_typed_columns(name: &str, t: &str, schema: &Schema, dataset: Dataset, exp: &Expected) {
    // Logical types as DuckDB sees them.
    let types: BTreeMap<String, String> = duckdb_rows(&format!(
        "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{t}'))"
    ))
    .into_iter()
    .map(|r| (text(&r[0]).to_string(), text(&r[1]).to_string()))
    .collect();
    for c in schema.columns() {
        let want = match c.ty {
            ColumnType::String => "VARCHAR",
            ColumnType::Decimal => "DECIMAL(38,12)",
            ColumnType::Integer => "BIGINT",
            ColumnType::Date => "DATE",
            ColumnType::Timestamp => "TIMESTAMP WITH TIME ZONE",
        };
        assert_eq!(types[c.name], want, "{name}: DuckDB type of {}", c.name);
    }
    assert_eq!(types["NewColumn"], "VARCHAR");
    assert_eq!(types[LATE_UNKNOWN_COLUMN], "VARCHAR");

    // Late unknown keys are kept, as JSON DuckDB can read.
    let late = one(&format!(
        "SELECT count(*), count(\"{LATE_UNKNOWN_COLUMN}\"), sum((json_extract(\"{LATE_UNKNOWN_COLUMN}\", '$.LateExtra.n'))::BIGINT)::VARCHAR FROM read_parquet('{t}')"
    ));
    assert_eq!(
        text(&late[1]),
        exp.late_rows.to_string(),
        "{name}: late keys kept"
    );
    assert!(exp.late_rows > 0);

    // Unicode, raw and escaped, survives.
    let names = duckdb_rows(&format!(
        "SELECT DISTINCT \"CustomerName\" FROM read_parquet('{t}') WHERE \"CustomerName\" LIKE 'Tailspin%'"
    ));
    assert_eq!(text(&names[0][0]), "Tailspin Spielwaren Zürich é😀");

    // Dates: UsageDate / ChargeStartDate as DuckDB prints them.
    if dataset == Dataset::Usage {
        let d = one(&format!(
            "SELECT min(\"UsageDate\")::VARCHAR, min(\"ChargeStartDate\" AT TIME ZONE 'UTC')::VARCHAR FROM read_parquet('{t}')"
        ));
        assert_eq!(text(&d[0]), "2026-09-01");
        assert_eq!(text(&d[1]), "2026-09-01 00:00:00");
    }
}

/// The FOCUS file: the source rows plus a Tax row per taxed reconciliation row, BilledCost
/// the source amount (and the Tax rows' BilledCost the tax), the version in the metadata,
/// unknown and late keys kept, periods that end after they start.
fn check_focus_file(name: &str, f: &str, dataset: Dataset, status: BillingStatus, exp: &Expected) {
    let billed_src = match dataset {
        Dataset::Usage => "BillingPreTaxTotal",
        Dataset::Reconciliation => "Subtotal",
    };
    let row = one(&format!(
        "SELECT count(*) FILTER (WHERE \"ChargeCategory\" <> 'Tax'), coalesce(sum(\"BilledCost\") FILTER (WHERE \"ChargeCategory\" <> 'Tax'), 0)::VARCHAR, count(DISTINCT \"x_BillingStatus\"), min(\"x_BillingStatus\"), coalesce(sum(\"BilledCost\") FILTER (WHERE \"ChargeCategory\" = 'Tax'), 0)::VARCHAR FROM read_parquet('{f}')"
    ));
    assert_eq!(text(&row[0]), exp.rows.to_string(), "{name}: FOCUS rows");
    assert_eq!(
        scaled(text(&row[1])),
        exp.sums[billed_src],
        "{name}: BilledCost"
    );
    assert_eq!(text(&row[3]), status.as_str());
    let tax = exp.sums.get("TaxTotal").copied().unwrap_or(0);
    assert_eq!(
        scaled(text(&row[4])),
        tax,
        "{name}: Tax rows carry TaxTotal"
    );
    let md = duckdb_rows(&format!(
        "SELECT decode(value) FROM parquet_kv_metadata('{f}') WHERE decode(key) = 'focus_version'"
    ));
    assert_eq!(text(&md[0][0]), FOCUS_VERSION);
    let focus_unknown = one(&format!(
        "SELECT count(\"x_PC_NewColumn\"), count(\"{LATE_UNKNOWN_COLUMN}\") FILTER (WHERE \"ChargeCategory\" <> 'Tax') FROM read_parquet('{f}')"
    ));
    assert_eq!(
        text(&focus_unknown[1]),
        exp.late_rows.to_string(),
        "{name}: FOCUS keeps late keys"
    );
    assert_ne!(
        text(&focus_unknown[0]),
        "0",
        "{name}: FOCUS keeps unknown columns"
    );
    let periods = one(&format!(
        "SELECT count(*) FILTER (WHERE \"ChargePeriodEnd\" <= \"ChargePeriodStart\" OR \"BillingPeriodEnd\" <= \"BillingPeriodStart\"), count(\"BillingPeriodStart\") FROM read_parquet('{f}')"
    ));
    assert_eq!(
        text(&periods[0]),
        "0",
        "{name}: FOCUS periods end after they start"
    );
}

#[test]
fn billed_usage_full_reads_back_in_duckdb() {
    check(
        Dataset::Usage,
        AttributeSet::Full,
        3000,
        BillingStatus::Billed,
    );
}

#[test]
fn unbilled_usage_basic_reads_back_in_duckdb() {
    check(
        Dataset::Usage,
        AttributeSet::Basic,
        2000,
        BillingStatus::Unbilled,
    );
}

#[test]
fn billed_reconciliation_full_reads_back_in_duckdb() {
    check(
        Dataset::Reconciliation,
        AttributeSet::Full,
        2000,
        BillingStatus::Billed,
    );
}

#[test]
fn unbilled_reconciliation_basic_reads_back_in_duckdb() {
    check(
        Dataset::Reconciliation,
        AttributeSet::Basic,
        1500,
        BillingStatus::Unbilled,
    );
}

/// A month of billed usage whose amounts are .NET doubles (`3.5999999999999998E-06`, up to 22
/// decimal places): the partition converts, the values past the scale are rounded half to even
/// and counted, and DuckDB multiplies prices by quantities without overflowing.
#[test]
fn dotnet_doubles_convert_and_multiply_in_duckdb() {
    let dir = scratch("dotnet-doubles");
    let schema = Schema::new(Dataset::Usage, AttributeSet::Full);
    let cfg = GeneratorConfig {
        dotnet_doubles: true,
        ..GeneratorConfig::usage(20_000, 7)
    };
    let mut json = Vec::new();
    write_partition(&cfg, &mut json).unwrap();
    let text = String::from_utf8_lossy(&json);
    let longest = text
        .split([',', ':', '{', '}'])
        .filter(|v| v.contains("E-"))
        .map(|v| {
            let (m, e) = v.split_once("E-").unwrap();
            m.split_once('.').map_or(0, |(_, f)| f.len()) + e.parse::<usize>().unwrap()
        })
        .max()
        .unwrap_or(0);
    assert!(longest >= 22, "values with 22 decimal places ({longest})");
    let typed_path = dir.join("typed.parquet");
    let focus_path = dir.join("focus.parquet");
    let report = convert_both(
        &gzip(&json)[..],
        &schema,
        std::fs::File::create(&typed_path).unwrap(),
        std::fs::File::create(&focus_path).unwrap(),
        &ConvertOptions::default(),
    )
    .unwrap();
    assert_eq!(report.rows, 20_000);
    assert!(report.rounded_values > 20_000, "{}", report.rounded_values);

    // Sums of the stored (rounded) values, by DuckDB and the report, against the JSON rounded
    // value by value.
    let exp = expected(&json, &schema, &["BillingPreTaxTotal"], "BillingCurrency");
    let t = typed_path.display().to_string();
    let f = focus_path.display().to_string();
    let row = one(&format!(
        "SELECT sum(\"BillingPreTaxTotal\")::VARCHAR, sum(\"Quantity\")::VARCHAR FROM read_parquet('{t}')"
    ));
    assert_eq!(scaled(text_of(&row[0])), exp.sums["BillingPreTaxTotal"]);
    assert_eq!(scaled(text_of(&row[1])), exp.sums["Quantity"]);
    let ours = report
        .sums
        .iter()
        .find(|s| s.column == "BillingPreTaxTotal")
        .unwrap();
    assert_eq!(ours.sum.scaled(), exp.sums["BillingPreTaxTotal"]);

    // The products FOCUS users write, over the whole month, in both files.
    let products = one(&format!(
        "SELECT count(*), sum(\"ListUnitPrice\" * \"PricingQuantity\")::VARCHAR, \
         max(\"ListUnitPrice\" * \"PricingQuantity\" * 1000000)::VARCHAR, \
         sum(\"ContractedUnitPrice\" * \"PricingQuantity\")::VARCHAR, \
         count(DISTINCT date_trunc('day', \"ChargePeriodStart\" AT TIME ZONE 'UTC')) \
         FROM read_parquet('{f}')"
    ));
    assert_eq!(text_of(&products[0]), "20000");
    assert_eq!(text_of(&products[4]), "30", "a month of days");
    let typed = one(&format!(
        "SELECT sum(\"UnitPrice\" * \"Quantity\")::VARCHAR, sum(\"PricingPreTaxTotal\" * \"PCToBCExchangeRate\")::VARCHAR FROM read_parquet('{t}')"
    ));
    assert!(!text_of(&typed[0]).is_empty());
}

fn text_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Row groups span many parsed batches, string and decimal columns carry min/max statistics,
/// and a column that is constant over the first rows keeps its dictionary: as DuckDB's
/// `parquet_metadata()` reads the files.
#[test]
fn row_groups_statistics_and_dictionaries_in_the_metadata() {
    assert!(ConvertOptions::default().row_group_rows >= 50_000);
    let dir = scratch("layout");
    let schema = Schema::new(Dataset::Usage, AttributeSet::Full);
    let mut json = Vec::new();
    write_partition(&GeneratorConfig::usage(45_000, 11), &mut json).unwrap();
    // The first 3,000 rows all name one customer, as files clustered by customer do.
    let mut clustered = Vec::with_capacity(json.len());
    for (i, line) in json.split_inclusive(|&b| b == b'\n').enumerate() {
        if i < 3000 {
            let row: Map<String, Value> = serde_json::from_slice(line).unwrap();
            let mut row = row;
            row.insert("CustomerName".into(), Value::from("Contoso Ltd"));
            clustered.extend_from_slice(serde_json::to_string(&row).unwrap().as_bytes());
            clustered.push(b'\n');
        } else {
            clustered.extend_from_slice(line);
        }
    }
    let typed_path = dir.join("typed.parquet");
    let focus_path = dir.join("focus.parquet");
    let options = ConvertOptions {
        row_group_rows: 20_000,
        // Batches of about 700 rows: each row group spans many of them.
        row_group_bytes: 1 << 20,
        ..ConvertOptions::default()
    };
    let report = convert_both(
        &gzip(&clustered)[..],
        &schema,
        std::fs::File::create(&typed_path).unwrap(),
        std::fs::File::create(&focus_path).unwrap(),
        &options,
    )
    .unwrap();
    assert_eq!(report.row_groups, 3);
    for path in [&typed_path, &focus_path] {
        let p = path.display().to_string();
        let groups = duckdb_rows(&format!(
            "SELECT DISTINCT row_group_id, row_group_num_rows FROM parquet_metadata('{p}') ORDER BY 1"
        ));
        let sizes: Vec<&str> = groups.iter().map(|r| text_of(&r[1])).collect();
        assert_eq!(sizes, ["20000", "20000", "5000"], "{p}");
    }

    let t = typed_path.display().to_string();
    let f = focus_path.display().to_string();
    // Statistics against the values, for strings and decimals, per row group.
    for (path, column) in [
        (&t, "CustomerId"),
        (&t, "BillingCurrency"),
        (&t, "BillingPreTaxTotal"),
        (&t, "UnitPrice"),
        (&f, "BilledCost"),
        (&f, "SubAccountId"),
        (&f, "ListUnitPrice"),
    ] {
        let stats = duckdb_rows(&format!(
            "SELECT row_group_id, stats_min_value, stats_max_value, stats_null_count FROM parquet_metadata('{path}') WHERE path_in_schema = '{column}' ORDER BY 1"
        ));
        assert_eq!(stats.len(), 3, "{column}");
        let actual = duckdb_rows(&format!(
            "SELECT min(\"{column}\")::VARCHAR, max(\"{column}\")::VARCHAR, count(*) - count(\"{column}\") FROM read_parquet('{path}')"
        ));
        let mins: Vec<&str> = stats.iter().map(|r| text_of(&r[1])).collect();
        let maxs: Vec<&str> = stats.iter().map(|r| text_of(&r[2])).collect();
        assert!(mins.iter().all(|m| !m.is_empty()), "{column}: min written");
        let norm = |s: &str| {
            if s.contains('.') {
                scaled(s).to_string()
            } else {
                s.to_string()
            }
        };
        let overall_min = mins
            .iter()
            .map(|m| norm(m))
            .min_by(|a, b| cmp_num(a, b))
            .unwrap();
        let overall_max = maxs
            .iter()
            .map(|m| norm(m))
            .max_by(|a, b| cmp_num(a, b))
            .unwrap();
        assert_eq!(overall_min, norm(text_of(&actual[0][0])), "{column}: min");
        assert_eq!(overall_max, norm(text_of(&actual[0][1])), "{column}: max");
    }
    // The customer name is constant over the first 3,000 rows, yet keeps a dictionary.
    let enc = duckdb_rows(&format!(
        "SELECT encodings FROM parquet_metadata('{t}') WHERE path_in_schema = 'CustomerName' AND row_group_id = 0"
    ));
    assert!(text_of(&enc[0][0]).contains("DICTIONARY"), "{enc:?}");
    // Nearly unique columns go without one.
    let enc = duckdb_rows(&format!(
        "SELECT encodings FROM parquet_metadata('{t}') WHERE path_in_schema = 'ResourceURI' AND row_group_id = 0"
    ));
    assert!(!text_of(&enc[0][0]).contains("DICTIONARY"), "{enc:?}");
}

/// Numbers (as scaled integers) compare as numbers, other text as text.
fn cmp_num(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i128>(), b.parse::<i128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// `tax_rows_only`: the FOCUS file holds the Tax rows of the partition's charges and nothing
/// else, the same rows and amounts the full FOCUS view gives them. FinOps hubs gets an
/// invoice's Azure lines this way: their detail comes from billed usage, which has no tax.
#[test]
fn tax_rows_only_keeps_exactly_the_tax_rows() {
    let dir = scratch("tax-rows-only");
    let schema = Schema::new(Dataset::Reconciliation, AttributeSet::Full);
    let cfg = GeneratorConfig {
        dataset: Dataset::Reconciliation,
        attribute_set: AttributeSet::Full,
        rows: 3000,
        seed: 7,
        edge_cases: true,
        late_unknown_from: 1500,
        dotnet_doubles: false,
    };
    let mut json = Vec::new();
    write_partition(&cfg, &mut json).unwrap();
    let gz = gzip(&json);
    let convert = |path: &std::path::Path, tax_rows_only: bool| {
        let options = ConvertOptions {
            view: billing_columnar::View::Focus,
            row_group_rows: 700,
            tax_rows_only,
            ..ConvertOptions::default()
        };
        let out = std::fs::File::create(path).unwrap();
        billing_columnar::convert(&gz[..], &schema, out, &options).unwrap()
    };
    let (all, only) = (dir.join("all.parquet"), dir.join("tax.parquet"));
    let full = convert(&all, false);
    let taxes = convert(&only, true);
    let q = |f: &std::path::Path, filter: &str| {
        one(&format!(
            "SELECT count(*), coalesce(sum(\"BilledCost\"), 0)::VARCHAR, count(DISTINCT \"x_CustomerId\") FROM read_parquet('{}') {filter}",
            f.display()
        ))
    };
    let want = q(&all, "WHERE \"ChargeCategory\" = 'Tax'");
    let got = q(&only, "");
    assert!(
        text(&want[0]) != "0",
        "the generated partition has taxed rows"
    );
    assert_eq!(got, want, "the Tax rows and their amounts");
    let categories = duckdb_rows(&format!(
        "SELECT DISTINCT \"ChargeCategory\" FROM read_parquet('{}')",
        only.display()
    ));
    assert_eq!(categories.len(), 1);
    assert_eq!(text(&categories[0][0]), "Tax");
    assert_eq!(taxes.focus_rows.to_string(), text(&want[0]));
    assert_eq!(full.focus_rows, full.rows + taxes.focus_rows);
}
