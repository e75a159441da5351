//! The local Functions host emulator discovers functions as the real host does (direct
//! subfolders of the script root that hold a function.json), and the zip we ship is a script
//! root it loads every function of.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use partner_billing_export::functions::CATALOG;
use partner_billing_local::layout::AppLayout;
use partner_billing_local::script_root::{stage_repository, unpack_package};
use xtask::package::{build_package, PackageOptions};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn defaults(name: &str) -> Option<String> {
    partner_billing_export::settings::find(name)
        .and_then(|s| s.default)
        .map(str::to_string)
}

fn names(layout: &AppLayout) -> Vec<String> {
    layout.functions.iter().map(|f| f.name.clone()).collect()
}

fn function_json(name: &str) -> Vec<u8> {
    fs::read(repo().join("functions").join(name).join("function.json")).unwrap()
}

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

#[test]
fn a_function_one_folder_too_deep_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(
        root,
        "host.json",
        &fs::read(repo().join("host.json")).unwrap(),
    );
    put(root, "Plan/function.json", &function_json("Plan"));
    // One level too deep (a nested folder): the host does not load it.
    put(
        root,
        "functions/Backfill/function.json",
        &function_json("Backfill"),
    );
    put(root, "A/Watchdog/function.json", &function_json("Watchdog"));
    // A folder without its own function.json is not a function either.
    put(root, "Exports/readme.txt", b"not a function");

    let layout = AppLayout::load(root, &defaults).unwrap();
    assert_eq!(names(&layout), ["Plan"]);

    // The repository itself keeps its functions under functions/: as a script root it has none.
    let layout = AppLayout::load(&repo(), &defaults).unwrap();
    assert_eq!(names(&layout), Vec::<String>::new());
}

#[test]
fn staged_repository_loads_every_catalog_function() {
    let dir = tempfile::tempdir().unwrap();
    let root = stage_repository(&repo(), &dir.path().join("app")).unwrap();
    let layout = AppLayout::load(&root, &defaults).unwrap();
    let mut expected: Vec<String> = CATALOG.iter().map(|f| f.name.to_string()).collect();
    expected.sort();
    assert_eq!(names(&layout), expected);
}

#[test]
fn the_packaged_zip_loads_every_catalog_function() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_partner-billing-export"));
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("app.zip");
    build_package(&PackageOptions {
        app_root: repo(),
        binary: binary.clone(),
        output: zip.clone(),
    })
    .unwrap();

    let root = unpack_package(&zip, &dir.path().join("wwwroot")).unwrap();
    let layout = AppLayout::load(&root, &defaults).unwrap();
    let mut expected: Vec<String> = CATALOG.iter().map(|f| f.name.to_string()).collect();
    expected.sort();
    assert_eq!(names(&layout), expected, "functions the host would index");
    for spec in CATALOG {
        assert_eq!(layout.function(spec.name).unwrap().binding, spec.binding);
    }

    // The handler is where host.json says, executable, and starts from the script root.
    let handler = layout.executable_path();
    assert_eq!(handler, root.join("handler"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&handler).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }
    let out = std::process::Command::new(&handler)
        .arg("--help")
        .current_dir(layout.working_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn zip_with(entries: &[&str]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for name in entries {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        w.write_all(b"x").unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn unpacking_refuses_entries_outside_the_script_root() {
    for bad in ["../escaped", "Plan/../../escaped", "/tmp/escaped"] {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("bad.zip");
        fs::write(&zip, zip_with(&["host.json", bad])).unwrap();
        let root = dir.path().join("deep").join("wwwroot");
        let err = unpack_package(&zip, &root).unwrap_err();
        assert!(format!("{err:#}").contains(bad), "{bad}: {err:#}");
        assert!(!dir.path().join("deep").join("escaped").exists());
        assert!(!dir.path().join("escaped").exists());
    }
}
