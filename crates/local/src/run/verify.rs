//! Reads back what landed and checks it against what the Graph sandbox served.

use std::collections::HashMap;

use anyhow::Context;
use serde_json::Value;

use super::LocalSummary;

/// Reads what landed, wherever it landed: files, or blobs (with the partner account's SAS).
pub enum OutputReader {
    Files,
    Blobs { http: reqwest::Client, sas: String },
}

impl OutputReader {
    async fn read(&self, location: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            OutputReader::Files => {
                std::fs::read(location).with_context(|| format!("reading {location}"))
            }
            OutputReader::Blobs { http, sas } => {
                let res = http
                    .get(format!("{location}?{sas}"))
                    .header("x-ms-version", crate::azurite::SAS_VERSION)
                    .send()
                    .await?;
                anyhow::ensure!(
                    res.status().is_success(),
                    "reading {location}: HTTP {}",
                    res.status()
                );
                Ok(res.bytes().await?.to_vec())
            }
        }
    }
}

/// Beside a location (path or URL): `{parent}/{name}`.
fn sibling(location: &str, name: &str) -> String {
    match location.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/{name}"),
        None => name.to_string(),
    }
}

/// Follows each completed run's `_manifest.json` to its partitions and checks every one against
/// the MD5 of what the sandbox served for the same source blob: the bytes are read back, not
/// taken from the pipeline's own records.
pub(super) async fn verify_outputs(
    reader: &OutputReader,
    expected: &HashMap<(String, String), String>,
    summary: &mut LocalSummary,
) -> anyhow::Result<()> {
    let manifests: Vec<String> = summary
        .runs
        .iter()
        .filter_map(|r| r.manifest.clone())
        .collect();
    for location in manifests {
        let m: Value = serde_json::from_slice(&reader.read(&location).await?)
            .with_context(|| format!("{location} is not JSON"))?;
        let root = m["source"]["rootDirectory"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for b in m["blobs"].as_array().cloned().unwrap_or_default() {
            let file = sibling(&location, b["blobName"].as_str().unwrap_or_default());
            let source = b["sourceName"].as_str().unwrap_or_default().to_string();
            let bytes = reader.read(&file).await?;
            let got = hex::encode(<md5::Md5 as md5::Digest>::digest(&bytes));
            summary.partitions += 1;
            summary.bytes += bytes.len() as u64;
            summary.rows += b["dataRowCount"].as_u64().unwrap_or(0);
            for (key, count) in [
                ("parquetName", &mut summary.parquet_files),
                ("focusName", &mut summary.focus_files),
            ] {
                let Some(name) = b[key].as_str() else {
                    continue;
                };
                let file = sibling(&location, name);
                let bytes = reader.read(&file).await?;
                // A whole Parquet file starts and ends with its magic number.
                if bytes.len() >= 8 && bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1") {
                    *count += 1;
                } else {
                    summary
                        .mismatches
                        .push(format!("{file} is not a whole Parquet file"));
                }
            }
            match expected.get(&(root.clone(), source)) {
                Some(want) if *want == got => summary.verified += 1,
                Some(_) => summary
                    .mismatches
                    .push(format!("{file} differs from the source")),
                None => summary
                    .mismatches
                    .push(format!("{file} has no matching source partition")),
            }
        }
    }
    Ok(())
}
