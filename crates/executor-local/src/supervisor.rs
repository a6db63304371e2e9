//! The supervisor: a tiny process (`contrail supervise <dir>`) that starts one task attempt,
//! waits for it and records how it ended in `exit.json`, durably, next to the task's files.
//! It runs in its own process group, so the task outlives a crashed or killed server, and
//! a restarted server reads the outcome instead of running the task again.
//!
//! Files in an attempt directory:
//! - `launch.json`: argv, environment and working directory (written before the directory
//!   appears under its final name)
//! - `lock`: held by the supervisor for its whole life (one supervisor per attempt)
//! - `started`: the task's pid, written once the task runs; an attempt is never started twice
//! - `exit.json`: how it ended
//! - `abort`: asks for the task to be killed
//! - `stdout.log`, `stderr.log`, `sandbox/`
//!
//! The attempt's **ledger** (`Launch::ledger`, a directory outside the attempt directory)
//! mirrors `lock`, `started` and `exit.json`. It is the attempt's authoritative record of
//! its run: when the attempt directory vanishes (deleted by hand or by a cleanup), the
//! ledger still says whether the attempt ran, whether a supervisor still holds it, which
//! process group runs it and how it ended, so the attempt is neither started twice nor
//! run again after it succeeded.

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: std::path::PathBuf,
    /// CPU millicores and memory bytes this attempt was admitted with.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// How to run the attempt in a process forked from a warm Python worker instead (see
    /// [`crate::zygote`]); `argv` stays the cold way, used whenever no worker can serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<Warm>,
    /// The attempt's ledger directory (see the module docs); created before the attempt
    /// directory appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<std::path::PathBuf>,
}

/// A Python attempt as a warm worker runs it: `pyflyte-execute` in a forked process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Warm {
    /// The interpreter `pyflyte-execute` runs with; with `worker_env`, names the worker.
    pub python: std::path::PathBuf,
    /// The environment the worker itself starts with (no per-task values).
    pub worker_env: Vec<(String, String)>,
    /// The `pyflyte` subcommand and its arguments (`pyflyte-execute --inputs ...`).
    pub args: Vec<String>,
    /// The task's environment (as the cold way's, with the code directory on PYTHONPATH).
    pub env: Vec<(String, String)>,
    /// The directory of the console scripts (first on `sys.path`, as for a script).
    pub bin_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Set when the task could not be started (e.g. command not found).
    pub spawn_error: Option<String>,
    /// The task was started by an earlier supervisor that vanished.
    pub lost: bool,
    pub aborted: bool,
    /// The task ran in a process forked from a warm Python worker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm: bool,
    pub started_at: i64,
    pub finished_at: i64,
}

pub const LAUNCH: &str = "launch.json";
pub const LOCK: &str = "lock";
pub const STARTED: &str = "started";
pub const EXIT: &str = "exit.json";
pub const ABORT: &str = "abort";
pub const STDOUT: &str = "stdout.log";
pub const STDERR: &str = "stderr.log";

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Writes a file atomically (temp file, rename): a reader sees all of it or nothing, also
/// when the writer is killed. With `sync`, also durably (fsync of file and directory), for
/// records that must survive a machine crash.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, dir.join(name))?;
    if sync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Records how the attempt ended: in its ledger first (which outlives the directory),
/// then in the directory.
fn record_exit(dir: &Path, ledger: Option<&Path>, rec: &ExitRecord) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    if let Some(l) = ledger {
        write_atomically(l, EXIT, &bytes, true)?;
    }
    write_atomically(dir, EXIT, &bytes, true)
}

/// Records the end of an attempt whose task is known dead but left no record (its
/// supervisor died first): `lost`, its outcome judged from its files. Written under the
/// attempt's lock, so a supervisor that holds it is never overruled; afterwards the record
/// is authoritative (a restarted server neither counts the attempt as running nor judges it
/// again).
pub fn record_lost(dir: &Path, ledger: Option<&Path>) -> std::io::Result<()> {
    let lock = open_lock(dir)?;
    match lock.try_lock() {
        Ok(()) if dir.join(EXIT).exists() => Ok(()),
        Ok(()) => record_exit(
            dir,
            ledger,
            &ExitRecord {
                lost: true,
                finished_at: now_nanos(),
                ..Default::default()
            },
        ),
        Err(std::fs::TryLockError::WouldBlock) => Ok(()),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn kill_group(pid: i32) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Runs the supervisor for `dir`; returns the process exit code.
pub fn supervise(dir: &Path) -> i32 {
    match run(dir) {
        Ok(()) => 0,
        Err(e) => {
            let _ = fs::write(dir.join("supervisor.err"), e.to_string());
            1
        }
    }
}

/// The attempt's lock file (held by whichever supervisor runs the attempt).
pub(crate) fn open_lock(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))
}

