//! What Graph answers: operations and manifests, already validated. Parsing lives in
//! `operation.rs` and `manifest.rs`; these types are what the rest of the crate sees.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::auth::Secret;

/// One partition file listed in a manifest. `name` is validated: relative, no `..`, no `?`/`#`,
/// no backslash or control characters, at most 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestBlob {
    pub name: String,
    #[serde(default)]
    pub partition_value: String,
}

/// The export manifest (`microsoft.graph.partners.billing.manifest`), SAS kept apart as a
/// [`Secret`] so it is never serialized into the ledger, a queue message or a log line.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub id: String,
    pub schema_version: String,
    pub data_format: String,
    pub created_date_time: Option<OffsetDateTime>,
    pub etag: String,
    pub partner_tenant_id: String,
    /// Absolute URL of the folder holding the blobs, kept exactly as given (it contains `=`).
    pub root_directory: String,
    pub sas_token: Secret,
    pub partition_type: String,
    pub blob_count: u32,
    pub blobs: Vec<ManifestBlob>,
}

/// The manifest without its SAS: what the ledger stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSummary {
    pub id: String,
    pub schema_version: String,
    pub data_format: String,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub created_date_time: Option<OffsetDateTime>,
    pub etag: String,
    pub partner_tenant_id: String,
    /// `rootDirectory` without any query string.
    pub root_directory: String,
    pub partition_type: String,
    pub blob_count: u32,
    pub blobs: Vec<ManifestBlob>,
}

impl Manifest {
    pub fn summary(&self) -> ManifestSummary {
        ManifestSummary {
            id: self.id.clone(),
            schema_version: self.schema_version.clone(),
            data_format: self.data_format.clone(),
            created_date_time: self.created_date_time,
            etag: self.etag.clone(),
            partner_tenant_id: self.partner_tenant_id.clone(),
            root_directory: self.root_directory.clone(),
            partition_type: self.partition_type.clone(),
            blob_count: self.blob_count,
            blobs: self.blobs.clone(),
        }
    }

    /// `{rootDirectory}/{name}?{sasToken}` built by concatenation: the SAS is already
    /// percent-encoded and the root contains `=`, so neither may be re-encoded.
    pub fn blob_url(&self, blob: &ManifestBlob) -> Result<Url, url::ParseError> {
        let root = self.root_directory.trim_end_matches('/');
        let sas = self.sas_token.expose().trim_start_matches('?');
        let s = if sas.is_empty() {
            format!("{root}/{}", blob.name)
        } else {
            format!("{root}/{}?{sas}", blob.name)
        };
        Url::parse(&s)
    }

    /// When the SAS stops working (`se=`), if the token says.
    pub fn sas_expiry(&self) -> Option<OffsetDateTime> {
        crate::billing::wire::sas_expiry(self.sas_token.expose())
    }
}

/// Where a successful operation says its manifest is.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestLocation {
    /// `resourceLocation` as an inline object (Microsoft's sample and real responses).
    Inline(Box<Manifest>),
    /// `resourceLocation@odata.navigationLink` (the documented shape), already checked to be a URL.
    Link(Url),
}

/// `error` of a `failedOperation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationError {
    pub code: String,
    pub message: String,
}

/// The state of an export operation, decided from `@odata.type` first and `status` second.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationState {
    /// `notStarted`, `running`, or any status we do not know: keep polling. `status` is the raw value.
    Running {
        status: String,
    },
    Succeeded {
        manifest: ManifestLocation,
    },
    Failed {
        error: OperationError,
    },
}

/// One GET of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationPoll {
    pub id: String,
    pub state: OperationState,
    /// From the `Retry-After` header, already clamped to the configured bounds.
    pub retry_after: Option<Duration>,
    pub created_date_time: Option<OffsetDateTime>,
    pub last_action_date_time: Option<OffsetDateTime>,
}

/// What polling an operation can lead to.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    Operation(OperationPoll),
    /// `410 Gone`: the operation outlived its lifetime; the export must be started again.
    Gone,
}

/// The answer to an export POST.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedExport {
    /// The 202's `Location`, checked against the Graph allow-list.
    pub operation_url: Url,
    pub retry_after: Option<Duration>,
}
