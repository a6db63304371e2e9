//! Whether and how an attempt can run in a warm Python worker: the attempt's command is
//! flytekit's (`pyflyte-fast-execute ... -- pyflyte-execute ...` or `pyflyte-execute ...`),
//! and its environment's `pyflyte-execute` names an interpreter. A fast-registration
//! archive is extracted once per digest into a read-only cache; the attempt imports its
//! code from there (on PYTHONPATH after the rest, where `pyflyte-fast-execute` puts its
//! `--dest-dir`) and runs in its own sandbox.

use crate::getenv;
use crate::supervisor::Warm;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The subcommands of flytekit's task entrypoint a worker can run.
const ENTRYPOINTS: [&str; 2] = ["pyflyte-execute", "pyflyte-map-execute"];

/// The pieces of `pyflyte-fast-execute`'s command line.
#[derive(Debug, PartialEq)]
struct FastExecute<'a> {
    distribution: Option<&'a str>,
    inner: &'a [String],
}

fn parse_fast_execute(argv: &[String]) -> Option<FastExecute<'_>> {
    let mut distribution = None;
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--" => {
                return Some(FastExecute {
                    distribution,
                    inner: &argv[i + 1..],
                });
            }
            "--additional-distribution" => distribution = Some(argv.get(i + 1)?.as_str()),
            "--dest-dir" => {}
            _ => return None,
        }
        i += 2;
    }
    None
}

/// The interpreter of a console script: its `#!` line.
fn interpreter_of(script: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let first = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
    let python = first.strip_prefix("#!")?.trim();
    // `#!/usr/bin/env python` and shell trampolines are not a worker's interpreter.
    (!python.contains(' ') && Path::new(python).is_absolute()).then(|| PathBuf::from(python))
}

/// Finds a program on a PATH value.
fn which(program: &str, path: &str) -> Option<PathBuf> {
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The worker of the environment whose PATH is given, if it has flytekit's entrypoint.
pub(crate) fn worker(worker_env: Vec<(String, String)>) -> Option<Warm> {
    let script = which("pyflyte-execute", getenv(&worker_env, "PATH")?)?;
    let python = interpreter_of(&script)?;
    Some(Warm {
        python,
        bin_dir: script.parent()?.to_path_buf(),
        worker_env,
        args: vec![],
        env: vec![],
    })
}

/// An archive file's length and mtime, and the directory its code went to.
type Extracted = (u64, Option<SystemTime>, PathBuf);

/// Where archives are extracted, and which archive file (by length and mtime) went where,
/// so an attempt of known code neither reads nor hashes its archive again.
pub(crate) struct CodeCache {
    dir: PathBuf,
    known: std::sync::Mutex<HashMap<PathBuf, Extracted>>,
}

impl CodeCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        CodeCache {
            dir,
            known: Default::default(),
        }
    }

    /// The directory holding the archive's code, extracted on first use.
    fn code_dir(&self, archive: &Path) -> Result<PathBuf, String> {
        let meta = std::fs::metadata(archive)
            .map_err(|e| format!("cannot read the code archive {}: {e}", archive.display()))?;
        let stamp = (meta.len(), meta.modified().ok());
        if let Some((len, modified, dir)) = crate::lock(&self.known).get(archive)
            && (*len, *modified) == stamp
            && dir.is_dir()
        {
            return Ok(dir.clone());
        }
        let dir = extract_once(archive, &self.dir)?;
        crate::lock(&self.known).insert(archive.to_path_buf(), (stamp.0, stamp.1, dir.clone()));
        Ok(dir)
    }
}