fn run(dir: &Path) -> std::io::Result<()> {
    let lock = open_lock(dir)?;
    // Blocks while another supervisor of this attempt runs; it then finds exit.json.
    lock.lock()?;
    if let Begun::Running(r) = begin(dir, &ColdSpawner)? {
        r.finish()?;
    }
    drop(lock);
    Ok(())
}

/// A started task, to be waited for.
pub(crate) struct RunningTask {
    dir: std::path::PathBuf,
    process: Process,
    started_at: i64,
    /// The ledger directory and its lock, held until the end is recorded.
    ledger: Option<(std::path::PathBuf, File)>,
}

/// How an attempt's process is waited for.
pub(crate) enum Process {
    /// Spawned by this process, waited for through std.
    Child(std::process::Child),
    /// A child of this process that the reaper waits for: spawned, or (`warm`) forked by
    /// a warm worker and re-parented to this subreaper.
    Reaped {
        pid: i32,
        reaper: std::sync::Arc<crate::reaper::Reaper>,
        warm: bool,
    },
}

impl Process {
    fn pid(&self) -> i32 {
        match self {
            Process::Child(c) => c.id() as i32,
            Process::Reaped { pid, .. } => *pid,
        }
    }

    /// (exit code, signal)
    fn wait(self) -> std::io::Result<(Option<i32>, Option<i32>)> {
        match self {
            Process::Child(mut c) => {
                let status = c.wait()?;
                Ok((status.code(), status.signal()))
            }
            Process::Reaped { pid, reaper, .. } => Ok(reaper.wait(pid)),
        }
    }
}

/// Starts an attempt's process. `Err` is a message for the user (recorded as the attempt's
/// spawn error).
pub(crate) trait Spawner {
    fn spawn(&self, launch: &Launch, dir: &Path) -> Result<Process, String>;
}

/// Spawns the attempt's argv as a new process in its own group (the cold way).
pub(crate) fn spawn_cold(launch: &Launch, dir: &Path) -> Result<std::process::Child, String> {
    let Some((program, args)) = launch.argv.split_first() else {
        return Err("the task has no command".into());
    };
    let open =
        |name: &str| File::create(dir.join(name)).map_err(|e| format!("cannot create {name}: {e}"));
    let (out, err) = (open(STDOUT)?, open(STDERR)?);
    Command::new(program)
        .args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))
}

/// The per-attempt supervisor spawns every attempt the cold way.
struct ColdSpawner;

impl Spawner for ColdSpawner {
    fn spawn(&self, launch: &Launch, dir: &Path) -> Result<Process, String> {
        spawn_cold(launch, dir).map(Process::Child)
    }
}

pub(crate) enum Begun {
    /// Nothing to run: the outcome is (now) recorded.
    Recorded,
    Running(RunningTask),
}

fn record_now(
    dir: &Path,
    ledger: Option<&Path>,
    started_at: i64,
    rec: ExitRecord,
) -> std::io::Result<Begun> {
    record_exit(
        dir,
        ledger,
        &ExitRecord {
            started_at,
            finished_at: now_nanos(),
            ..rec
        },
    )?;
    Ok(Begun::Recorded)
}

