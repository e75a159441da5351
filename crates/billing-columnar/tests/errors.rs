//! Hostile and broken input: clear errors with line numbers, never a partial Parquet footer.

mod support;

use billing_columnar::{
    convert, convert_both, AttributeSet, ConvertOptions, Dataset, Error, Schema,
};
use support::gzip;

fn run(json: &str, options: &ConvertOptions) -> Result<billing_columnar::ConvertReport, Error> {
    let schema = Schema::new(Dataset::Reconciliation, AttributeSet::Basic);
    convert(&gzip(json.as_bytes())[..], &schema, Vec::new(), options)
}

fn err(json: &str) -> String {
    run(json, &ConvertOptions::default())
        .expect_err("should fail")
        .to_string()
}

#[test]
fn malformed_rows_name_their_line() {
    let good = r#"{"CustomerId":"c","Total":1.5}"#;
    assert_eq!(
        err(&format!("{good}\n{good}\n{{\"Total\":1.5,}}\n")),
        "line 3: expected a quoted key at byte 14"
    );
    assert_eq!(
        err(&format!("{good}\n{{\"Total\":\"abc\"}}\n")),
        "line 2, column Total: not a decimal number: \"abc\""
    );
    assert_eq!(
        err(&format!("{good}\n{{\"Total\":1,\"total\":2}}\n")),
        "line 2: key \"Total\" appears twice"
    );
    // Repeated where it is the key expected next (recognised with its comma).
    let second = r#"{"Total":1.5,"CustomerId":"c"}"#;
    assert_eq!(
        err(&format!(
            "{second}\n{{\"CustomerId\":\"c\",\"CustomerId\":\"d\"}}\n"
        )),
        "line 2: key \"CustomerId\" appears twice"
    );
    assert_eq!(
        err(r#"{"OrderDate":"2026-13-01"}"#),
        "line 1, column OrderDate: not an ISO 8601 date or date-time: \"2026-13-01\""
    );
    assert_eq!(
        err(r#"{"SubscriptionStartDate":"2026-01-01T10:00:00Z"}"#),
        "line 1, column SubscriptionStartDate: a date column with a time other than midnight: \"2026-01-01T10:00:00Z\""
    );
    assert_eq!(
        err(r#"{"Total":1e26}"#),
        "line 1, column Total: out of the DECIMAL(38) / INT64 range: \"1e26\""
    );
    assert!(err("[1,2]").starts_with("line 1: expected '{'"));
}

#[test]
fn invalid_utf8_names_its_line() {
    let schema = Schema::new(Dataset::Reconciliation, AttributeSet::Basic);
    let good = r#"{"CustomerId":"c","CustomerName":"Caf\u00e9 é😀","Total":1.5}"#;
    let run = |input: &[u8]| {
        convert(
            &gzip(input)[..],
            &schema,
            Vec::new(),
            &ConvertOptions::default(),
        )
    };
    // A stray continuation byte, a truncated sequence, an overlong '/', an encoded surrogate,
    // and a byte that never appears in UTF-8, each inside a string value of line 3.
    for bad in [
        &b"\x80"[..],
        b"\xc3(",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xff",
    ] {
        let mut input = format!("{good}\n{good}\n").into_bytes();
        input.extend_from_slice(br#"{"CustomerId":"c","CustomerName":"x"#);
        input.extend_from_slice(bad);
        input.extend_from_slice(b"\"}\n");
        input.extend_from_slice(good.as_bytes());
        let e = run(&input).expect_err("invalid UTF-8 must fail");
        assert!(matches!(e, Error::Utf8 { line: 3 }), "{bad:?}: {e}");
    }
    // The same lines without the bad bytes convert, multi-byte characters included.
    let report = run(format!("{good}\n{good}\n").as_bytes()).expect("valid UTF-8 converts");
    assert_eq!(report.rows, 2);
}

#[test]
fn limits_bound_lines_and_columns() {
    let options = ConvertOptions {
        max_line_bytes: 64,
        max_columns: 40,
        ..ConvertOptions::default()
    };
    let long = format!("{{\"CustomerName\":\"{}\"}}\n", "x".repeat(100));
    assert_eq!(
        run(&long, &options).unwrap_err().to_string(),
        "line 1: longer than the limit of 64 bytes"
    );
    let wide: Vec<String> = (0..10).map(|i| format!("\"K{i}\":1")).collect();
    let wide = format!("{{{}}}\n", wide.join(","));
    assert_eq!(
        run(
            &wide,
            &ConvertOptions {
                max_columns: 40,
                ..ConvertOptions::default()
            }
        )
        .unwrap_err()
        .to_string(),
        "line 1: more than 40 distinct columns"
    );
}

#[test]
fn broken_gzip_is_an_error() {
    let gz = gzip(b"{\"Total\":1}\n{\"Total\":2}\n");
    let schema = Schema::new(Dataset::Reconciliation, AttributeSet::Basic);
    let e = convert(
        &gz[..gz.len() - 6],
        &schema,
        Vec::new(),
        &ConvertOptions::default(),
    );
    assert_eq!(e.unwrap_err().to_string(), "gzip: truncated gzip stream");
    let e = convert(
        &b"not gzip"[..],
        &schema,
        Vec::new(),
        &ConvertOptions::default(),
    );
    assert!(e.unwrap_err().to_string().starts_with("gzip: "));
}

#[test]
fn empty_and_concatenated_inputs() {
    let schema = Schema::new(Dataset::Reconciliation, AttributeSet::Basic);
    let r = convert(&b""[..], &schema, Vec::new(), &ConvertOptions::default()).unwrap();
    assert_eq!((r.rows, r.row_groups), (0, 0));
    assert!(
        r.bytes_out_typed > 0,
        "a valid file with the schema and no rows"
    );
    // Two gzip members, a CRLF line and blank lines: three rows.
    let mut gz = gzip(b"{\"Total\":1.25,\"CustomerId\":\"a\",\"Currency\":\"EUR\"}\r\n\n");
    gz.extend(gzip(
        b"{\"Total\":-0.25,\"CustomerId\":\"a\",\"Currency\":\"EUR\"}\n{\"Total\":\"2\",\"CustomerId\":\"b\",\"Currency\":\"USD\"}",
    ));
    let r = convert(&gz[..], &schema, Vec::new(), &ConvertOptions::default()).unwrap();
    assert_eq!(r.rows, 3);
    let total = r.sums.iter().find(|s| s.column == "Total").unwrap();
    assert_eq!(total.sum.to_string(), "3");
    let a = &r.customer_totals[0];
    assert_eq!(
        (a.customer.0.as_str(), a.currency.0.as_str(), a.rows),
        ("a", "EUR", 2)
    );
    assert_eq!(a.amounts[0].column, "Total");
    assert_eq!(a.amounts[0].sum.to_string(), "1");
}

#[test]
fn totals_split_by_product_when_asked() {
    let schema = Schema::new(Dataset::Usage, AttributeSet::Basic);
    let rows = [
        r#"{"CustomerId":"a","BillingCurrency":"EUR","ProductId":"VM","SkuId":"1","BillingPreTaxTotal":1.5}"#,
        r#"{"CustomerId":"a","BillingCurrency":"EUR","ProductId":"VM","SkuId":"1","BillingPreTaxTotal":2}"#,
        r#"{"CustomerId":"a","BillingCurrency":"EUR","ProductId":"VM","SkuId":"2","BillingPreTaxTotal":4}"#,
        r#"{"CustomerId":"a","BillingCurrency":"EUR","ProductId":"DISK","SkuId":"1","BillingPreTaxTotal":8}"#,
        // Back to a product seen before, after others.
        r#"{"CustomerId":"a","BillingCurrency":"EUR","ProductId":"VM","SkuId":"1","BillingPreTaxTotal":0.5}"#,
    ]
    .join("\n");
    let split = ConvertOptions {
        totals_by_product: true,
        ..ConvertOptions::default()
    };
    let r = convert(&gzip(rows.as_bytes())[..], &schema, Vec::new(), &split).unwrap();
    let got: Vec<(String, String, u64, String)> = r
        .customer_totals
        .iter()
        .map(|t| {
            let p = t.product.as_ref().unwrap();
            (
                p.product_id.clone(),
                p.sku_id.clone(),
                t.rows,
                t.amounts[0].sum.to_string(),
            )
        })
        .collect();
    let want = [
        ("DISK", "1", 1, "8"),
        ("VM", "1", 3, "4"),
        ("VM", "2", 1, "4"),
    ];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str(), g.2), (w.0, w.1, w.2));
        assert_eq!(g.3.trim_end_matches('0').trim_end_matches('.'), w.3);
    }
    // Off (the default): one total per customer and currency.
    let r = run(&rows, &ConvertOptions::default()).unwrap();
    assert_eq!(r.customer_totals.len(), 1);
    assert!(r.customer_totals[0].product.is_none());
}

/// An output that takes `room` bytes, then fails as a full disk does; or fails only its flush.
struct Failing {
    room: usize,
    flush_fails: bool,
}

impl std::io::Write for Failing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::other("no space left on device"));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.flush_fails {
            return Err(std::io::Error::other("flush failed"));
        }
        Ok(())
    }
}

