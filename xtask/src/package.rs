//! `package`: assemble the deployable Functions app as one zip.
//!
//! The zip is a Functions *script root*, exactly what the host needs and nothing else:
//! `host.json`, one `<Name>/function.json` per function at the zip root (the repository keeps
//! them as `functions/<Name>/function.json`), and the handler binary under the name host.json
//! gives in `customHandler.description.defaultExecutablePath` (mode 0755 so the Linux host can
//! exec it). The host indexes only the *direct* subfolders of the script root that hold their
//! own function.json (Azure/azure-functions-host,
//! `src/WebJobs.Script/Host/HostFunctionMetadataProvider.cs`, `ReadFunctionsMetadata`; Microsoft
//! Learn, "Azure Functions custom handlers", *Application structure*): a `functions/` level in
//! the zip would load zero functions. Entries are sorted and carry a fixed timestamp, so the
//! same inputs always give the same bytes (reproducible artifacts, stable hashes in CI).
//!
//! The writer is a small hand-rolled one (deflate through `flate2`, which the crate already
//! uses) instead of the `zip` crate: we only ever write a handful of regular files, so local
//! headers, a central directory and the end record are all we need. No ZIP64: entries and the
//! archive must stay under 4 GiB, which a function app package does by a wide margin.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};

/// What to package.
#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// The app root: the folder holding `host.json` and `functions/`.
    pub app_root: PathBuf,
    /// The release binary to ship as the custom handler.
    pub binary: PathBuf,
    /// The zip to write (replaced if present; parent folders are created).
    pub output: PathBuf,
}

/// One entry of the written zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    /// Path inside the zip (forward slashes).
    pub name: String,
    /// Unix permission bits recorded for the entry (0o644 or 0o755).
    pub mode: u32,
    pub size: u64,
    pub compressed_size: u64,
    pub crc32: u32,
}

/// What `build_package` wrote.
#[derive(Debug, Clone)]
pub struct PackageReport {
    pub output: PathBuf,
    /// Entries in archive order (sorted by name).
    pub entries: Vec<PackageEntry>,
    /// Size of the zip file in bytes.
    pub zip_size: u64,
    /// The handler's name inside the zip (from host.json).
    pub executable: String,
}

/// The app's files as the script root holds them, without the handler binary.
#[derive(Debug, Clone)]
pub struct AppFiles {
    /// `customHandler.description.defaultExecutablePath` from host.json.
    pub executable: String,
    /// `(path inside the script root, bytes)`: `host.json` and every `<Name>/function.json`,
    /// sorted by path.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Reads `host.json` and `functions/<Name>/function.json` of the repository at `app_root` and
/// maps them to their place in the script root (`host.json`, `<Name>/function.json`). The
/// package and the local Functions host emulator both start from this, so the emulator loads
/// what ships.
pub fn app_files(app_root: &Path) -> Result<AppFiles> {
    let host_json_path = app_root.join("host.json");
    let host_json = fs::read(&host_json_path)
        .with_context(|| format!("reading {}", host_json_path.display()))?;
    let executable = default_executable_path(&host_json)
        .with_context(|| format!("in {}", host_json_path.display()))?;

    let mut files = vec![("host.json".to_owned(), host_json)];
    let functions_dir = app_root.join("functions");
    let mut names = Vec::new();
    for entry in fs::read_dir(&functions_dir)
        .with_context(|| format!("reading {}", functions_dir.display()))?
    {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| anyhow!("function folder name is not UTF-8: {n:?}"))?;
        names.push(name);
    }
    if names.is_empty() {
        bail!("no function folders under {}", functions_dir.display());
    }
    for name in names {
        if name == "host.json" || name == executable {
            bail!("a function may not be named {name:?}: the script root needs that name");
        }
        let path = functions_dir.join(&name).join("function.json");
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        // A malformed function.json would only surface as a host error after deployment.
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        // At the script root: the host does not look deeper than one folder.
        files.push((format!("{name}/function.json"), bytes));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(AppFiles { executable, files })
}

/// Build the deployment zip described by `opts`. See the module docs for what goes in.
pub fn build_package(opts: &PackageOptions) -> Result<PackageReport> {
    let AppFiles {
        executable,
        files: app,
    } = app_files(&opts.app_root)?;
    let mut files: Vec<(String, Vec<u8>, u32)> = app
        .into_iter()
        .map(|(name, bytes)| (name, bytes, 0o644))
        .collect();

    let binary = fs::read(&opts.binary)
        .with_context(|| format!("reading handler binary {}", opts.binary.display()))?;
    if !binary.starts_with(b"\x7fELF") {
        bail!(
            "{} is not an ELF executable; the Functions Linux host cannot run it",
            opts.binary.display()
        );
    }
    files.push((executable.clone(), binary, 0o755));

    files.sort_by(|a, b| a.0.cmp(&b.0));
    for pair in files.windows(2) {
        if pair[0].0 == pair[1].0 {
            bail!("two package entries are named {}", pair[0].0);
        }
    }

    let mut writer = ZipWriter::default();
    for (name, data, mode) in &files {
        writer.add(name, data, *mode)?;
    }
    let (bytes, entries) = writer.finish()?;

    if let Some(parent) = opts.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // Write beside the target and rename, so a failed run never leaves a half-written zip.
    let tmp = opts.output.with_extension("zip.partial");
    fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &opts.output)
        .with_context(|| format!("renaming {} to {}", tmp.display(), opts.output.display()))?;

