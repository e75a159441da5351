//! Where a run's files land in the partner's storage, and the run's `_manifest.json`, modelled
//! on Azure Cost Management exports so FinOps tooling that ingests those can ingest ours:
//! `{prefix}/{kind}/{billing month or period}/{invoice or currency}/{attributeSet}/{runId}/…`

use serde::Serialize;
use time::OffsetDateTime;

use super::run::RunRecord;
use crate::billing::{ExportScope, ManifestSummary};
use crate::pipeline::ports::storage::{ObjectPath, StorageError};

pub const RUN_MANIFEST_NAME: &str = "_manifest.json";

/// `BillingMonth=yyyyMM` from Microsoft's rootDirectory, if it has one.
pub fn billing_month(root_directory: &str) -> Option<String> {
    root_directory.split('/').find_map(|seg| {
        seg.strip_prefix("BillingMonth=")
            .filter(|m| m.len() == 6 && m.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_string)
    })
}

/// A path-safe name for the source data version: the eTag itself when it is tame, else a hash.
pub fn data_version(etag: &str) -> String {
    let tame = !etag.is_empty()
        && etag.len() <= 64
        && etag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if tame {
        format!("v-{etag}")
    } else {
        let digest = <md5::Md5 as md5::Digest>::digest(etag.as_bytes());
        format!("v-{}", &hex::encode(digest)[..16])
    }
}

/// The run's output folder, decided once the manifest is known.
pub fn output_folder(
    prefix: &ObjectPath,
    run: &RunRecord,
    manifest: &ManifestSummary,
) -> Result<ObjectPath, StorageError> {
    let req = &run.request;
    let (month, who) = match &req.scope {
        ExportScope::Invoice { invoice_id } => (
            billing_month(&manifest.root_directory).unwrap_or_else(|| "unknown-month".into()),
            invoice_id.to_string(),
        ),
        ExportScope::Period { period, currency } => (
            billing_month(&manifest.root_directory).unwrap_or_else(|| format!("{period}-period")),
            currency.to_string(),
        ),
    };
    prefix.join(&format!(
        "{}/{}/{}/{}/{}",
        req.kind.slug(),
        month,
        who,
        req.attribute_set,
        data_version(&manifest.etag)
    ))
}

/// Folder of a run Graph had no data for (code 5000): beside the data versions of the same
/// export, named `no-data` so no reader takes it for a data version. Holds `_manifest.json` only.
pub fn no_data_folder(prefix: &ObjectPath, run: &RunRecord) -> Result<ObjectPath, StorageError> {
    let req = &run.request;
    let (month, who) = match &req.scope {
        ExportScope::Invoice { invoice_id } => (
            run_billing_month(run).unwrap_or_else(|| "unknown-month".into()),
            invoice_id.to_string(),
        ),
        ExportScope::Period { period, currency } => (
            run_billing_month(run).unwrap_or_else(|| format!("{period}-period")),
            currency.to_string(),
        ),
    };
    prefix.join(&format!(
        "{}/{}/{}/{}/no-data",
        req.kind.slug(),
        month,
        who,
        req.attribute_set
    ))
}

/// The billing month (`yyyyMM`) a run is about, when known: Microsoft's `rootDirectory`, or
/// for an unbilled period the month the run was created in (`current`) or the one before
/// (`last`). A billed run without data version knows it only if planning found its invoice's
/// month in Partner Center.
pub fn run_billing_month(run: &RunRecord) -> Option<String> {
    if let Some(m) = run
        .manifest
        .as_ref()
        .and_then(|m| billing_month(&m.root_directory))
    {
        return Some(m);
    }
    match &run.request.scope {
        ExportScope::Invoice { .. } => run.planned_month.clone(),
        ExportScope::Period { period, .. } => {
            let d = run.created_at.date();
            let (y, m) = match period {
                crate::billing::BillingPeriod::Current => (d.year(), d.month()),
                crate::billing::BillingPeriod::Last => match d.month() {
                    time::Month::January => (d.year() - 1, time::Month::December),
                    m => (d.year(), m.previous()),
                },
            };
            Some(format!("{y:04}{:02}", u8::from(m)))
        }
    }
}

/// Longest blob name Azure Storage accepts: 1,024 characters ("Naming and Referencing
/// Containers, Blobs, and Metadata", section "Blob names":
/// <https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata>).
/// We count UTF-8 bytes, which are never fewer than characters, so a path within this bound is
/// within Azure's.
pub const MAX_BLOB_PATH_BYTES: usize = 1024;

