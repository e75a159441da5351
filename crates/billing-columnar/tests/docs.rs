//! docs/schema.md and docs/focus.md are generated from the tables in code; these tests fail
//! when a file differs, and rewrite it with UPDATE_DOCS=1.

use std::path::PathBuf;

fn check(file: &str, generated: String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(file);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/{file} differs from the table in code; regenerate it with:\n  \
         UPDATE_DOCS=1 cargo test -p billing-columnar --test docs"
    );
}

#[test]
fn schema_md_is_generated_from_the_schema_table() {
    check("schema.md", billing_columnar::schema_markdown());
}

#[test]
fn focus_md_is_generated_from_the_mapping_table() {
    check("focus.md", billing_columnar::focus_markdown());
}