    Ok(PackageReport {
        output: opts.output.clone(),
        entries,
        zip_size: bytes.len() as u64,
        executable,
    })
}

/// `customHandler.description.defaultExecutablePath` from host.json, checked to be a plain
/// relative path inside the app root (the host resolves it against the root).
pub fn default_executable_path(host_json: &[u8]) -> Result<String> {
    let value: serde_json::Value =
        serde_json::from_slice(host_json).context("host.json is not valid JSON")?;
    let path = value
        .pointer("/customHandler/description/defaultExecutablePath")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("customHandler.description.defaultExecutablePath is missing"))?;
    let p = Path::new(path);
    let plain = !path.is_empty()
        && !path.contains('\\')
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        bail!("defaultExecutablePath {path:?} must be a relative path inside the app root");
    }
    Ok(path.to_owned())
}

/// MS-DOS date for 1980-01-01 (the zip epoch), time 00:00:00: fixed for reproducible zips.
const DOS_DATE: u16 = (1 << 5) | 1;
const DOS_TIME: u16 = 0;
/// "Version made by": upper byte 3 = Unix (so external attributes carry a mode), 2.0 spec.
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
const VERSION_NEEDED: u16 = 20;
/// General purpose flag bit 11: names are UTF-8.
const FLAG_UTF8: u16 = 1 << 11;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;
const S_IFREG: u32 = 0o100000;

#[derive(Default)]
struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    entries: Vec<PackageEntry>,
}