/// Longest file name we give a partition. The same layout is written by the filesystem sink
/// (local mode, the `export` command), where a name is one path component (255 bytes on common
/// file systems) and gets a temporary `.{name}.{32 hex}.partial` sibling while it is written.
pub const MAX_PART_FILE_BYTES: usize = 200;

/// `~` and 16 hex digits of the source name's MD5: what tells a renamed partition apart.
const HASH_SUFFIX_BYTES: usize = 17;
/// Room a file name needs for a hash suffix and an extension, at the least.
const MIN_FILE_BUDGET: usize = 48;

/// Destinations of a manifest's partitions, in manifest order, all inside `folder`, all
/// distinct, none on a name of ours. The rules, applied in order:
///
/// 1. **Flattened.** A name is reduced to its last segment; a name that had folders gets its
///    manifest index in front (`sub/part-1.json.gz` → `00003-part-1.json.gz`), so blobs sharing a
///    last segment in different sub-folders stay apart. Names without folders are kept as they
///    are (Microsoft's `part-00049-<uuid>.c000.json.gz` lands byte for byte).
/// 2. **Ours are reserved.** A name that would land on `_manifest.json` (any case), or that
///    starts with `_` or `.` (run metadata, the filesystem sink's temporary files; Spark-style
///    readers skip such files too) gets its index in front as well: `_manifest.json` →
///    `00002-_manifest.json`. The run ledger lives in `{prefix}/_ledger/`, outside every run
///    folder, so no flattened name reaches it.
/// 3. **Bounded.** A file name longer than [`MAX_PART_FILE_BYTES`], or one that would make the
///    whole path exceed [`MAX_BLOB_PATH_BYTES`], is shortened: its stem is cut (on a character
///    boundary) and `~` plus 16 hex digits of the MD5 of the full source name are added before
///    the extension (`.c000.json.gz` and the like are kept).
/// 4. **Distinct.** Names still colliding after that (a source name that looks like another's
///    mapped name, two names shortened alike) are told apart deterministically: a name kept as
///    Microsoft wrote it (rule 1, unchanged) keeps it, every other one gets the hash suffix
///    (with a counter mixed into the hash until it is free), in manifest order.
///
/// The same manifest always maps the same way, so a rerun of unchanged data finds its copies.
/// Fails only when `folder` leaves no room for a name (a very long `DESTINATION_PREFIX`).
pub fn part_paths(folder: &ObjectPath, names: &[&str]) -> Result<Vec<ObjectPath>, StorageError> {
    let budget = MAX_PART_FILE_BYTES.min(
        MAX_BLOB_PATH_BYTES
            .saturating_sub(folder.as_str().len())
            .saturating_sub(1),
    );
    if budget < MIN_FILE_BUDGET {
        return Err(StorageError::InvalidPath(format!(
            "{}/… leaves {budget} bytes for partition names (at most {MAX_BLOB_PATH_BYTES} in all); \
             shorten DESTINATION_PREFIX",
            folder.as_str().chars().take(120).collect::<String>()
        )));
    }
    let raw: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| natural_name(i, name))
        .collect();
    let natural: Vec<String> = raw
        .iter()
        .zip(names)
        .map(|(r, name)| fit(r, name, budget, 0))
        .collect();
    let mut taken: std::collections::HashSet<String> =
        [RUN_MANIFEST_NAME.to_string()].into_iter().collect();
    let mut chosen: Vec<Option<String>> = vec![None; names.len()];
    // Names kept exactly as Microsoft wrote them come first: they are unique in a manifest.
    for (i, name) in names.iter().enumerate() {
        if natural[i] == *name && taken.insert(natural[i].clone()) {
            chosen[i] = Some(natural[i].clone());
        }
    }
    for (i, name) in names.iter().enumerate() {
        if chosen[i].is_some() {
            continue;
        }
        let mut candidate = natural[i].clone();
        let mut round = 0u32;
        while !taken.insert(candidate.clone()) {
            round += 1;
            candidate = with_hash(&raw[i], name, budget, round);
        }
        chosen[i] = Some(candidate);
    }
    chosen
        .into_iter()
        .map(|c| folder.join(&c.expect("every name chosen above")))
        .collect()
}

