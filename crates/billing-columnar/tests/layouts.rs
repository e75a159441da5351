//! The scanner recognises members by the key it expects next, comma included: rows whose
//! layout differs (whitespace around separators, keys in another order, a key missing) must
//! convert to the same file as compact rows in the usual order.

mod support;

use billing_columnar::{convert, AttributeSet, ConvertOptions, Dataset, Schema};
use support::gzip;

/// Rows as (key, JSON value) members; the second row holds an escaped string and a null.
const ROWS: [&[(&str, &str)]; 3] = [
    &[
        ("CustomerId", r#""c1""#),
        ("CustomerName", r#""Contoso""#),
        ("OrderDate", r#""2026-01-02T00:00:00Z""#),
        ("Total", "1.5"),
        ("Currency", r#""USD""#),
    ],
    &[
        ("CustomerId", r#""c2""#),
        ("CustomerName", r#""Caf\u00e9 \"Bleu\"""#),
        ("OrderDate", "null"),
        ("Total", "-2.25E-03"),
        ("Currency", r#""EUR""#),
    ],
    &[
        ("CustomerId", r#""c3""#),
        ("CustomerName", r#""""#),
        ("OrderDate", r#""2026-01-31T00:00:00Z""#),
        ("Total", "0"),
        ("Currency", r#""USD""#),
    ],
];

fn render(row: &[(&str, &str)], open: &str, colon: &str, comma: &str, close: &str) -> String {
    let members: Vec<String> = row
        .iter()
        .map(|(k, v)| format!("\"{k}\"{colon}{v}"))
        .collect();
    format!("{open}{}{close}\n", members.join(comma))
}

fn typed(json: &str) -> Vec<u8> {
    let schema = Schema::new(Dataset::Reconciliation, AttributeSet::Basic);
    let mut out = Vec::new();
    convert(
        &gzip(json.as_bytes())[..],
        &schema,
        &mut out,
        &ConvertOptions::default(),
    )
    .expect("converts");
    out
}

#[test]
fn layouts_of_the_same_rows_convert_to_the_same_file() {
    let compact: String = ROWS.iter().map(|r| render(r, "{", ":", ",", "}")).collect();
    let expected = typed(&compact);
    let spaced: String = ROWS
        .iter()
        .map(|r| render(r, "{ ", " : ", " ,\t", " }"))
        .collect();
    // Every other row in reverse order: the key expected next is then wrong at each member.
    let reordered: String = ROWS
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.to_vec();
            if i % 2 == 1 {
                r.reverse();
            }
            render(&r, "{", ":", ",", "}")
        })
        .collect();
    // Spaces only after the commas: the comma is found, the key pattern after it is not.
    let after_comma: String = ROWS
        .iter()
        .map(|r| render(r, "{", ":", ", ", "}"))
        .collect();
    for (name, json) in [
        ("spaced", spaced),
        ("reordered", reordered),
        ("after_comma", after_comma),
    ] {
        assert!(typed(&json) == expected, "{name}: a different file");
    }
    // A key left out in the middle row: null there, the rows around it unchanged.
    let mut missing = ROWS[1].to_vec();
    missing.retain(|(k, _)| *k != "OrderDate");
    let json = [
        render(ROWS[0], "{", ":", ",", "}"),
        render(&missing, "{", ":", ",", "}"),
        render(ROWS[2], "{", ":", ",", "}"),
    ]
    .concat();
    assert!(typed(&json) == expected, "missing key: a different file");
}
