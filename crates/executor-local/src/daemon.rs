//! The resident supervisor: one long-lived process (`contrail supervise-daemon <socket>`)
//! that starts task attempts for the server and records how they end, exactly as a
//! per-attempt supervisor does (same files, same lock), without starting a supervisor
//! process per task.
//!
//! Protocol over a Unix socket, one line each: the server sends `launch <attempt dir>`;
//! the daemon sends `exit <attempt dir>` to every connected server when a task ends. The
//! daemon runs in its own process group and outlives the server: after `kill -9` of the
//! server it keeps waiting for its tasks, and the restarted server connects to it again.
//! It exits after `idle` with no connection and no task.

use crate::lock;
use crate::reaper::Reaper;
use crate::supervisor::{Begun, Launch, Process, Spawner, begin, open_lock, spawn_cold};
use crate::zygote::Zygotes;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of the resident supervisor.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Exit after this long with no connection and no task.
    pub idle: Duration,
    /// Attempts one warm worker forks before it is replaced.
    pub max_forks: u32,
    /// Reap exited children nobody registered (orphans tasks leave behind). Off only where
    /// the daemon shares its process with other children's owners (tests).
    pub reap_strangers: bool,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            idle: Duration::from_secs(30),
            max_forks: 500,
            reap_strangers: true,
        }
    }
}

/// Starts attempts warm when their worker can serve them, cold otherwise; every attempt's
/// process is waited for by the reaper.
struct DaemonSpawner {
    zygotes: Arc<Zygotes>,
    reaper: Arc<Reaper>,
}

impl Spawner for DaemonSpawner {
    fn spawn(&self, launch: &Launch, dir: &Path) -> Result<Process, String> {
        // A forked attempt opens its own logs; the cold way opens them before it spawns.
        let forked = launch
            .warm
            .as_ref()
            .and_then(|warm| self.zygotes.fork(warm, &launch.cwd, dir));
        let pid = match forked {
            Some(pid) => pid,
            None => {
                let pid = spawn_cold(launch, dir)?.id() as i32;
                self.reaper.expect(pid);
                pid
            }
        };
        Ok(Process::Reaped {
            pid,
            reaper: self.reaper.clone(),
            warm: forked.is_some(),
        })
    }
}

#[derive(Default)]
struct Shared {
    clients: Vec<(u64, UnixStream)>,
    running: usize,
    last_active: Option<Instant>,
}

fn notify(shared: &Mutex<Shared>, dir: &Path) {
    let line = format!("exit {}\n", dir.display());
    let mut s = lock(shared);
    s.clients
        .retain_mut(|(_, c)| c.write_all(line.as_bytes()).is_ok());
}

/// Starts (or recognises as done) one attempt; the lock is held until its task ends.
///
/// Starts happen one after another on the connection's thread (a thousand launches start a
/// thousand processes in turn, not at once). The lock is only briefly busy when the server
/// probes it to tell whether an attempt is supervised, so a launch retries for a moment
/// rather than mistaking the probe for another supervisor; if it stays busy, a real
/// supervisor holds it and a background thread waits for it to finish.
fn launch(shared: &Arc<Mutex<Shared>>, spawner: &Arc<DaemonSpawner>, dir: PathBuf) {
    let Ok(lock_file) = open_lock(&dir) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_millis(100);
    while lock_file.try_lock().is_err() {
        if Instant::now() >= deadline {
            lock(shared).running += 1;
            let shared = shared.clone();
            let spawner = spawner.clone();
            std::thread::spawn(move || {
                if lock_file.lock().is_ok() {
                    run(&shared, &spawner, dir, lock_file);
                }
                lock(&shared).running -= 1;
            });
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    run(shared, spawner, dir, lock_file);
}

/// With the attempt's lock held: start it, or report the end it already has.
fn run(
    shared: &Arc<Mutex<Shared>>,
    spawner: &DaemonSpawner,
    dir: PathBuf,
    lock_file: std::fs::File,
) {
    match begin(&dir, spawner) {
        Ok(Begun::Recorded) => notify(shared, &dir),
        Ok(Begun::Running(task)) => {
            lock(shared).running += 1;
            let shared = shared.clone();
            std::thread::spawn(move || {
                if let Err(e) = task.finish() {
                    let _ = std::fs::write(dir.join("supervisor.err"), e.to_string());
                }
                drop(lock_file);
                {
                    let mut s = lock(&shared);
                    s.running -= 1;
                    s.last_active = Some(Instant::now());
                }
                notify(&shared, &dir);
            });
        }
        Err(e) => {
            let _ = std::fs::write(dir.join("supervisor.err"), e.to_string());
            notify(shared, &dir);
        }
    }
}

/// Serves `socket` until idle for `options.idle`. Returns the process exit code.
pub fn run_daemon(socket: &Path, options: DaemonOptions) -> i32 {
    let idle = options.idle;
    // Only one daemon per socket: a live one answers connections.
    if UnixStream::connect(socket).is_ok() {
        return 0;
    }
    let _ = std::fs::remove_file(socket);
    let Ok(listener) = UnixListener::bind(socket) else {
        return 1;
    };
    let _ = std::fs::write(socket.with_extension("pid"), std::process::id().to_string());
    let reaper = Reaper::start(options.reap_strangers);
    let workers_dir = socket
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("workers");
    let zygotes = match Zygotes::new(workers_dir, options.max_forks, reaper.clone()) {
        Ok(z) => z,
        Err(_) => return 1,
    };
    let spawner = Arc::new(DaemonSpawner { zygotes, reaper });
    let shared = Arc::new(Mutex::new(Shared {
        last_active: Some(Instant::now()),
        ..Default::default()
    }));
    {
        let shared = shared.clone();
        let socket = socket.to_path_buf();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let s = lock(&shared);
                let quiet = s.clients.is_empty()
                    && s.running == 0
                    && s.last_active.is_some_and(|t| t.elapsed() >= idle);
                if quiet {
                    let _ = std::fs::remove_file(&socket);
                    let _ = std::fs::remove_file(socket.with_extension("pid"));
                    std::process::exit(0);
                }
            }
        });
    }
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let Ok(writer) = conn.try_clone() else {
            continue;
        };
        next_id += 1;
        let id = next_id;
        lock(&shared).clients.push((id, writer));
        let shared = shared.clone();
        let spawner = spawner.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(conn).lines() {
                let Ok(line) = line else { break };
                if let Some(dir) = line.strip_prefix("launch ") {
                    launch(&shared, &spawner, PathBuf::from(dir));
                } else if let Some(json) = line.strip_prefix("warm ")
                    && let Ok(warm) = serde_json::from_str(json)
                {
                    spawner.zygotes.prepare(&warm);
                }
            }
            let mut s = lock(&shared);
            s.clients.retain(|(c, _)| *c != id);
            s.last_active = Some(Instant::now());
        });
    }
    0
}

