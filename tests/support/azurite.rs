//! Azurite (the Azure Storage emulator) for tests: found in `node_modules` (the project's test
//! script runs `npm ci`; for a manual run `npm ci` in the repo root), started on a free loopback
//! port with two accounts, and killed when dropped. Also signs account SAS tokens, since
//! azure_storage_blob 1.1 has neither Shared Key nor account-key SAS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use partner_billing_export::adapters::blob::BlobAccount;
use partner_billing_export::auth::Secret;
use sha2::Sha256;
use time::OffsetDateTime;
use url::Url;

/// The emulator's documented development account and key.
pub const SOURCE_ACCOUNT: &str = "devstoreaccount1";
pub const SOURCE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// A second account playing the partner's storage.
pub const DEST_ACCOUNT: &str = "partnerdest";

pub struct Azurite {
    child: Child,
    pub port: u16,
    dest_key: String,
    dir: tempfile::TempDir,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The command that runs Azurite's blob service, or a message saying how to install it.
fn azurite_command(root: &Path) -> Command {
    let main_js = root.join("node_modules/azurite/dist/src/blob/main.js");
    let bin = root.join("node_modules/.bin/azurite-blob");
    if main_js.is_file() {
        let mut c = Command::new("node");
        c.arg(main_js);
        c
    } else if bin.is_file() {
        Command::new(bin)
    } else {
        panic!(
            "Azurite is not installed in {}: run scripts/test.sh (it runs `npm ci` for the pinned \
             azurite in package.json) or `npm ci` in the repo root, then rerun the tests",
            root.display()
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Azurite {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let dest_key = base64::engine::general_purpose::STANDARD
            .encode((0..64).map(|_| rand_byte()).collect::<Vec<u8>>());
        let log = std::fs::File::create(dir.path().join("azurite.log")).expect("log file");
        let child = azurite_command(&repo_root())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path())
            .args([
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ])
            .env(
                "AZURITE_ACCOUNTS",
                format!("{SOURCE_ACCOUNT}:{SOURCE_KEY};{DEST_ACCOUNT}:{dest_key}"),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting Azurite (is node on PATH?): {e}"));
        let me = Self {
            child,
            port,
            dest_key,
            dir,
        };
        me.wait_ready().await;
        me
    }

    /// Polls until the blob endpoint answers (any HTTP status), with a deadline.
    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/{SOURCE_ACCOUNT}?comp=list", self.port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if http.get(&url).send().await.is_ok() {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("azurite.log"))
                    .unwrap_or_default();
                panic!(
                    "Azurite did not answer on port {} within 30 s:\n{log}",
                    self.port
                );
            }
            // Poll interval, not a wait for something to happen.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn account_url(&self, account: &str) -> Url {
        Url::parse(&format!("http://127.0.0.1:{}/{account}", self.port)).unwrap()
    }

    fn key(&self, account: &str) -> &str {
        match account {
            SOURCE_ACCOUNT => SOURCE_KEY,
            DEST_ACCOUNT => &self.dest_key,
            other => panic!("unknown account {other}"),
        }
    }

    /// An account SAS (blob service; service, container and object level).
    pub fn account_sas(&self, account: &str, permissions: &str, expiry: OffsetDateTime) -> String {
        account_sas(account, self.key(account), permissions, expiry)
    }

    /// The account with a full-permission SAS, valid for an hour.
    pub fn sas_account(&self, account: &str) -> BlobAccount {
        let sas = self.account_sas(
            account,
            "rwdlacup",
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        );
        BlobAccount::with_sas(&self.account_url(account), Secret::new(sas)).unwrap()
    }

    /// The URL of a blob with a SAS in the query, as a Graph manifest would give it.
    pub fn blob_sas_url(&self, account: &str, container: &str, blob: &str, sas: &str) -> Url {
        let mut u = self.account_url(account);
        u.path_segments_mut()
            .unwrap()
            .push(container)
            .extend(blob.split('/'));
        u.set_query(Some(sas));
        u
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}

/// Signs an account SAS for `sv=2020-12-06` (string-to-sign per "Create an account SAS": account,
/// permissions, services, resource types, start, expiry, IP, protocol, version, encryption
/// scope, each followed by a newline), HMAC-SHA256 with the decoded account key.
pub fn account_sas(
    account: &str,
    key_b64: &str,
    permissions: &str,
    expiry: OffsetDateTime,
) -> String {
    const VERSION: &str = "2020-12-06";
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let se = expiry.to_offset(time::UtcOffset::UTC).format(fmt).unwrap();
    let (ss, srt, spr) = ("b", "sco", "https,http");
    let to_sign = format!("{account}\n{permissions}\n{ss}\n{srt}\n\n{se}\n\n{spr}\n{VERSION}\n\n");
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .expect("base64 key");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "sv={VERSION}&ss={ss}&srt={srt}&sp={permissions}&se={}&spr={}&sig={}",
        enc(&se),
        enc(spr),
        enc(&sig)
    )
}
