//! Warm Python workers ("zygotes"), kept by the resident supervisor: one per Python
//! environment (interpreter and worker environment). A worker has imported flytekit and
//! its entrypoint once; each attempt is a fresh process forked from it (see `zygote.py`),
//! re-parented to the supervisor, which waits for it like any child. So an attempt costs a
//! fork instead of two interpreter starts and two flytekit imports.
//!
//! A worker is started on first demand (or when the server asks ahead with `warm`), in the
//! background: until it is ready, attempts start cold. It is replaced after `max_forks`
//! attempts (serving on until its successor is ready), and when a directory on its
//! `sys.path` changes on disk (a package installed or removed; attempts start cold until the
//! new one is ready). A worker that dies, refuses a fork or answers late is dropped; the attempt
//! starts cold and a new worker is started after a pause.

use crate::lock;
use crate::reaper::Reaper;
use crate::supervisor::{STDERR, STDOUT, Warm};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The worker program, written next to the workers' sockets.
pub const SCRIPT: &str = include_str!("zygote.py");

/// How long a worker may take to import flytekit and answer.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a fork may take.
const FORK_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before a worker that failed (or died young) is started again.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Pause before a worker that served a while and died is replaced.
const REPLACE_AFTER: Duration = Duration::from_millis(500);

/// What a worker says when it is ready.
#[derive(Debug, Deserialize)]
struct Status {
    pid: i32,
    paths: Vec<PathBuf>,
    #[serde(default)]
    deferred_plugins: Vec<String>,
    #[serde(default)]
    hazards: Vec<String>,
}

#[derive(Deserialize)]
struct Reply {
    pid: Option<i32>,
    error: Option<String>,
}

struct Worker {
    pid: i32,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    forks: u32,
    /// Its successor is starting; it serves until the successor is ready.
    retiring: bool,
    /// Directories on the worker's `sys.path` and when each last changed.
    fingerprint: Vec<(PathBuf, Option<SystemTime>)>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The worker exits when its connection closes; make sure of it.
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

enum Slot {
    Starting,
    Ready(Box<Worker>),
    /// Failed; started again on demand from this moment.
    Failed(Instant),
}

pub struct Zygotes {
    dir: PathBuf,
    max_forks: u32,
    reaper: Arc<Reaper>,
    slots: Mutex<HashMap<String, Slot>>,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>)> {
    paths.iter().map(|p| (p.clone(), mtime(p))).collect()
}

/// The worker's name: its interpreter and environment.
fn key_of(warm: &Warm) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    warm.python.hash(&mut hasher);
    warm.worker_env.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

impl Zygotes {
    pub fn new(dir: PathBuf, max_forks: u32, reaper: Arc<Reaper>) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        crate::supervisor::write_atomically(&dir, "zygote.py", SCRIPT.as_bytes(), false)?;
        Ok(Arc::new(Zygotes {
            dir,
            max_forks: max_forks.max(1),
            reaper,
            slots: Mutex::default(),
        }))
    }

    /// Starts the worker for this environment unless it runs or is starting.
    pub fn prepare(self: &Arc<Self>, warm: &Warm) {
        let key = key_of(warm);
        let mut slots = lock(&self.slots);
        let start = match slots.get(&key) {
            None => true,
            Some(Slot::Failed(retry_at)) => Instant::now() >= *retry_at,
            Some(_) => false,
        };
        if start {
            slots.insert(key.clone(), Slot::Starting);
            drop(slots);
            self.boot(key, warm.clone());
        }
    }