/// Starts the attempt's task unless it ended or was started before. The caller holds the
/// attempt's lock until the task has been waited for.
pub(crate) fn begin(dir: &Path, spawner: &dyn Spawner) -> std::io::Result<Begun> {
    if dir.join(EXIT).exists() {
        return Ok(Begun::Recorded);
    }
    let launch: Launch =
        serde_json::from_slice(&fs::read(dir.join(LAUNCH))?).map_err(std::io::Error::other)?;
    // The ledger's lock is held for the supervisor's whole life: a server that finds the
    // attempt directory gone learns from it whether a supervisor still runs the attempt.
    let ledger = match &launch.ledger {
        Some(l) => {
            let lock = open_lock(l)?;
            lock.lock()?;
            Some((l.clone(), lock))
        }
        None => None,
    };
    let ledger_dir = ledger.as_ref().map(|(l, _)| l.as_path());
    // Looked at again under the ledger's lock: a server that found the directory gone and
    // the lock free counted the attempt dead and moved on, so it must not start now.
    if !dir.join(LAUNCH).exists() {
        return Err(std::io::Error::other(
            "the attempt directory vanished before the task started",
        ));
    }
    let started_at = now_nanos();
    if dir.join(STARTED).exists() {
        // An earlier supervisor started the task and vanished without recording the end.
        let rec = ExitRecord {
            lost: true,
            ..Default::default()
        };
        return record_now(dir, ledger_dir, started_at, rec);
    }
    if dir.join(ABORT).exists() {
        let rec = ExitRecord {
            aborted: true,
            ..Default::default()
        };
        return record_now(dir, ledger_dir, started_at, rec);
    }
    let process = match spawner.spawn(&launch, dir) {
        Ok(p) => p,
        Err(message) => {
            let rec = ExitRecord {
                spawn_error: Some(message),
                ..Default::default()
            };
            return record_now(dir, ledger_dir, started_at, rec);
        }
    };
    let pid = process.pid();
    // Atomic, not synced: it guards against a second start while this machine runs; after
    // a machine crash no task survives anyway. The ledger first: it outlives the directory.
    if let Some(l) = ledger_dir {
        write_atomically(l, STARTED, pid.to_string().as_bytes(), false)?;
    }
    write_atomically(dir, STARTED, pid.to_string().as_bytes(), false)?;
    // The server writes `abort` before reading `started`; checking again after writing
    // `started` closes the window in which neither side would kill the task.
    if dir.join(ABORT).exists() {
        kill_group(pid);
    }
    Ok(Begun::Running(RunningTask {
        dir: dir.to_path_buf(),
        process,
        started_at,
        ledger,
    }))
}

impl RunningTask {
    /// Waits for the task and records how it ended.
    pub(crate) fn finish(self) -> std::io::Result<()> {
        let warm = matches!(self.process, Process::Reaped { warm: true, .. });
        let (code, signal) = self.process.wait()?;
        let dir = &self.dir;
        record_exit(
            dir,
            self.ledger.as_ref().map(|(l, _)| l.as_path()),
            &ExitRecord {
                code,
                signal,
                warm,
                aborted: dir.join(ABORT).exists(),
                started_at: self.started_at,
                finished_at: now_nanos(),
                ..Default::default()
            },
        )
    }
}

/// Kills the task group of an attempt, if it was started. Idempotent.
pub fn abort(dir: &Path) -> std::io::Result<()> {
    kill_started(dir, true)
}

/// Kills the task group an attempt's ledger names, unless its end is recorded: how an
/// attempt whose directory vanished is stopped. Idempotent.
pub fn abort_by_ledger(ledger: &Path) -> std::io::Result<()> {
    kill_started(ledger, false)
}

/// Unless `dir` (an attempt directory or a ledger) records an end: leaves the `abort`
/// mark when asked, then kills the task group `started` names.
fn kill_started(dir: &Path, mark: bool) -> std::io::Result<()> {
    if !dir.exists() || dir.join(EXIT).exists() {
        return Ok(());
    }
    if mark {
        write_atomically(dir, ABORT, b"", false)?;
    }
    if let Some(pid) = started_pid(dir) {
        kill_group(pid);
    }
    Ok(())
}

/// The task's pid (its process group) as `started` records it.
fn started_pid(dir: &Path) -> Option<i32> {
    fs::read_to_string(dir.join(STARTED))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
}

/// What the attempt directory says.
#[derive(Debug, Clone, PartialEq)]
pub enum DirState {
    Missing,
    Exited(ExitRecord),
    /// The supervisor holds the lock: the task is (about to be) running.
    Supervised {
        started: bool,
    },
    /// Nobody holds the lock and nothing ended: a supervisor must be (re)started.
    Unsupervised {
        started_pid: Option<i32>,
    },
}

