//! The folder the local Functions host emulator reads the app from: a *script root*, laid out
//! as the deployment zip is (`host.json`, `<Name>/function.json` per function, the handler).
//!
//! The emulator never reads the repository's `functions/` folder directly: `local` from the
//! repository stages the package's own file list (`xtask::package::app_files`) into a script
//! root, an installed copy stages the function.json files compiled into it the same way, and
//! `local --package` unpacks the zip itself. Whatever the emulator loads is what ships.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};

const EMBEDDED_HOST: &str = include_str!("../../../host.json");
const EMBEDDED_FUNCTIONS: [(&str, &str); 8] = [
    (
        "Plan",
        include_str!("../../../functions/Plan/function.json"),
    ),
    (
        "Backfill",
        include_str!("../../../functions/Backfill/function.json"),
    ),
    (
        "StartBilledExports",
        include_str!("../../../functions/StartBilledExports/function.json"),
    ),
    (
        "StartUnbilledExports",
        include_str!("../../../functions/StartUnbilledExports/function.json"),
    ),
    (
        "Exports",
        include_str!("../../../functions/Exports/function.json"),
    ),
    (
        "PollOperation",
        include_str!("../../../functions/PollOperation/function.json"),
    ),
    (
        "CopyPartition",
        include_str!("../../../functions/CopyPartition/function.json"),
    ),
    (
        "Watchdog",
        include_str!("../../../functions/Watchdog/function.json"),
    ),
];

/// Creates `dest` as a new, empty folder (a script root must hold only the app).
fn fresh_dir(dest: &Path) -> anyhow::Result<()> {
    if dest.exists() && fs::read_dir(dest)?.next().is_some() {
        bail!(
            "{} is not empty; a script root is staged into an empty folder",
            dest.display()
        );
    }
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))
}

fn write_files<'a>(
    dest: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> anyhow::Result<()> {
    for (name, bytes) in files {
        let path = dest.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Stages the repository at `app_root` (host.json and `functions/<Name>/function.json`) into
/// `dest` exactly as the package lays it out, without the handler binary.
pub fn stage_repository(app_root: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    let app = xtask::package::app_files(app_root)
        .with_context(|| format!("reading the Functions app in {}", app_root.display()))?;
    fresh_dir(dest)?;
    write_files(
        dest,
        app.files.iter().map(|(n, b)| (n.as_str(), b.as_slice())),
    )?;
    Ok(dest.to_path_buf())
}

/// Stages the host.json and function.json files compiled into this binary into `dest`, laid
/// out as the package lays them out.
pub fn stage_embedded(dest: &Path) -> anyhow::Result<PathBuf> {
    fresh_dir(dest)?;
    let functions: Vec<(String, &str)> = EMBEDDED_FUNCTIONS
        .iter()
        .map(|(name, text)| (format!("{name}/function.json"), *text))
        .collect();
    write_files(
        dest,
        std::iter::once(("host.json", EMBEDDED_HOST.as_bytes())).chain(
            functions
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_bytes())),
        ),
    )?;
    Ok(dest.to_path_buf())
}

/// The repository at `app_root` if it has a host.json, else the embedded copies.
pub fn stage(app_root: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    if app_root.join("host.json").is_file() {
        stage_repository(app_root, dest)
    } else {
        stage_embedded(dest)
    }
}

/// A zip entry name as a relative path inside the script root, or why it is refused.
fn entry_path(name: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(name);
    let plain = !name.is_empty()
        && !name.contains('\\')
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        bail!(
            "entry {name:?} is not a plain relative path (absolute, `..`, `.` or backslashes); \
             the package must unpack inside its script root"
        );
    }
    Ok(p.to_path_buf())
}

/// Unpacks the deployment zip at `zip_path` into `dest` (a new, empty folder), as the host's
/// run-from-package mount presents it: entry modes kept (the handler's 0755 above all). Refuses
/// entries that would land outside `dest` and symbolic links.
pub fn unpack_package(zip_path: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    let file =
        fs::File::open(zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", zip_path.display()))?;
    fresh_dir(dest)?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .with_context(|| format!("reading entry {i} of {}", zip_path.display()))?;
        let name = entry
            .name()
            .with_context(|| format!("entry {i} of {} has no valid name", zip_path.display()))?
            .into_owned();
        let rel = entry_path(&name).with_context(|| format!("in {}", zip_path.display()))?;
        if entry.is_symlink() {
            bail!(
                "{}: entry {name:?} is a symbolic link; the package holds regular files only",
                zip_path.display()
            );
        }
        let path = dest.join(&rel);
        if entry.is_dir() {
            fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        // create_new: two entries with one name would otherwise silently overwrite each other.
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("{}: writing entry {name:?}", zip_path.display()))?;
        std::io::copy(&mut entry, &mut out)
            .with_context(|| format!("{}: extracting {name:?}", zip_path.display()))?;
        out.flush()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Permission bits only: no setuid/setgid/sticky from an archive.
            let mode = entry.unix_mode().map_or(0o644, |m| m & 0o777);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
        }
    }
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_stay_inside_the_script_root() {
        for ok in ["host.json", "handler", "Plan/function.json"] {
            assert_eq!(entry_path(ok).unwrap(), PathBuf::from(ok));
        }
        for bad in [
            "",
            "../handler",
            "Plan/../../x",
            "/etc/passwd",
            "./host.json",
            "Plan\\function.json",
        ] {
            assert!(entry_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn staging_refuses_a_non_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("stray"), b"x").unwrap();
        let err = stage_embedded(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err:#}");
    }
}
