//! Compiles the flyteidl schema from the pinned registry packages, with no `protoc`.
//!
//! Inputs (never committed to the repository):
//! - the npm package `@flyteorg/flyteidl` (its `protos/flyteidl/**.proto`),
//! - `google/api/{annotations,http}.proto` from the PyPI package `googleapis-common-protos`.
//!
//! Both are fetched with the ordinary clients (`npm pack`, `pip download`) into a cache
//! directory, verified against pinned SHA-256 digests, and compiled with `protox`.
//! Set `CONTRAIL_IDL_CACHE` to use another cache directory (for example one prepared offline).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const FLYTEIDL_VERSION: &str = "1.16.5";
const FLYTEIDL_SHA256: &str = "f096c2fb5ba613ff167213105c7f4b539a020700cf430cbc0e27d8e7d07c9f28";
const GOOGLEAPIS_VERSION: &str = "1.70.0";
const GOOGLEAPIS_SHA256: &str = "b8bfcca8c25a2bb253e0e0b0adaf8c00773e5e6af6fd92397576680b807e0fd8";

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CONTRAIL_IDL_CACHE");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let cache = match std::env::var_os("CONTRAIL_IDL_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
            manifest.join("../../target/idl-cache")
        }
    };
    std::fs::create_dir_all(&cache)?;

    let tgz = fetch(
        &cache,
        &format!("flyteorg-flyteidl-{FLYTEIDL_VERSION}.tgz"),
        FLYTEIDL_SHA256,
        |dir| {
            let mut c = Command::new("npm");
            c.args(["pack", &format!("@flyteorg/flyteidl@{FLYTEIDL_VERSION}")])
                .arg("--pack-destination")
                .arg(dir);
            c
        },
    )?;
    let whl = fetch(
        &cache,
        &format!("googleapis_common_protos-{GOOGLEAPIS_VERSION}-py3-none-any.whl"),
        GOOGLEAPIS_SHA256,
        |dir| {
            let mut c = Command::new("python3");
            c.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                .arg(format!("googleapis-common-protos=={GOOGLEAPIS_VERSION}"))
                .arg("-d")
                .arg(dir);
            c
        },
    )?;

    // Unpack into OUT_DIR: the schema and the two google/api files.
    let unpack = out.join("unpack");
    let _ = std::fs::remove_dir_all(&unpack);
    std::fs::create_dir_all(&unpack)?;
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&unpack))?;
    run(Command::new("python3")
        .args(["-c", "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in ('google/api/annotations.proto','google/api/http.proto')]"])
        .arg(&whl)
        .arg(&unpack))?;

    let include = out.join("protos");
    let _ = std::fs::remove_dir_all(&include);
    let mut files = Vec::new();
    copy_stripped(
        &unpack.join("package/protos"),
        &include,
        &include,
        &mut files,
    )?;
    for f in ["google/api/annotations.proto", "google/api/http.proto"] {
        let dest = include.join(f);
        std::fs::create_dir_all(dest.parent().unwrap())?;
        std::fs::copy(unpack.join(f), dest)?;
    }
    files.sort();

    let mut compiler = protox::Compiler::new([&include])?;
    compiler.include_imports(true).open_files(&files)?;
    // Encoded by the compiler itself, so option extensions (`google.api.http`, which the
    // REST routes are read from) survive; `prost_types` would drop them.
    std::fs::write(
        out.join("flyteidl.fds.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();

    tonic_prost_build::configure()
        .btree_map(".")
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .client_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .server_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .compile_fds(fds)?;
    Ok(())
}

/// Returns the cached artifact, fetching it with `cmd` first when absent; checks its digest.
fn fetch(
    cache: &Path,
    name: &str,
    sha256: &str,
    cmd: impl Fn(&Path) -> Command,
) -> Result<PathBuf, BoxError> {
    let path = cache.join(name);
    if !path.exists() {
        let mut c = cmd(cache);
        let status = c.status().map_err(|e| {
            format!("cannot run {:?} to fetch {name}: {e}. Install npm and python3 (with pip), or put {name} into {} (CONTRAIL_IDL_CACHE)", c.get_program(), cache.display())
        })?;
        if !status.success() || !path.exists() {
            return Err(format!(
                "fetching {name} failed ({status}); the package registries must be reachable, or put {name} into {} (CONTRAIL_IDL_CACHE)",
                cache.display()
            )
            .into());
        }
    }
    let digest = Sha256::digest(std::fs::read(&path)?);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if hex != sha256 {
        return Err(format!(
            "{} has sha256 {hex}, expected {sha256}; delete it and rebuild",
            path.display()
        )
        .into());
    }
    Ok(path)
}

fn run(cmd: &mut Command) -> Result<(), BoxError> {
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    Ok(())
}

/// Copies every `.proto` below `src` to `dst`, stripping grpc-gateway's openapiv2 options
/// (documentation only; the package that defines them is not needed for the wire format).
fn copy_stripped(
    src: &Path,
    dst: &Path,
    root: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<(), BoxError> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let path = entry.path();
        let target = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_stripped(&path, &target, root, files)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            let text = std::fs::read_to_string(&path)?;
            std::fs::write(&target, strip_openapi(&text))?;
            files.push(target.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}

fn strip_openapi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth: i32 = 0;
    let mut skipping = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if !skipping && trimmed.starts_with("import \"protoc-gen-openapiv2/") {
            continue;
        }
        if !skipping && trimmed.starts_with("option (grpc.gateway.protoc_gen_openapiv2.") {
            skipping = true;
            depth = 0;
        }
        if skipping {
            depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if depth <= 0 && line.trim_end().ends_with(';') {
                skipping = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