/// Extracts a `.tar.gz` into `<cache>/<sha256 of the archive>` once; the directory and its
/// files are read-only afterwards.
fn extract_once(archive: &Path, cache: &Path) -> Result<PathBuf, String> {
    let bytes = std::fs::read(archive)
        .map_err(|e| format!("cannot read the code archive {}: {e}", archive.display()))?;
    let digest = contrail_blob::hex(&Sha256::digest(&bytes));
    let target = cache.join(&digest);
    if target.is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(cache).map_err(|e| e.to_string())?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{digest}-"))
        .tempdir_in(cache)
        .map_err(|e| e.to_string())?;
    let gz = flate2::read::GzDecoder::new(bytes.as_slice());
    tar::Archive::new(gz)
        .unpack(staging.path())
        .map_err(|e| format!("cannot extract the code archive {}: {e}", archive.display()))?;
    read_only(staging.path()).map_err(|e| e.to_string())?;
    let staged = staging.keep();
    match std::fs::rename(&staged, &target) {
        Ok(()) => Ok(target),
        // Another attempt extracted the same archive first.
        Err(_) if target.is_dir() => {
            let _ = make_writable(&staged);
            let _ = std::fs::remove_dir_all(&staged);
            Ok(target)
        }
        Err(e) => Err(e.to_string()),
    }
}

fn set_mode(path: &Path, dir_mode: u32, file_mode: &dyn Fn(u32) -> u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            set_mode(&entry?.path(), dir_mode, file_mode)?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(dir_mode))
    } else {
        let mode = file_mode(meta.permissions().mode());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
}

fn read_only(path: &Path) -> std::io::Result<()> {
    set_mode(path, 0o555, &|m| if m & 0o111 != 0 { 0o555 } else { 0o444 })
}

fn make_writable(path: &Path) -> std::io::Result<()> {
    set_mode(path, 0o755, &|m| m | 0o200)
}

/// What the executor knows when it plans an attempt.
pub(crate) struct Attempt<'a> {
    pub argv: &'a [String],
    /// The task's environment, as the cold way runs it.
    pub env: &'a [(String, String)],
    pub sandbox: &'a Path,
    pub code: &'a CodeCache,
}