#[test]
fn a_failing_output_fails_the_conversion_with_its_own_error() {
    // Many small row groups: the output fails while rows are still being parsed.
    let rows: String = (0..20_000)
        .map(|i| {
            format!(
                "{{\"CustomerId\":\"c{}\",\"Currency\":\"EUR\",\"Total\":{i}.5}}\n",
                i % 7
            )
        })
        .collect();
    let gz = gzip(rows.as_bytes());
    let schema = Schema::new(Dataset::Reconciliation, AttributeSet::Basic);
    let options = ConvertOptions {
        row_group_rows: 500,
        ..ConvertOptions::default()
    };
    let full = |room| Failing {
        room,
        flush_fails: false,
    };
    for room in [0, 10_000, 100_000] {
        let e = convert(&gz[..], &schema, full(room), &options).unwrap_err();
        assert_eq!(
            e.to_string(),
            "writing the output: no space left on device",
            "room {room}"
        );
        // Either file failing fails both.
        let e = convert_both(&gz[..], &schema, Vec::new(), full(room), &options).unwrap_err();
        assert_eq!(e.to_string(), "writing the output: no space left on device");
    }
    // Everything written, then the flush fails: still an error, never a silent partial file.
    let e = convert(
        &gz[..],
        &schema,
        Failing {
            room: usize::MAX,
            flush_fails: true,
        },
        &options,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "writing the output: flush failed");
}