/// Rules 1 and 2: the last segment, with the index in front when the name had folders or
/// would land on a reserved name.
fn natural_name(index: usize, blob_name: &str) -> String {
    let base = blob_name.rsplit('/').next().unwrap_or(blob_name);
    if blob_name.contains('/') || is_reserved(base) {
        format!("{index:05}-{base}")
    } else {
        base.to_string()
    }
}

/// Names of ours, or that look like ours, inside a run folder.
fn is_reserved(file_name: &str) -> bool {
    file_name.eq_ignore_ascii_case(RUN_MANIFEST_NAME)
        || file_name.starts_with('_')
        || file_name.starts_with('.')
}

/// Rule 3: `name` itself when it fits `budget`, else shortened with a hash suffix.
fn fit(name: &str, source: &str, budget: usize, round: u32) -> String {
    if name.len() <= budget {
        name.to_string()
    } else {
        with_hash(name, source, budget, round)
    }
}

/// `{stem cut to fit}~{16 hex of MD5(source, round)}{extension}`, at most `budget` bytes.
fn with_hash(name: &str, source: &str, budget: usize, round: u32) -> String {
    let (stem, ext) = split_extension(name);
    let mut input = source.as_bytes().to_vec();
    if round > 0 {
        input.extend_from_slice(format!("\0{round}").as_bytes());
    }
    let digest = <md5::Md5 as md5::Digest>::digest(&input);
    let hash = &hex::encode(digest)[..HASH_SUFFIX_BYTES - 1];
    let room = budget.saturating_sub(ext.len() + HASH_SUFFIX_BYTES);
    let mut cut = room.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash}{ext}", &stem[..cut])
}

/// The extension: up to three trailing `.xxx` parts of 1 to 10 ASCII letters or digits
/// (`.c000.json.gz`, `.csv`), never the whole name.
fn split_extension(name: &str) -> (&str, &str) {
    let mut start = name.len();
    for _ in 0..3 {
        let Some(dot) = name[..start].rfind('.') else {
            break;
        };
        let part = &name[dot + 1..start];
        if dot == 0
            || part.is_empty()
            || part.len() > 10
            || !part.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            break;
        }
        start = dot;
    }
    name.split_at(start)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunManifest<'a> {
    pub schema_version: &'static str,
    pub run_info: RunInfo<'a>,
    pub request: &'a crate::billing::ExportRequest,
    /// Graph had no data for the export (code 5000): no source, no blobs.
    pub no_data: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_data_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_month: Option<String>,
    pub blob_count: usize,
    pub byte_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_row_count: Option<u64>,
    pub blobs: Vec<BlobEntry<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo<'a> {
    pub run_id: &'a str,
    pub trigger: super::run::Trigger,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    pub polls: u32,
    pub restarts: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceInfo<'a> {
    pub manifest_id: &'a str,
    pub e_tag: &'a str,
    pub schema_version: &'a str,
    pub data_format: &'a str,
    pub partner_tenant_id: &'a str,
    /// Without any SAS.
    pub root_directory: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_month: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_date_time: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobEntry<'a> {
    /// Path relative to the run folder.
    pub blob_name: &'a str,
    pub source_name: &'a str,
    pub partition_value: &'a str,
    pub byte_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_row_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<&'a str>,
    /// The typed Parquet file derived from it, relative to the run folder (`OUTPUT_FORMATS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet_name: Option<String>,
    /// Its FOCUS view, relative to the run folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub focus_name: Option<String>,
}

