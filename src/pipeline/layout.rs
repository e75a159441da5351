//! Where a run's files land in the partner's storage, and the run's `_manifest.json`, modelled
//! on Azure Cost Management exports so FinOps tooling that ingests those can ingest ours:
//! `{prefix}/{kind}/{billing month or period}/{invoice or currency}/{attributeSet}/{runId}/…`

use serde::Serialize;
use time::OffsetDateTime;

use super::run::RunRecord;
use crate::adapters::storage::{ObjectPath, StorageError};
use crate::billing::{ExportScope, ManifestSummary};

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

/// Destination of one partition: the folder plus the blob name's last segment (names are
/// validated relative paths; we flatten them so nothing escapes the run folder).
pub fn part_path(
    folder: &ObjectPath,
    index: u32,
    blob_name: &str,
) -> Result<ObjectPath, StorageError> {
    let base = blob_name.rsplit('/').next().unwrap_or(blob_name);
    // Two blobs could share a last segment in different sub-folders: keep them apart.
    if blob_name.contains('/') {
        folder.join(&format!("{index:05}-{base}"))
    } else {
        folder.join(base)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunManifest<'a> {
    pub schema_version: &'static str,
    pub run_info: RunInfo<'a>,
    pub request: &'a crate::billing::ExportRequest,
    pub source: SourceInfo<'a>,
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
}

pub fn run_manifest(run: &RunRecord) -> Option<RunManifest<'_>> {
    let m = run.manifest.as_ref()?;
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
        source: SourceInfo {
            manifest_id: &m.id,
            e_tag: &m.etag,
            schema_version: &m.schema_version,
            data_format: &m.data_format,
            partner_tenant_id: &m.partner_tenant_id,
            root_directory: &m.root_directory,
            billing_month: billing_month(&m.root_directory),
            created_date_time: m.created_date_time,
        },
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
            })
            .collect(),
    })
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

    #[test]
    fn part_paths_stay_inside_the_run_folder() {
        let f = ObjectPath::new("p/billed-usage/202310/G1/full/r").unwrap();
        assert_eq!(
            part_path(&f, 0, "part-00000-x.json.gz").unwrap().as_str(),
            "p/billed-usage/202310/G1/full/r/part-00000-x.json.gz"
        );
        assert_eq!(
            part_path(&f, 3, "sub/part-1.json.gz").unwrap().as_str(),
            "p/billed-usage/202310/G1/full/r/00003-part-1.json.gz"
        );
    }
}