/// How the attempt runs warm; `Ok(None)`: it runs cold only. `worker` names the worker of
/// the attempt's environment (asked only for flytekit's commands); `local` maps a blob URI
/// to its file.
pub(crate) fn plan(
    attempt: Attempt<'_>,
    worker: impl FnOnce() -> Option<Warm>,
    local: impl Fn(&str) -> Option<PathBuf>,
) -> Result<Option<Warm>, String> {
    let Some(program) = attempt.argv.first() else {
        return Ok(None);
    };
    let (inner, archive, distribution) = if program == "pyflyte-fast-execute" {
        let Some(fast) = parse_fast_execute(attempt.argv) else {
            return Ok(None);
        };
        match fast.distribution {
            Some(uri) if uri.ends_with(".tar.gz") => {
                let Some(archive) = local(uri) else {
                    return Ok(None);
                };
                (fast.inner, Some(archive), Some(uri))
            }
            Some(_) => return Ok(None),
            None => (fast.inner, None, None),
        }
    } else {
        (attempt.argv, None, None)
    };
    if !inner
        .first()
        .is_some_and(|p| ENTRYPOINTS.contains(&p.as_str()))
    {
        return Ok(None);
    }
    let Some(mut warm) = worker() else {
        return Ok(None);
    };
    let code_dir = archive.map(|a| attempt.code.code_dir(&a)).transpose()?;
    // As pyflyte-fast-execute passes it on: where dynamic tasks find the code.
    let sandbox = attempt.sandbox.to_string_lossy().into_owned();
    let mut args = Vec::with_capacity(inner.len() + 4);
    for arg in inner {
        if arg == "--resolver"
            && let Some(uri) = distribution
        {
            args.extend([
                "--dynamic-addl-distro".to_string(),
                uri.to_string(),
                "--dynamic-dest-dir".to_string(),
                sandbox.clone(),
            ]);
        }
        args.push(arg.clone());
    }
    let mut env = attempt.env.to_vec();
    if let Some(code) = code_dir {
        let code = code.to_string_lossy().into_owned();
        let python_path = match getenv(&env, "PYTHONPATH") {
            Some(p) if !p.is_empty() => format!("{p}:{code}"),
            _ => code,
        };
        env.retain(|(k, _)| k != "PYTHONPATH");
        env.push(("PYTHONPATH".into(), python_path));
    }
    warm.args = args;
    warm.env = env;
    Ok(Some(warm))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fast_execute_command_lines() {
        let argv = strings(&[
            "pyflyte-fast-execute",
            "--additional-distribution",
            "s3://b/fast1.tar.gz",
            "--dest-dir",
            ".",
            "--",
            "pyflyte-execute",
            "--inputs",
            "x",
        ]);
        let fast = parse_fast_execute(&argv).unwrap();
        assert_eq!(fast.distribution, Some("s3://b/fast1.tar.gz"));
        assert_eq!(fast.inner, &argv[6..]);
        assert_eq!(
            parse_fast_execute(&strings(&["pyflyte-fast-execute", "--other", "1", "--"])),
            None
        );
    }

    #[test]
    fn a_fast_registered_attempt_runs_from_the_code_cache_with_fast_executes_arguments() {
        let d = tempfile::tempdir().unwrap();
        // A venv-like bin dir whose pyflyte-execute names its interpreter.
        let bin = d.path().join("venv/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            bin.join("pyflyte-execute"),
            "#!/opt/py/bin/python3\nimport x\n",
        )
        .unwrap();
        // A code archive with one module.
        let archive = d.path().join("fast1.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&archive).unwrap(),
                flate2::Compression::fast(),
            );
            let mut tar = tar::Builder::new(gz);
            let body = b"X = 1\n";
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, "wf.py", &body[..]).unwrap();
            tar.into_inner().unwrap().finish().unwrap();
        }
        let argv = strings(&[
            "pyflyte-fast-execute",
            "--additional-distribution",
            "s3://b/fast1.tar.gz",
            "--dest-dir",
            "/sandbox",
            "--",
            "pyflyte-execute",
            "--inputs",
            "i",
            "--resolver",
            "r",
            "--",
            "task-module",
            "wf",
        ]);
        let path = format!("{}:/usr/bin", bin.display());
        let env = vec![
            ("PATH".to_string(), path.clone()),
            ("PYTHONPATH".into(), "/src".into()),
        ];
        let cache = d.path().join("code");
        let code = CodeCache::new(cache.clone());
        let plan_once = || {
            plan(
                Attempt {
                    argv: &argv,
                    env: &env,
                    sandbox: Path::new("/sandbox"),
                    code: &code,
                },
                || worker(vec![("PATH".into(), path.clone())]),
                |uri| (uri == "s3://b/fast1.tar.gz").then(|| archive.clone()),
            )
            .unwrap()
            .unwrap()
        };
        let warm = plan_once();
        assert_eq!(warm.python, PathBuf::from("/opt/py/bin/python3"));
        assert_eq!(warm.bin_dir, bin);
        assert_eq!(
            warm.args,
            strings(&[
                "pyflyte-execute",
                "--inputs",
                "i",
                "--dynamic-addl-distro",
                "s3://b/fast1.tar.gz",
                "--dynamic-dest-dir",
                "/sandbox",
                "--resolver",
                "r",
                "--",
                "task-module",
                "wf",
            ])
        );
        let python_path = getenv(&warm.env, "PYTHONPATH").unwrap().to_string();
        let (first, code) = python_path.split_once(':').unwrap();
        assert_eq!(first, "/src");
        let module = Path::new(code).join("wf.py");
        assert_eq!(std::fs::read_to_string(&module).unwrap(), "X = 1\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&module).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "cached code is read-only");
        // The same archive again: the same directory, extracted once.
        assert_eq!(plan_once().env, warm.env);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        make_writable(&cache).unwrap();
    }

    #[test]
    fn other_commands_and_unknown_environments_run_cold() {
        let argv = strings(&["sh", "-c", "true"]);
        let env = vec![("PATH".to_string(), "/nonexistent".to_string())];
        let code = CodeCache::new("/nonexistent/code".into());
        let attempt = |argv| Attempt {
            argv,
            env: &env,
            sandbox: Path::new("/s"),
            code: &code,
        };
        let worker_of_env = || worker(env.clone());
        assert_eq!(plan(attempt(&argv), worker_of_env, |_| None).unwrap(), None);
        let argv = strings(&["pyflyte-execute", "--inputs", "x"]);
        assert_eq!(
            plan(attempt(&argv), worker_of_env, |_| None).unwrap(),
            None,
            "no pyflyte-execute on PATH"
        );
    }
}
