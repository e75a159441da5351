//! The device sign-in's token file: one entry per sign-in (authority, tenant, client id) with
//! its refresh token and the access tokens it last got. Only the user may read it (0600 in a
//! 0700 folder), it is replaced atomically (a temporary file renamed over it) so a crash or a
//! second `export` never leaves half a file, and nothing in it is ever logged.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::{AccessToken, Audience, Secret};

/// The folder below the user's cache folder.
pub const CACHE_DIR: &str = "partner-billing-export";
/// The file in it.
pub const CACHE_FILE: &str = "tokens.json";
/// The version of the file's layout; another version is ignored (and replaced on write).
const VERSION: u32 = 1;

/// Which sign-in an entry belongs to: a refresh token is only ever used with the authority,
/// tenant and app it was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn new(authority: &url::Url, tenant: &str, client_id: &str) -> Self {
        Self(format!(
            "{}|{}|{}",
            authority
                .as_str()
                .trim_end_matches('/')
                .to_ascii_lowercase(),
            tenant.trim().to_ascii_lowercase(),
            client_id.trim().to_ascii_lowercase()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What one sign-in has: its refresh token and its last access token per audience.
#[derive(Debug, Clone, Default)]
pub struct SignInTokens {
    pub refresh_token: Option<Secret>,
    pub access: BTreeMap<AudienceKey, AccessToken>,
}

/// The audiences a device sign-in serves, as the file names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AudienceKey {
    Graph,
    PartnerCenter,
}

impl AudienceKey {
    pub fn of(audience: Audience) -> Option<Self> {
        match audience {
            Audience::Graph => Some(Self::Graph),
            Audience::PartnerCenter => Some(Self::PartnerCenter),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Graph => "graph",
            Self::PartnerCenter => "partnerCenter",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Graph, Self::PartnerCenter]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct WireFile {
    version: u32,
    #[serde(default, rename = "signIns")]
    sign_ins: BTreeMap<String, WireSignIn>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct WireSignIn {
    #[serde(
        default,
        rename = "refreshToken",
        skip_serializing_if = "Option::is_none"
    )]
    refresh_token: Option<String>,
    #[serde(default)]
    access: BTreeMap<String, WireToken>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireToken {
    token: String,
    /// Unix seconds.
    #[serde(rename = "expiresAt")]
    expires_at: i64,
}

impl WireSignIn {
    fn from_tokens(t: &SignInTokens) -> Self {
        Self {
            refresh_token: t.refresh_token.as_ref().map(|s| s.expose().to_string()),
            access: t
                .access
                .iter()
                .map(|(k, v)| {
                    (
                        k.name().to_string(),
                        WireToken {
                            token: v.secret.expose().to_string(),
                            expires_at: v.expires_at.unix_timestamp(),
                        },
                    )
                })
                .collect(),
        }
    }

    fn into_tokens(self) -> SignInTokens {
        SignInTokens {
            refresh_token: self
                .refresh_token
                .filter(|r| !r.is_empty())
                .map(Secret::new),
            access: self
                .access
                .into_iter()
                .filter_map(|(k, v)| {
                    let key = AudienceKey::parse(&k)?;
                    let expires_at = OffsetDateTime::from_unix_timestamp(v.expires_at).ok()?;
                    Some((
                        key,
                        AccessToken {
                            secret: Secret::new(v.token),
                            expires_at,
                        },
                    ))
                })
                .collect(),
        }
    }
}

/// Why the file could not be used; never carries its content.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("token cache {path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
}

/// The token file at one path.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
    /// The folder is ours alone (the default location): it is kept at 0700 even when it
    /// exists already. A folder given with an override is only created 0700 when missing,
    /// never changed (it may be a shared folder such as /tmp).
    own_dir: bool,
}

impl TokenCache {
    /// The file at `path` (an override: its folder is created 0700 if missing, never changed).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            own_dir: false,
        }
    }

    /// The default file: `$XDG_CACHE_HOME/partner-billing-export/tokens.json`, else
    /// `$HOME/.cache/partner-billing-export/tokens.json`; `None` when neither is set.
    pub fn default_location(env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |n: &str| env(n).filter(|v| !v.trim().is_empty()).map(PathBuf::from);
        // XDG Base Directory: a relative XDG_CACHE_HOME is invalid and must be ignored.
        let base = set("XDG_CACHE_HOME")
            .filter(|p| p.is_absolute())
            .or_else(|| set("HOME").map(|h| h.join(".cache")))?;
        Some(Self {
            path: base.join(CACHE_DIR).join(CACHE_FILE),
            own_dir: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, what: &'static str) -> impl Fn(std::io::Error) -> CacheError + '_ {
        move |source| CacheError::Io {
            path: self.path.display().to_string(),
            what,
            source,
        }
    }

    /// The tokens of `key`, or empty when the file or the entry does not exist. A file that is
    /// not ours to parse (another version, damaged) counts as empty; it is replaced on the
    /// next store.
    pub fn load(&self, key: &CacheKey) -> Result<SignInTokens, CacheError> {
        let mut file = self.read_file()?;
        Ok(file
            .sign_ins
            .remove(key.as_str())
            .map(WireSignIn::into_tokens)
            .unwrap_or_default())
    }

    /// Replaces the entry of `key` (other sign-ins in the file are kept).
    pub fn store(&self, key: &CacheKey, tokens: &SignInTokens) -> Result<(), CacheError> {
        let mut file = self.read_file()?;
        file.version = VERSION;
        file.sign_ins
            .insert(key.as_str().to_string(), WireSignIn::from_tokens(tokens));
        self.write_file(&file)
    }

    /// Forgets the entry of `key` (a refresh token Entra no longer accepts).
    pub fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        let mut file = self.read_file()?;
        if file.sign_ins.remove(key.as_str()).is_some() {
            file.version = VERSION;
            self.write_file(&file)?;
        }
        Ok(())
    }

    fn read_file(&self) -> Result<WireFile, CacheError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(WireFile::default()),
            Err(e) => return Err(self.io("cannot read it")(e)),
        };
        self.tighten_file();
        match serde_json::from_slice::<WireFile>(&bytes) {
            Ok(f) if f.version == VERSION => Ok(f),
            Ok(_) => {
                tracing::warn!(path = %self.path.display(), "token cache has another layout version; it will be replaced");
                Ok(WireFile::default())
            }
            Err(_) => {
                // serde's message could quote the content: say only that it is damaged.
                tracing::warn!(path = %self.path.display(), "token cache is not readable JSON; it will be replaced");
                Ok(WireFile::default())
            }
        }
    }

    /// A file others could read (copied in by hand, or an older tool) is made the user's own.
    fn tighten_file(&self) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = fs::metadata(&self.path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %self.path.display(), "token cache was readable by others; restricting it to its owner (0600)");
                    let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(0o600));
                }
            }
        }
    }

    fn ensure_dir(&self) -> Result<PathBuf, CacheError> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&dir)
            .map_err(self.io("cannot create its folder"))?;
        #[cfg(unix)]
        if self.own_dir {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(self.io("cannot restrict its folder to its owner"))?;
        }
        Ok(dir)
    }

    /// Writes a temporary file (0600 from its creation, so no moment exists where others could
    /// read it) beside the target, flushes it to disk and renames it over the target.
    fn write_file(&self, file: &WireFile) -> Result<(), CacheError> {
        let dir = self.ensure_dir()?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| CACHE_FILE.to_string());
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let body = serde_json::to_vec_pretty(file).expect("token cache serializes");
        let result = (|| {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options
                .open(&tmp)
                .map_err(self.io("cannot create a temporary file"))?;
            f.write_all(&body).map_err(self.io("cannot write"))?;
            f.sync_all().map_err(self.io("cannot flush"))?;
            fs::rename(&tmp, &self.path).map_err(self.io("cannot replace"))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::new(
            &url::Url::parse("https://login.microsoftonline.com").unwrap(),
            "contoso.onmicrosoft.com",
            "11111111-1111-1111-1111-111111111111",
        )
    }

    fn tokens(rt: &str, graph: &str) -> SignInTokens {
        let mut t = SignInTokens {
            refresh_token: Some(Secret::new(rt)),
            ..Default::default()
        };
        t.access.insert(
            AudienceKey::Graph,
            AccessToken {
                secret: Secret::new(graph),
                expires_at: OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap(),
            },
        );
        t
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn round_trips_per_sign_in_and_keeps_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::at(dir.path().join("tokens.json"));
        assert!(
            cache.load(&key()).unwrap().refresh_token.is_none(),
            "no file yet"
        );
        cache.store(&key(), &tokens("rt-1", "at-1")).unwrap();
        let other = CacheKey::new(
            &url::Url::parse("http://127.0.0.1:9/").unwrap(),
            "contoso.onmicrosoft.com",
            "11111111-1111-1111-1111-111111111111",
        );
        assert_ne!(other, key(), "the authority is part of the key");
        cache.store(&other, &tokens("rt-2", "at-2")).unwrap();
        let got = cache.load(&key()).unwrap();
        assert_eq!(got.refresh_token.unwrap().expose(), "rt-1");
        let g = &got.access[&AudienceKey::Graph];
        assert_eq!(g.secret.expose(), "at-1");
        assert_eq!(g.expires_at.unix_timestamp(), 2_000_000_000);
        cache.remove(&key()).unwrap();
        assert!(cache.load(&key()).unwrap().refresh_token.is_none());
        assert_eq!(
            cache.load(&other).unwrap().refresh_token.unwrap().expose(),
            "rt-2"
        );
        // The same sign-in whatever the case of its parts.
        let upper = CacheKey::new(
            &url::Url::parse("HTTP://127.0.0.1:9").unwrap(),
            "CONTOSO.onmicrosoft.com",
            "11111111-1111-1111-1111-111111111111",
        );
        assert_eq!(upper, other);
    }

    #[cfg(unix)]
    #[test]
    fn only_the_user_can_read_it() {
        let home = tempfile::tempdir().unwrap();
        let env = |n: &str| (n == "HOME").then(|| home.path().display().to_string());
        let cache = TokenCache::default_location(env).unwrap();
        assert_eq!(
            cache.path(),
            home.path()
                .join(".cache/partner-billing-export/tokens.json")
        );
        cache.store(&key(), &tokens("rt", "at")).unwrap();
        assert_eq!(mode(cache.path()), 0o600);
        assert_eq!(mode(cache.path().parent().unwrap()), 0o700);

        // Our own folder is tightened even when it was there already; a file others could read
        // is made private on the next read.
        use std::os::unix::fs::PermissionsExt;
        let dir = cache.path().parent().unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(cache.path(), fs::Permissions::from_mode(0o644)).unwrap();
        cache.load(&key()).unwrap();
        assert_eq!(mode(cache.path()), 0o600);
        cache.store(&key(), &tokens("rt", "at")).unwrap();
        assert_eq!(mode(dir), 0o700);

        // An override's existing folder is not ours to change; a missing one is created 0700.
        let shared = tempfile::tempdir().unwrap();
        fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let o = TokenCache::at(shared.path().join("new/tokens.json"));
        o.store(&key(), &tokens("rt", "at")).unwrap();
        assert_eq!(mode(shared.path()), 0o755);
        assert_eq!(mode(&shared.path().join("new")), 0o700);
        assert_eq!(mode(o.path()), 0o600);
    }

    #[test]
    fn xdg_cache_home_wins_when_absolute() {
        let env = |n: &str| match n {
            "XDG_CACHE_HOME" => Some("/xdg".to_string()),
            "HOME" => Some("/home/me".to_string()),
            _ => None,
        };
        assert_eq!(
            TokenCache::default_location(env).unwrap().path(),
            Path::new("/xdg/partner-billing-export/tokens.json")
        );
        let relative = |n: &str| match n {
            "XDG_CACHE_HOME" => Some("cache".to_string()),
            "HOME" => Some("/home/me".to_string()),
            _ => None,
        };
        assert_eq!(
            TokenCache::default_location(relative).unwrap().path(),
            Path::new("/home/me/.cache/partner-billing-export/tokens.json")
        );
        assert!(TokenCache::default_location(|_| None).is_none());
    }

    #[test]
    fn writes_replace_the_file_whole_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let cache = TokenCache::at(&path);
        cache.store(&key(), &tokens("rt-1", "at-1")).unwrap();
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(&path).unwrap().ino()
        };
        cache.store(&key(), &tokens("rt-2", "at-2")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            assert_ne!(
                fs::metadata(&path).unwrap().ino(),
                inode,
                "a new file renamed over the old one, not the old one rewritten in place"
            );
        }
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tokens.json"]);
        assert_eq!(
            cache.load(&key()).unwrap().refresh_token.unwrap().expose(),
            "rt-2"
        );

        // A damaged file (a crash of another tool, a hand edit) is not an error: it is
        // replaced whole by the next store.
        fs::write(&path, b"{\"version\": 1, \"signIns\": {\"k\": ").unwrap();
        assert!(cache.load(&key()).unwrap().refresh_token.is_none());
        cache.store(&key(), &tokens("rt-3", "at-3")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["version"], 1);

        // A folder that cannot be written leaves the old file as it was.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let ro = dir.path().join("ro");
            fs::create_dir(&ro).unwrap();
            let c = TokenCache::at(ro.join("tokens.json"));
            c.store(&key(), &tokens("rt", "at")).unwrap();
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
            // root ignores permissions: only check when they bind.
            if fs::write(ro.join("probe"), b"x").is_err() {
                let e = c.store(&key(), &tokens("rt-new", "at")).unwrap_err();
                assert!(
                    e.to_string().contains("cannot create a temporary file"),
                    "{e}"
                );
                assert_eq!(
                    c.load(&key()).unwrap().refresh_token.unwrap().expose(),
                    "rt"
                );
            }
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
        }
    }

    #[test]
    fn errors_never_show_tokens() {
        let dir = tempfile::tempdir().unwrap();
        // The "file" is a folder: reading it fails.
        let cache = TokenCache::at(dir.path());
        let e = cache.load(&key()).unwrap_err().to_string();
        assert!(e.contains("cannot read it"), "{e}");
        let shown = format!("{:?}", tokens("rt-secret", "at-secret"));
        assert!(
            !shown.contains("rt-secret") && !shown.contains("at-secret"),
            "{shown}"
        );
    }
}