    /// Forks the attempt from its environment's worker. `None`: no worker can serve it now
    /// (the caller starts it cold).
    pub fn fork(self: &Arc<Self>, warm: &Warm, cwd: &Path, dir: &Path) -> Option<i32> {
        let key = key_of(warm);
        let mut slots = lock(&self.slots);
        let Some(Slot::Ready(worker)) = slots.get_mut(&key) else {
            drop(slots);
            self.prepare(warm);
            return None;
        };
        if worker
            .fingerprint
            .iter()
            .any(|(path, when)| mtime(path) != *when)
        {
            tracing::info!(
                worker = worker.pid,
                "the Python environment changed: replacing its worker"
            );
            slots.remove(&key);
            drop(slots);
            self.prepare(warm);
            return None;
        }
        let request = serde_json::json!({
            "args": warm.args,
            "env": warm.env,
            "cwd": cwd,
            "stdout": dir.join(STDOUT),
            "stderr": dir.join(STDERR),
            "bin_dir": warm.bin_dir,
        });
        let answer = (|| -> std::io::Result<Reply> {
            let mut line = serde_json::to_vec(&request).map_err(std::io::Error::other)?;
            line.push(b'\n');
            worker.writer.write_all(&line)?;
            let mut reply = String::new();
            if worker.reader.read_line(&mut reply)? == 0 {
                return Err(std::io::Error::other("the worker closed its connection"));
            }
            serde_json::from_str(&reply).map_err(std::io::Error::other)
        })();
        match answer {
            Ok(Reply { pid: Some(pid), .. }) => {
                self.reaper.expect(pid);
                worker.forks += 1;
                if worker.forks >= self.max_forks && !worker.retiring {
                    // It keeps serving while its successor boots: no attempt starts cold.
                    tracing::info!(
                        worker = worker.pid,
                        forks = worker.forks,
                        "replacing a worker after its last fork"
                    );
                    worker.retiring = true;
                    drop(slots);
                    self.boot(key, warm.clone());
                }
                Some(pid)
            }
            Ok(Reply { error, .. }) => {
                let error = error.unwrap_or_else(|| "no pid".into());
                tracing::warn!(worker = worker.pid, "the worker refused a fork: {error}");
                slots.insert(key, Slot::Failed(Instant::now() + RETRY_AFTER));
                None
            }
            Err(e) => {
                tracing::warn!(worker = worker.pid, "the worker failed: {e}");
                slots.insert(key, Slot::Failed(Instant::now() + RETRY_AFTER));
                None
            }
        }
    }

    /// Starts a worker process and, on a thread, waits until it is ready.
    fn boot(self: &Arc<Self>, key: String, warm: Warm) {
        let zygotes = self.clone();
        std::thread::spawn(move || {
            let started = zygotes.start_worker(&key, &warm);
            let mut slots = lock(&zygotes.slots);
            match started {
                // Replaces (and so stops) a retiring predecessor.
                Ok(worker) => {
                    slots.insert(key, Slot::Ready(Box::new(worker)));
                }
                Err(e) => {
                    tracing::warn!(python = %warm.python.display(), "no warm worker, tasks start cold: {e}");
                    match slots.get_mut(&key) {
                        // A retiring worker serves on; its next fork tries again.
                        Some(Slot::Ready(old)) => old.retiring = false,
                        _ => {
                            slots.insert(key, Slot::Failed(Instant::now() + RETRY_AFTER));
                        }
                    }
                }
            }
        });
    }

    /// A worker process ended. If it was the one serving, attempts start cold until a
    /// replacement is ready: soon after a worker that served a while, after
    /// [`RETRY_AFTER`] after one that died young (no restart loop).
    fn exited(self: &Arc<Self>, key: &str, pid: i32, born: Instant, warm: &Warm) {
        let mut slots = lock(&self.slots);
        if !matches!(slots.get(key), Some(Slot::Ready(w)) if w.pid == pid) {
            return; // retired on purpose, or never became ready
        }
        let pause = if born.elapsed() < RETRY_AFTER {
            RETRY_AFTER
        } else {
            REPLACE_AFTER
        };
        tracing::warn!(
            worker = pid,
            "the warm worker died: tasks start cold until it is replaced"
        );
        slots.insert(key.to_string(), Slot::Failed(Instant::now() + pause));
        drop(slots);
        let zygotes = self.clone();
        let warm = warm.clone();
        std::thread::spawn(move || {
            std::thread::sleep(pause);
            zygotes.prepare(&warm);
        });
    }