/// The server's end of the connection.
pub(crate) struct Link {
    writer: UnixStream,
}

impl Link {
    /// Connects; `on_exit` is called (on a reader thread) for every finished attempt, and
    /// `on_close` once when the connection ends.
    pub(crate) fn connect(
        socket: &Path,
        on_exit: impl Fn(PathBuf) + Send + 'static,
        on_close: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Link> {
        let stream = UnixStream::connect(socket)?;
        let reader = stream.try_clone()?;
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if let Some(dir) = line.strip_prefix("exit ") {
                    on_exit(PathBuf::from(dir));
                }
            }
            on_close();
        });
        Ok(Link { writer: stream })
    }

    pub(crate) fn launch(&mut self, dir: &Path) -> std::io::Result<()> {
        self.writer
            .write_all(format!("launch {}\n", dir.display()).as_bytes())
    }

    /// Asks for the warm worker of this environment to be started ahead of its first task.
    pub(crate) fn warm(&mut self, warm: &crate::supervisor::Warm) -> std::io::Result<()> {
        let json = serde_json::to_string(warm).map_err(std::io::Error::other)?;
        self.writer.write_all(format!("warm {json}\n").as_bytes())
    }
}

/// Waits until something listens on `socket`.
pub(crate) fn wait_for(socket: &Path, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if UnixStream::connect(socket).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::{DirState, LAUNCH, Launch, inspect};
    use std::sync::mpsc;

    fn prepare(root: &Path, name: &str, script: &str) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(d.join("sandbox")).unwrap();
        let l = Launch {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            cwd: d.join("sandbox"),
            cpu_millis: 0,
            memory_bytes: 0,
            warm: None,
            ledger: None,
        };
        std::fs::write(d.join(LAUNCH), serde_json::to_vec(&l).unwrap()).unwrap();
        d
    }

    #[test]
    fn the_resident_supervisor_runs_attempts_once_and_reports_their_ends() {
        let root = tempfile::tempdir().unwrap();
        let socket = root.path().join("s.sock");
        {
            let socket = socket.clone();
            let options = DaemonOptions {
                idle: Duration::from_secs(3600),
                reap_strangers: false,
                ..Default::default()
            };
            std::thread::spawn(move || run_daemon(&socket, options));
        }
        assert!(wait_for(&socket, Duration::from_secs(10)));
        let (tx, rx) = mpsc::channel();
        let mut link = Link::connect(&socket, move |d| tx.send(d).unwrap(), || {}).unwrap();
        let a = prepare(root.path(), "a", "echo run >> ../runs; exit 4");
        link.launch(&a).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), a);
        let DirState::Exited(rec) = inspect(&a).unwrap() else {
            panic!("no exit record")
        };
        assert_eq!(rec.code, Some(4));
        // Launching a finished attempt again reports it at once and runs nothing.
        link.launch(&a).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), a);
        assert_eq!(std::fs::read_to_string(a.join("runs")).unwrap(), "run\n");
        // A second client (a restarted server) is served by the same daemon.
        let (tx2, rx2) = mpsc::channel();
        let mut link2 = Link::connect(&socket, move |d| tx2.send(d).unwrap(), || {}).unwrap();
        let b = prepare(root.path(), "b", "true");
        link2.launch(&b).unwrap();
        assert_eq!(rx2.recv_timeout(Duration::from_secs(10)).unwrap(), b);
        // The server probing the lock at the moment of the launch (inspect) does not make
        // the daemon drop the attempt as "supervised by someone else".
        let c = prepare(root.path(), "c", "true");
        let probe = open_lock(&c).unwrap();
        probe.lock().unwrap();
        link2.launch(&c).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(probe);
        assert_eq!(rx2.recv_timeout(Duration::from_secs(10)).unwrap(), c);
        assert!(matches!(inspect(&c).unwrap(), DirState::Exited(_)));
    }
}
