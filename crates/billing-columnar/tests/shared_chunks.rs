//! Typed and FOCUS views in one pass share the chunks of the FOCUS columns that repeat a
//! typed column (usage: no Tax rows, so each FOCUS row is its typed row). The FOCUS file must
//! hold exactly what the FOCUS view written alone holds, with row groups small enough to split
//! inside batches and close on their byte bound, edge-case values (empty strings, which FOCUS
//! turns into nulls mid-group) and late unknown keys; read with DuckDB.

mod support;

use billing_columnar::generate::{write_partition, GeneratorConfig};
use billing_columnar::{
    convert, convert_both, AttributeSet, ConvertOptions, Dataset, Schema, View,
};
use support::{duckdb_rows, gzip, scratch};

fn rows(sql: &str) -> Vec<String> {
    duckdb_rows(sql)
        .into_iter()
        .map(|r| {
            r.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[test]
fn a_shared_focus_file_holds_what_the_focus_view_alone_holds() {
    let dir = scratch("shared-chunks");
    let schema = Schema::new(Dataset::Usage, AttributeSet::Full);
    let cfg = GeneratorConfig {
        dataset: Dataset::Usage,
        attribute_set: AttributeSet::Full,
        rows: 6_000,
        seed: 11,
        edge_cases: true,
        late_unknown_from: 3_000,
        dotnet_doubles: true,
    };
    let mut json = Vec::new();
    write_partition(&cfg, &mut json).unwrap();
    let gz = gzip(&json);
    let options = ConvertOptions {
        // Batches of a few hundred rows, groups of 700 rows that split batches, and a byte
        // bound that closes some groups early, between batches.
        row_group_bytes: 256 << 10,
        row_group_rows: 700,
        row_group_encoded_bytes: 160 << 10,
        ..ConvertOptions::default()
    };
    let (typed, focus, alone) = (
        dir.join("typed.parquet"),
        dir.join("focus.parquet"),
        dir.join("alone.parquet"),
    );
    let both = convert_both(
        &gz[..],
        &schema,
        std::fs::File::create(&typed).unwrap(),
        std::fs::File::create(&focus).unwrap(),
        &options,
    )
    .unwrap();
    let single = ConvertOptions {
        view: View::Focus,
        ..options.clone()
    };
    convert(
        &gz[..],
        &schema,
        std::fs::File::create(&alone).unwrap(),
        &single,
    )
    .unwrap();
    assert_eq!(both.rows, 6_000);

    let (f, a, t) = (focus.display(), alone.display(), typed.display());
    let count = |sql: String| rows(&sql)[0].clone();
    assert_eq!(count(format!("SELECT count(*) FROM '{f}'")), "6000");
    for (x, y) in [(&f, &a), (&a, &f)] {
        assert_eq!(
            count(format!(
                "SELECT count(*) FROM (SELECT * FROM '{x}' EXCEPT ALL SELECT * FROM '{y}')"
            )),
            "0",
            "rows of {x} missing from {y}"
        );
    }
    // Column names and types are the FOCUS view's.
    let schema_of = |p: &dyn std::fmt::Display| {
        rows(&format!(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{p}')"
        ))
    };
    assert_eq!(schema_of(&f), schema_of(&a));

    // Both files close their row groups on the same rows, and several groups split a batch
    // or closed at the byte bound.
    let groups = |p: &dyn std::fmt::Display| {
        rows(&format!(
            "SELECT DISTINCT row_group_id, row_group_num_rows FROM parquet_metadata('{p}') ORDER BY 1"
        ))
    };
    let typed_groups = groups(&t);
    assert_eq!(groups(&f), typed_groups);
    assert!(typed_groups.len() >= 9, "{typed_groups:?}");
    assert!(
        typed_groups.iter().any(|g| !g.ends_with("|700")),
        "a group closed at the byte bound: {typed_groups:?}"
    );

    // The repeated columns really are the typed chunks: same bytes in every group.
    let sizes = |p: &dyn std::fmt::Display, column: &str| {
        rows(&format!(
            "SELECT total_compressed_size FROM parquet_metadata('{p}') WHERE path_in_schema = '{column}' ORDER BY row_group_id"
        ))
    };
    assert_eq!(sizes(&f, "BilledCost"), sizes(&t, "BillingPreTaxTotal"));
    assert_eq!(sizes(&f, "EffectiveCost"), sizes(&t, "BillingPreTaxTotal"));
    assert_eq!(sizes(&f, "PricingQuantity"), sizes(&t, "Quantity"));
}