    fn start_worker(self: &Arc<Self>, key: &str, warm: &Warm) -> Result<Worker, String> {
        // A socket of this start alone: a worker another supervisor started (one killed
        // while its worker booted) binds its own path, so it is never taken for ours; it
        // exits when nobody connects to it.
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = self
            .dir
            .join(format!("{key}-{}-{start}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::File::create(self.dir.join(format!("{key}.log")))
            .map_err(|e| format!("cannot create the worker's log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = std::process::Command::new(&warm.python)
            .arg(self.dir.join("zygote.py"))
            .arg(&socket)
            .env_clear()
            .envs(warm.worker_env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", warm.python.display()))?;
        let pid = child.id() as i32;
        // The reaper owns its exit; a thread takes it and replaces the worker if needed.
        self.reaper.expect(pid);
        {
            let zygotes = self.clone();
            let (key, warm, born) = (key.to_string(), warm.clone(), Instant::now());
            std::thread::spawn(move || {
                zygotes.reaper.wait(pid);
                zygotes.exited(&key, pid, born, &warm);
            });
        }
        let _ = std::fs::write(self.dir.join(format!("{key}.pid")), pid.to_string());
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let stream = loop {
            match UnixStream::connect(&socket) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline && crate::supervisor::alive(pid) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("the worker did not listen: {e}")),
            }
        };
        stream
            .set_read_timeout(Some(BOOT_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("the worker did not report: {e}"))?;
        let status: Status = serde_json::from_str(&line)
            .map_err(|e| format!("the worker's status {line:?}: {e}"))?;
        // Its forks are re-parented to this supervisor only if it is this supervisor's child.
        if status.pid != pid {
            return Err(format!(
                "the worker that answered is process {}, not the one started ({pid})",
                status.pid
            ));
        }
        let _ = std::fs::remove_file(&socket);
        if !status.hazards.is_empty() {
            return Err(format!(
                "the worker would fork with {}",
                status.hazards.join(", ")
            ));
        }
        stream
            .set_read_timeout(Some(FORK_TIMEOUT))
            .map_err(|e| e.to_string())?;
        tracing::info!(
            worker = status.pid,
            python = %warm.python.display(),
            deferred_plugins = ?status.deferred_plugins,
            "warm worker ready"
        );
        Ok(Worker {
            pid: status.pid,
            writer: stream,
            reader,
            forks: 0,
            retiring: false,
            fingerprint: fingerprint(&status.paths),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;

    /// A stand-in interpreter: takes a moment to "import", then listens where it is told
    /// and reports its own pid, as `zygote.py` does.
    const FAKE_WORKER: &str = r#"#!/bin/sh
exec python3 -c '
import json, os, socket, sys, time
time.sleep(0.5)
path = sys.argv[1]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1)
c, _ = s.accept()
c.sendall((json.dumps({"pid": os.getpid(), "paths": []}) + "\n").encode())
c.recv(1)
' "$2"
"#;

    #[test]
    fn a_worker_booted_for_another_supervisor_is_never_taken_for_ours() {
        let root = tempfile::tempdir().unwrap();
        let fake = root.path().join("python");
        std::fs::write(&fake, FAKE_WORKER).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let warm = Warm {
            python: fake,
            worker_env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            args: vec![],
            env: vec![],
            bin_dir: root.path().to_path_buf(),
        };
        let dir = root.path().join("workers");
        let zygotes = Zygotes::new(dir.clone(), 10, Reaper::start(false)).unwrap();
        let key = key_of(&warm);
        // A worker a killed supervisor started finishes booting now and listens on the
        // worker path of this environment, answering with its own pid.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stranger = {
            let (dir, key, stop) = (dir.clone(), key.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        let name = entry.file_name().to_string_lossy().to_string();
                        if name.starts_with(&key) && name.ends_with(".sock") {
                            // Take over the path, as `zygote.py` unlinks and binds.
                            let _ = std::fs::remove_file(entry.path());
                            if let Ok(l) = UnixListener::bind(entry.path()) {
                                l.set_nonblocking(true).unwrap();
                                held.push(l);
                            }
                        }
                    }
                    for l in &held {
                        if let Ok((mut c, _)) = l.accept() {
                            let _ = c.write_all(b"{\"pid\": 1, \"paths\": []}\n");
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let started = zygotes.start_worker(&key, &warm);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        stranger.join().unwrap();
        // Either our own worker answered, or the start failed; never the stranger.
        match started {
            Ok(worker) => assert_ne!(worker.pid, 1, "took another supervisor's worker"),
            Err(e) => assert!(e.contains("not the one started"), "{e}"),
        }
    }
}
