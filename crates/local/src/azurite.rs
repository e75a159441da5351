//! Azurite, the real Azure Storage emulator (npm `azurite`), started on a free loopback port with
//! two accounts: one playing Microsoft's billing storage (the sandbox writes partitions there)
//! and one playing the partner's account. Also the account-SAS signer both sides use, since
//! azure_storage_blob 1.x has no Shared Key support.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use url::Url;

use partner_billing_export::auth::Secret;

/// Azurite's documented development account and key.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The account that plays the partner's storage.
pub const PARTNER_ACCOUNT: &str = "partnerdest";
/// Service version of our SAS tokens (Azurite 3.35 accepts up to 2025-11-05).
pub const SAS_VERSION: &str = "2021-08-06";

#[derive(Debug, Clone)]
pub struct StorageAccount {
    pub name: String,
    pub key: Secret,
}

impl StorageAccount {
    /// An account SAS for the blob service (`ss=b`, `srt=sco`), e.g. `sp=rl` to read and list.
    pub fn sas(&self, permissions: &str, expiry: OffsetDateTime) -> String {
        account_sas(&self.name, &self.key, permissions, expiry)
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Signs an account SAS as Azure Storage documents it (string-to-sign with the signed
/// encryption scope line, sv 2020-12-06 and later).
pub fn account_sas(
    account: &str,
    key: &Secret,
    permissions: &str,
    expiry: OffsetDateTime,
) -> String {
    let se = functions_runtime::codec::seconds_utc(expiry);
    let (ss, srt, spr) = ("b", "sco", "https,http");
    let to_sign =
        format!("{account}\n{permissions}\n{ss}\n{srt}\n\n{se}\n\n{spr}\n{SAS_VERSION}\n\n");
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(key.expose())
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key_bytes).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "sv={SAS_VERSION}&ss={ss}&srt={srt}&sp={permissions}&se={}&spr={}&sig={}",
        encode(&se),
        encode(spr),
        encode(&sig)
    )
}

/// A running Azurite blob service; stopped when dropped.
pub struct Azurite {
    child: tokio::process::Child,
    pub blob_port: u16,
    pub accounts: Vec<StorageAccount>,
}

/// Where `npm ci` puts Azurite's blob entry point, searched from `start` upwards.
pub fn find_azurite(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join("node_modules/azurite/dist/src/blob/main.js"))
        .find(|p| p.exists())
}

impl Azurite {
    /// Starts Azurite's blob service with the development account and the partner account.
    /// `data_dir` holds Azurite's files (the caller owns and removes it).
    pub async fn start(search_from: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let main = find_azurite(search_from).with_context(|| {
            format!(
                "Azurite is not installed under {} (run `npm ci` in the repository, or scripts/test.sh, which does)",
                search_from.display()
            )
        })?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        // A free port can be taken before Azurite binds it (parallel tests): try another.
        for attempt in 1..=5 {
            if let Some(me) = Self::launch(&main, data_dir).await? {
                return Ok(me);
            }
            tracing::warn!(
                attempt,
                "Azurite exited during start-up; retrying on another port"
            );
        }
        bail!("Azurite exited during start-up 5 times")
    }

    async fn launch(main: &Path, data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut raw = [0u8; 64];
        raw.iter_mut()
            .zip(uuid::Uuid::new_v4().as_bytes().iter().cycle())
            .for_each(|(a, b)| *a = *b);
        let partner = StorageAccount {
            name: PARTNER_ACCOUNT.into(),
            key: Secret::new(base64::engine::general_purpose::STANDARD.encode(raw)),
        };
        let dev = StorageAccount {
            name: DEV_ACCOUNT.into(),
            key: Secret::new(DEV_KEY),
        };
        let accounts_env = format!(
            "{}:{};{}:{}",
            dev.name,
            dev.key.expose(),
            partner.name,
            partner.key.expose()
        );
        let child = tokio::process::Command::new("node")
            .arg(main)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(data_dir)
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--loose"])
            .env("AZURITE_ACCOUNTS", accounts_env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting Azurite with node (is Node.js installed?)")?;
        let mut me = Self {
            child,
            blob_port: port,
            accounts: vec![dev, partner],
        };
        // Ready when *this* instance answers a request signed with this instance's random
        // partner key (another Azurite on a recycled port would refuse it).
        let probe = format!(
            "{}?comp=list&{}",
            me.account_url(PARTNER_ACCOUNT),
            me.account(PARTNER_ACCOUNT)
                .sas("l", OffsetDateTime::now_utc() + Duration::from_secs(600))
        );
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = http
                .get(&probe)
                .header("x-ms-version", SAS_VERSION)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(Some(me));
            }
            if me.child.try_wait()?.is_some() {
                return Ok(None);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("Azurite did not answer on port {port} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn account(&self, name: &str) -> &StorageAccount {
        self.accounts
            .iter()
            .find(|a| a.name == name)
            .expect("known account")
    }

    /// `http://127.0.0.1:{port}/{account}` (path-style, no trailing slash).
    pub fn account_url(&self, name: &str) -> Url {
        Url::parse(&format!("http://127.0.0.1:{}/{name}", self.blob_port)).expect("loopback URL")
    }

    /// Creates a container if it does not exist (201 or 409 are both fine).
    pub async fn create_container(
        &self,
        http: &reqwest::Client,
        account: &str,
        container: &str,
    ) -> anyhow::Result<()> {
        let acct = self.account(account);
        let sas = acct.sas(
            "rwdlac",
            OffsetDateTime::now_utc() + Duration::from_secs(3600),
        );
        let url = format!(
            "{}/{container}?restype=container&{sas}",
            self.account_url(account)
        );
        let res = http
            .put(url)
            .header("x-ms-version", SAS_VERSION)
            .send()
            .await?;
        match res.status().as_u16() {
            201 | 409 => Ok(()),
            s => bail!("creating container {container} in {account}: HTTP {s}"),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