pub fn inspect(dir: &Path) -> std::io::Result<DirState> {
    if !dir.exists() {
        return Ok(DirState::Missing);
    }
    let read_exit = || -> std::io::Result<Option<ExitRecord>> {
        match fs::read(dir.join(EXIT)) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).map_err(std::io::Error::other)?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    if let Some(rec) = read_exit()? {
        return Ok(DirState::Exited(rec));
    }
    let started_pid = started_pid(dir);
    let lock = open_lock(dir)?;
    match lock.try_lock() {
        Ok(()) => {
            // The supervisor may have finished between our two looks.
            if let Some(rec) = read_exit()? {
                return Ok(DirState::Exited(rec));
            }
            Ok(DirState::Unsupervised { started_pid })
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(DirState::Supervised {
            started: started_pid.is_some(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether a process with this pid exists.
pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(argv: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sandbox")).unwrap();
        let l = Launch {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            cwd: d.path().join("sandbox"),
            cpu_millis: 0,
            memory_bytes: 0,
            warm: None,
            ledger: None,
        };
        std::fs::write(d.path().join(LAUNCH), serde_json::to_vec(&l).unwrap()).unwrap();
        d
    }

    #[test]
    fn records_the_exit_and_never_runs_a_task_twice() {
        let d = prepare(&[
            "sh",
            "-c",
            "echo run >> ../runs; echo out; echo err >&2; exit 3",
        ]);
        assert_eq!(
            inspect(d.path()).unwrap(),
            DirState::Unsupervised { started_pid: None }
        );
        assert_eq!(supervise(d.path()), 0);
        let DirState::Exited(rec) = inspect(d.path()).unwrap() else {
            panic!("no exit record")
        };
        assert_eq!((rec.code, rec.signal, rec.lost), (Some(3), None, false));
        assert_eq!(
            std::fs::read_to_string(d.path().join(STDOUT)).unwrap(),
            "out\n"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join(STDERR)).unwrap(),
            "err\n"
        );
        // A second supervisor (e.g. started again after a server crash) does nothing.
        assert_eq!(supervise(d.path()), 0);
        assert_eq!(
            std::fs::read_to_string(d.path().join("runs")).unwrap(),
            "run\n"
        );
    }

    #[test]
    fn a_task_started_by_a_vanished_supervisor_is_reported_lost_not_rerun() {
        let d = prepare(&["sh", "-c", "echo run >> ../runs"]);
        std::fs::write(d.path().join(STARTED), "999999").unwrap();
        assert_eq!(supervise(d.path()), 0);
        let DirState::Exited(rec) = inspect(d.path()).unwrap() else {
            panic!("no exit record")
        };
        assert!(rec.lost);
        assert!(!d.path().join("runs").exists());
    }

    #[test]
    fn abort_before_start_prevents_the_start_and_a_missing_command_is_reported() {
        let d = prepare(&["sh", "-c", "echo run >> ../runs"]);
        abort(d.path()).unwrap();
        supervise(d.path());
        let DirState::Exited(rec) = inspect(d.path()).unwrap() else {
            panic!("no exit record")
        };
        assert!(rec.aborted && rec.code.is_none());
        assert!(!d.path().join("runs").exists());
        let d = prepare(&["no-such-command-anywhere"]);
        supervise(d.path());
        let DirState::Exited(rec) = inspect(d.path()).unwrap() else {
            panic!("no exit record")
        };
        assert!(
            rec.spawn_error
                .unwrap()
                .contains("no-such-command-anywhere")
        );
    }

    #[test]
    fn abort_kills_the_whole_process_group() {
        let d = prepare(&["sh", "-c", "sleep 600 & echo $! > ../child; wait"]);
        let dir = d.path().to_path_buf();
        let t = std::thread::spawn(move || supervise(&dir));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // The shell creates `child` before writing the pid into it: wait for a whole pid.
        let read_child = || {
            std::fs::read_to_string(d.path().join("child"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
        };
        while !(d.path().join(STARTED).exists() && read_child().is_some()) {
            assert!(std::time::Instant::now() < deadline, "task did not start");
            std::thread::yield_now();
        }
        let child = read_child().unwrap();
        abort(d.path()).unwrap();
        t.join().unwrap();
        let DirState::Exited(rec) = inspect(d.path()).unwrap() else {
            panic!("no exit record")
        };
        assert!(rec.aborted);
        assert_eq!(rec.signal, Some(9));
        // The grandchild is gone too (it may linger as a zombie of init for a moment).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(child)
            && std::fs::read_to_string(format!("/proc/{child}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        {
            assert!(std::time::Instant::now() < deadline, "grandchild survived");
            std::thread::yield_now();
        }
    }
}