pub fn run_manifest(run: &RunRecord) -> Option<RunManifest<'_>> {
    let m = run.manifest.as_ref();
    if m.is_none() && !run.no_data {
        return None;
    }
    Some(RunManifest {
        schema_version: "1.0",
        run_info: RunInfo {
            run_id: run.run_id.as_str(),
            trigger: run.trigger,
            started_at: run.created_at,
            completed_at: run.finished_at,
            polls: run.polls,
            restarts: run.restarts,
        },
        request: &run.request,
        no_data: run.no_data,
        no_data_reason: run.no_data_reason.as_deref(),
        source: m.map(|m| SourceInfo {
            manifest_id: &m.id,
            e_tag: &m.etag,
            schema_version: &m.schema_version,
            data_format: &m.data_format,
            partner_tenant_id: &m.partner_tenant_id,
            root_directory: &m.root_directory,
            billing_month: billing_month(&m.root_directory),
            created_date_time: m.created_date_time,
        }),
        billing_month: run_billing_month(run),
        blob_count: run.parts.len(),
        byte_count: run.bytes_copied(),
        data_row_count: run.rows_copied(),
        blobs: run
            .parts
            .iter()
            .map(|p| BlobEntry {
                blob_name: p.dest.file_name(),
                source_name: &p.name,
                partition_value: &p.partition_value,
                byte_count: p.bytes,
                data_row_count: p.rows,
                content_md5: p.md5.as_deref(),
                parquet_name: p.parquet_bytes.and_then(|_| derived_name(run, p, 0)),
                focus_name: p.parquet_bytes.and_then(|_| derived_name(run, p, 1)),
            })
            .collect(),
    })
}
/// A derived file's path relative to the run folder (0: typed Parquet, 1: FOCUS).
fn derived_name(run: &RunRecord, p: &super::run::PartRecord, which: usize) -> Option<String> {
    let folder = run.output_folder.as_ref()?;
    let (typed, focus) = super::derived::derived_paths(folder, p).ok()?;
    let full = if which == 0 { typed } else { focus };
    full.as_str()
        .strip_prefix(folder.as_str())
        .map(|r| r.trim_start_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_month_from_root_directory() {
        let root = "https://x.blob.core.windows.net/billedusagefastpath/v1/PartnerTenantId=t/BillingMonth=202310/InvoiceId=G1/InvoiceVersion=202311/Fragment=basic/PartitionType=default";
        assert_eq!(billing_month(root).as_deref(), Some("202310"));
        assert_eq!(billing_month("https://x/BillingMonth=20231/y"), None);
        assert_eq!(billing_month("https://x/y"), None);
    }

    #[test]
    fn data_versions_are_path_safe() {
        assert_eq!(data_version("WYjLro78HdMg6vUWR"), "v-WYjLro78HdMg6vUWR");
        let odd = data_version("W/\"0x8DB..\"/../x");
        assert!(
            odd.starts_with("v-")
                && odd.len() == 18
                && odd.chars().skip(2).all(|c| c.is_ascii_hexdigit()),
            "{odd}"
        );
        assert_ne!(data_version("a b"), data_version("a c"));
    }

    fn paths(folder: &ObjectPath, names: &[&str]) -> Vec<String> {
        part_paths(folder, names)
            .unwrap()
            .into_iter()
            .map(|p| {
                p.as_str()
                    .strip_prefix(&format!("{folder}/"))
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn folder() -> ObjectPath {
        ObjectPath::new("p/billed-usage/202310/G1/full/v-abc").unwrap()
    }

    #[test]
    fn part_paths_stay_inside_the_run_folder() {
        let f = ObjectPath::new("p/billed-usage/202310/G1/full/r").unwrap();
        let got = part_paths(
            &f,
            &["part-00000-x.json.gz", "a/b", "c/d", "sub/part-1.json.gz"],
        )
        .unwrap();
        assert_eq!(
            got[0].as_str(),
            "p/billed-usage/202310/G1/full/r/part-00000-x.json.gz"
        );
        assert_eq!(
            got[3].as_str(),
            "p/billed-usage/202310/G1/full/r/00003-part-1.json.gz"
        );
    }

    #[test]
    fn a_blob_named_like_our_manifest_does_not_replace_it() {
        for evil in ["_manifest.json", "_MANIFEST.JSON", "sub/_manifest.json"] {
            let got = paths(&folder(), &["part-0.json.gz", evil]);
            assert_ne!(got[1].to_ascii_lowercase(), RUN_MANIFEST_NAME, "{evil}");
            assert!(
                got[1].ends_with("_manifest.json") || got[1].ends_with("_MANIFEST.JSON"),
                "{got:?}"
            );
            assert_eq!(got[0], "part-0.json.gz");
        }
        assert_eq!(
            paths(&folder(), &["x", "_manifest.json"])[1],
            "00001-_manifest.json"
        );
        // Other names of ours (underscore metadata, dot files) are moved aside the same way.
        assert_eq!(
            paths(&folder(), &[".x.partial", "_SUCCESS"]),
            ["00000-.x.partial", "00001-_SUCCESS"]
        );
    }

    #[test]
    fn names_colliding_after_mapping_get_distinct_deterministic_paths() {
        // `sub/part-1.json.gz` at index 1 maps to `00001-part-1.json.gz`, which is also a
        // top-level name in the same manifest.
        let names = [
            "00001-part-1.json.gz",
            "sub/part-1.json.gz",
            "other/part-1.json.gz",
        ];
        let got = paths(&folder(), &names);
        assert_eq!(
            got[0], "00001-part-1.json.gz",
            "the unmapped name keeps its own"
        );
        assert!(
            got[1].starts_with("00001-part-1~") && got[1].ends_with(".json.gz"),
            "{got:?}"
        );
        assert_eq!(got[2], "00002-part-1.json.gz");
        let unique: std::collections::HashSet<_> = got.iter().collect();
        assert_eq!(unique.len(), 3);
        assert_eq!(paths(&folder(), &names), got, "deterministic");
        // The order of the manifest does not decide who keeps the plain name.
        let swapped = paths(&folder(), &["sub/part-1.json.gz", "00000-part-1.json.gz"]);
        assert_eq!(swapped[1], "00000-part-1.json.gz");
        assert!(swapped[0].starts_with("00000-part-1~"), "{swapped:?}");
        // A source name that looks like the renamed one pushes it further, still distinct.
        let lookalike = got[1].clone();
        let names2 = [
            "00001-part-1.json.gz",
            "sub/part-1.json.gz",
            lookalike.as_str(),
        ];
        let got2 = paths(&folder(), &names2);
        let unique: std::collections::HashSet<_> = got2.iter().collect();
        assert_eq!(unique.len(), 3, "{got2:?}");
        assert_eq!(got2[2], lookalike);
    }

    #[test]
    fn long_names_are_shortened_keeping_the_extension() {
        let long = format!("part-00000-{}.c000.json.gz", "x".repeat(1000));
        let long2 = format!("part-00000-{}y.c000.json.gz", "x".repeat(999));
        let got = paths(&folder(), &[&long, &long2]);
        for g in &got {
            assert!(g.len() <= MAX_PART_FILE_BYTES, "{}", g.len());
            assert!(
                g.starts_with("part-00000-xxx") && g.ends_with(".c000.json.gz"),
                "{g}"
            );
            assert!(g.contains('~'));
        }
        assert_ne!(
            got[0], got[1],
            "same prefix, different names, different paths"
        );
        assert_eq!(paths(&folder(), &[&long, &long2]), got);
        // Multi-byte characters are cut on a boundary.
        let wide = format!("{}.json.gz", "é".repeat(400));
        let got = paths(&folder(), &[&wide]);
        assert!(
            got[0].len() <= MAX_PART_FILE_BYTES && got[0].ends_with(".json.gz"),
            "{got:?}"
        );
        // A name exactly at the bound is kept.
        let edge = format!("{}.json.gz", "a".repeat(MAX_PART_FILE_BYTES - 8));
        assert_eq!(paths(&folder(), &[&edge]), [edge]);
    }

    #[test]
    fn whole_paths_stay_within_azure_blob_name_limit() {
        // A deep folder (long DESTINATION_PREFIX) leaves less room than MAX_PART_FILE_BYTES.
        let deep = ObjectPath::new(format!(
            "{}/billed-usage/202310/G1/full/v-abc",
            "p".repeat(850)
        ))
        .unwrap();
        let name = format!("part-00000-{}.c000.json.gz", "z".repeat(300));
        let got = part_paths(&deep, &[&name, "short.json.gz"]).unwrap();
        assert!(
            got[0].as_str().len() <= MAX_BLOB_PATH_BYTES,
            "{}",
            got[0].as_str().len()
        );
        assert!(got[0].as_str().ends_with(".c000.json.gz"));
        assert!(got[1].as_str().ends_with("/short.json.gz"));
        // A folder that leaves no room is a clear error, not a copy failing later.
        let too_deep = ObjectPath::new("q".repeat(1000)).unwrap();
        let e = part_paths(&too_deep, &["a.json.gz"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DESTINATION_PREFIX"), "{e}");
    }

    #[test]
    fn extensions() {
        assert_eq!(
            split_extension("part-1.c000.json.gz"),
            ("part-1", ".c000.json.gz")
        );
        assert_eq!(split_extension("a.b.c.d.e"), ("a.b", ".c.d.e"));
        assert_eq!(split_extension("noext"), ("noext", ""));
        assert_eq!(split_extension(".hidden"), (".hidden", ""));
        assert_eq!(
            split_extension("x.verylongextension"),
            ("x.verylongextension", "")
        );
    }
}
