//! The destination account: endpoint, authorization (our bearer policy or a SAS) and SDK clients.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    ClientOptions, Context, ExponentialRetryOptions, Request, RetryOptions, Url,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
};

use super::super::relay::STORAGE_API_VERSION;
use super::super::storage::{ObjectPath, StorageError};
use crate::auth::{redact_url, Audience, Secret, TokenSource};

use super::errors::*;

/// How requests to the account are authorized.
#[derive(Clone)]
pub enum BlobAuth {
    /// A bearer token for Azure Storage from our token source (managed identity in Azure).
    Token(Arc<dyn TokenSource>),
    /// A SAS query string (account or container SAS), appended to every request.
    Sas(Secret),
}

impl std::fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobAuth::Token(t) => f.debug_tuple("Token").field(t).finish(),
            BlobAuth::Sas(_) => f.write_str("Sas(<redacted>)"),
        }
    }
}

/// A storage account's blob endpoint plus its authorization; hands out SDK clients.
#[derive(Debug, Clone)]
pub struct BlobAccount {
    /// Without query, without trailing slash.
    account_url: Url,
    auth: BlobAuth,
}

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

pub(super) fn config_err(msg: impl Into<String>) -> StorageError {
    StorageError::Destination(msg.into())
}

impl BlobAccount {
    /// `account_url` like `https://contoso.blob.core.windows.net` (Azurite:
    /// `http://127.0.0.1:10000/devstoreaccount1`), authorized by `tokens` (audience Storage).
    pub fn with_token(
        account_url: &Url,
        tokens: Arc<dyn TokenSource>,
    ) -> Result<Self, StorageError> {
        let url = Self::base(account_url)?;
        if url.scheme() != "https" && !is_loopback(&url) {
            return Err(config_err(format!(
                "{}: a token is only sent over https (plain http only to loopback)",
                redact_url(&url)
            )));
        }
        Ok(Self {
            account_url: url,
            auth: BlobAuth::Token(tokens),
        })
    }

    /// `account_url` authorized by a SAS query string (`sv=...&sig=...`, no leading `?`).
    pub fn with_sas(account_url: &Url, sas: Secret) -> Result<Self, StorageError> {
        let url = Self::base(account_url)?;
        let q = sas.expose().trim_start_matches('?');
        if !q.contains("sig=") {
            return Err(config_err("the SAS has no signature (sig=)"));
        }
        Ok(Self {
            account_url: url,
            auth: BlobAuth::Sas(Secret::new(q)),
        })
    }

    /// An account SAS URL (`https://acct.blob.core.windows.net?sv=...&sig=...`).
    pub fn from_sas_url(url: &Url) -> Result<Self, StorageError> {
        let sas = url
            .query()
            .ok_or_else(|| config_err(format!("{}: no SAS query", redact_url(url))))?
            .to_string();
        Self::with_sas(url, Secret::new(sas))
    }

    fn base(url: &Url) -> Result<Url, StorageError> {
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(config_err(format!(
                "{}: not an http(s) storage endpoint",
                redact_url(url)
            )));
        }
        let mut u = url.clone();
        u.set_query(None);
        u.set_fragment(None);
        // A trailing slash would make the SDK produce `//container` paths.
        let path = u.path().trim_end_matches('/').to_string();
        u.set_path(&path);
        Ok(u)
    }

    /// The URL of `container` / `path` without any SAS, percent-encoded per segment.
    pub fn blob_url(&self, container: &str, path: Option<&ObjectPath>) -> Url {
        let mut u = self.account_url.clone();
        {
            let mut segs = u.path_segments_mut().expect("http(s) URLs have a path");
            segs.pop_if_empty().push(container);
            if let Some(p) = path {
                segs.extend(p.as_str().split('/'));
            }
        }
        u
    }

    fn with_auth(&self, mut url: Url) -> (Url, ClientOptions) {
        let mut options = ClientOptions {
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(200),
                max_retries: 3,
                max_total_elapsed: azure_core::time::Duration::seconds(30),
                max_delay: azure_core::time::Duration::seconds(5),
            }),
            ..Default::default()
        };
        match &self.auth {
            BlobAuth::Sas(sas) => url.set_query(Some(sas.expose())),
            BlobAuth::Token(tokens) => options.per_try_policies.push(Arc::new(BearerPolicy {
                tokens: tokens.clone(),
            })),
        }
        (url, options)
    }

    pub fn blob_client(
        &self,
        container: &str,
        path: &ObjectPath,
    ) -> Result<BlobClient, StorageError> {
        let (url, client_options) = self.with_auth(self.blob_url(container, Some(path)));
        BlobClient::new(
            url,
            None,
            Some(BlobClientOptions {
                client_options,
                version: STORAGE_API_VERSION.into(),
            }),
        )
        .map_err(|e| config_err(format!("blob client: {}", describe(&e))))
    }

    pub fn container_client(&self, container: &str) -> Result<BlobContainerClient, StorageError> {
        let (url, client_options) = self.with_auth(self.blob_url(container, None));
        BlobContainerClient::new(
            url,
            None,
            Some(BlobContainerClientOptions {
                client_options,
                version: STORAGE_API_VERSION.into(),
            }),
        )
        .map_err(|e| config_err(format!("container client: {}", describe(&e))))
    }

    /// Creates `container` unless it exists (infra normally does; tests and local runs need it).
    pub async fn ensure_container(&self, container: &str) -> Result<(), StorageError> {
        match self.container_client(container)?.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(config_err(format!(
                "creating container {container}: {}",
                describe(&e)
            ))),
        }
    }
}

/// Attaches `Authorization: Bearer` from our (cached) token source on every try.
#[derive(Debug)]
pub(super) struct BearerPolicy {
    tokens: Arc<dyn TokenSource>,
}

#[async_trait]
impl Policy for BearerPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        // Checked per request too: a client is only built from a checked account URL, but
        // a token must never leave in clear text whatever URL a request ends up with.
        if request.url().scheme() != "https" && !is_loopback(request.url()) {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "refusing to send a storage token over plain http to a non-loopback host",
            ));
        }
        let token = self
            .tokens
            .token(Audience::Storage)
            .await
            .map_err(|e| azure_core::Error::new(azure_core::error::ErrorKind::Credential, e))?;
        request.insert_header("authorization", format!("Bearer {}", token.secret.expose()));
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// Container names: 3-63 characters, lowercase letters, digits and single hyphens.
pub(super) fn validate_container(c: &str) -> Result<(), StorageError> {
    let ok = (3..=63).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--");
    if ok {
        Ok(())
    } else {
        Err(config_err(format!("{c:?} is not a valid container name")))
    }
}