impl ZipWriter {
    fn add(&mut self, name: &str, data: &[u8], mode: u32) -> Result<()> {
        let mut crc = Crc::new();
        crc.update(data);
        let crc32 = crc.sum();

        let mut enc = DeflateEncoder::new(Vec::new(), Compression::best());
        enc.write_all(data)?;
        let deflated = enc.finish()?;
        // Keep whichever is smaller; tiny JSON files can grow when deflated.
        let (method, body) = if deflated.len() < data.len() {
            (METHOD_DEFLATED, deflated.as_slice())
        } else {
            (METHOD_STORED, data)
        };

        let size = u32_field(data.len() as u64, name)?;
        let csize = u32_field(body.len() as u64, name)?;
        let offset = u32_field(self.out.len() as u64, name)?;
        let name_len = u16::try_from(name.len()).context("entry name too long")?;

        let o = &mut self.out;
        o.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        o.extend_from_slice(&VERSION_NEEDED.to_le_bytes());
        o.extend_from_slice(&FLAG_UTF8.to_le_bytes());
        o.extend_from_slice(&method.to_le_bytes());
        o.extend_from_slice(&DOS_TIME.to_le_bytes());
        o.extend_from_slice(&DOS_DATE.to_le_bytes());
        o.extend_from_slice(&crc32.to_le_bytes());
        o.extend_from_slice(&csize.to_le_bytes());
        o.extend_from_slice(&size.to_le_bytes());
        o.extend_from_slice(&name_len.to_le_bytes());
        o.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        o.extend_from_slice(name.as_bytes());
        o.extend_from_slice(body);

        let c = &mut self.central;
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
        c.extend_from_slice(&VERSION_NEEDED.to_le_bytes());
        c.extend_from_slice(&FLAG_UTF8.to_le_bytes());
        c.extend_from_slice(&method.to_le_bytes());
        c.extend_from_slice(&DOS_TIME.to_le_bytes());
        c.extend_from_slice(&DOS_DATE.to_le_bytes());
        c.extend_from_slice(&crc32.to_le_bytes());
        c.extend_from_slice(&csize.to_le_bytes());
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(&name_len.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        c.extend_from_slice(&0u16.to_le_bytes()); // comment length
        c.extend_from_slice(&0u16.to_le_bytes()); // disk number start
        c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        c.extend_from_slice(&((S_IFREG | mode) << 16).to_le_bytes()); // external: unix mode
        c.extend_from_slice(&offset.to_le_bytes());
        c.extend_from_slice(name.as_bytes());

        self.entries.push(PackageEntry {
            name: name.to_owned(),
            mode,
            size: data.len() as u64,
            compressed_size: body.len() as u64,
            crc32,
        });
        Ok(())
    }

    fn finish(mut self) -> Result<(Vec<u8>, Vec<PackageEntry>)> {
        let count = u16::try_from(self.entries.len()).context("too many entries")?;
        let cd_offset = u32_field(self.out.len() as u64, "central directory")?;
        let cd_size = u32_field(self.central.len() as u64, "central directory")?;
        self.out.extend_from_slice(&self.central);
        let o = &mut self.out;
        o.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        o.extend_from_slice(&0u16.to_le_bytes()); // this disk
        o.extend_from_slice(&0u16.to_le_bytes()); // disk with the central directory
        o.extend_from_slice(&count.to_le_bytes());
        o.extend_from_slice(&count.to_le_bytes());
        o.extend_from_slice(&cd_size.to_le_bytes());
        o.extend_from_slice(&cd_offset.to_le_bytes());
        o.extend_from_slice(&0u16.to_le_bytes()); // comment length
        Ok((self.out, self.entries))
    }
}

fn u32_field(v: u64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| anyhow!("{what} exceeds 4 GiB; ZIP64 is not supported"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_default_executable_path() {
        let ok = br#"{"customHandler":{"description":{"defaultExecutablePath":"handler"}}}"#;
        assert_eq!(default_executable_path(ok).unwrap(), "handler");
        for bad in [
            r#"{"customHandler":{"description":{}}}"#,
            r#"{"customHandler":{"description":{"defaultExecutablePath":"/usr/bin/x"}}}"#,
            r#"{"customHandler":{"description":{"defaultExecutablePath":"../x"}}}"#,
            r#"{"customHandler":{"description":{"defaultExecutablePath":""}}}"#,
        ] {
            assert!(default_executable_path(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn zip_is_deterministic_and_well_formed() {
        let build = || {
            let mut w = ZipWriter::default();
            w.add("a.json", b"{}", 0o644).unwrap();
            w.add("b", &[7u8; 4096], 0o755).unwrap();
            w.finish().unwrap()
        };
        let (one, entries) = build();
        let (two, _) = build();
        assert_eq!(one, two);
        assert_eq!(entries[0].compressed_size, 2, "tiny file is stored");
        assert!(
            entries[1].compressed_size < 4096,
            "repetitive file is deflated"
        );
        // End-of-central-directory record: signature 22 bytes from the end, two entries.
        let eocd = &one[one.len() - 22..];
        assert_eq!(&eocd[..4], &0x0605_4b50u32.to_le_bytes());
        assert_eq!(u16::from_le_bytes([eocd[10], eocd[11]]), 2);
    }
}
