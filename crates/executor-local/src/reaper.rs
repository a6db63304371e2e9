//! The resident supervisor's one reaper. The supervisor is a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`): an attempt forked by a warm worker is re-parented to it as
//! soon as the worker's intermediate child exits, and so is anything a task leaves behind.
//! One thread waits for every child and hands each exit to whoever waits for that pid.
//!
//! It peeks with `waitid(WNOWAIT)` and reaps only pids it was told about, so the pid of an
//! attempt that ends before its start was registered stays a zombie (and keeps its status)
//! until it is. Pids nobody registers within [`STRANGER_GRACE`] are orphans a task left
//! behind: they are reaped and forgotten, when `reap_strangers` is set.

use crate::lock;
use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long an exited child nobody registered stays unreaped.
pub const STRANGER_GRACE: Duration = Duration::from_secs(2);

/// (exit code, signal)
pub type Ended = (Option<i32>, Option<i32>);

#[derive(Default)]
struct Book {
    /// Registered pids still running.
    expected: HashSet<i32>,
    /// Registered pids that ended, until their waiter takes the status.
    ended: HashMap<i32, Ended>,
    /// Exited children nobody registered yet, since when they were first seen.
    strangers: HashMap<i32, Instant>,
}

pub struct Reaper {
    book: Mutex<Book>,
    changed: Condvar,
    reap_strangers: bool,
}

impl Reaper {
    /// Makes this process a child subreaper and starts the reaping thread.
    pub fn start(reap_strangers: bool) -> std::sync::Arc<Reaper> {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!("cannot become a child subreaper: {e}");
        }
        let reaper = std::sync::Arc::new(Reaper {
            book: Mutex::default(),
            changed: Condvar::new(),
            reap_strangers,
        });
        let looper = reaper.clone();
        std::thread::spawn(move || looper.run());
        reaper
    }

    /// Registers a pid whose end someone will wait for.
    pub fn expect(&self, pid: i32) {
        lock(&self.book).expected.insert(pid);
    }

    /// Waits for a registered pid to end.
    pub fn wait(&self, pid: i32) -> Ended {
        let mut book = lock(&self.book);
        book.expected.insert(pid);
        loop {
            if let Some(ended) = book.ended.remove(&pid) {
                book.expected.remove(&pid);
                return ended;
            }
            book = self
                .changed
                .wait_timeout(book, Duration::from_millis(200))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn run(&self) {
        loop {
            // Peek at an exited child without reaping it.
            let peeked = waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT);
            let pid = match peeked {
                Ok(status) => match status.pid() {
                    Some(pid) => pid.as_raw(),
                    None => continue,
                },
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    // No children at all (ECHILD): one may be spawned or adopted any time.
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            let reap = {
                let mut book = lock(&self.book);
                if book.expected.contains(&pid) {
                    book.strangers.remove(&pid);
                    true
                } else {
                    let since = *book.strangers.entry(pid).or_insert_with(Instant::now);
                    self.reap_strangers && since.elapsed() >= STRANGER_GRACE
                }
            };
            if reap {
                self.reap(pid);
            } else {
                // A zombie waiting for its registration (or, in tests, someone else's
                // child) is what waitid reports first until it goes: meanwhile, look at
                // the registered pids one by one.
                let expected: Vec<i32> = lock(&self.book).expected.iter().copied().collect();
                for pid in expected {
                    self.reap(pid);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// Reaps `pid` if it has ended, and hands its status to its waiter.
    fn reap(&self, pid: i32) {
        let ended = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => (Some(code), None),
            Ok(WaitStatus::Signaled(_, signal, _)) => (None, Some(signal as i32)),
            _ => return,
        };
        let mut book = lock(&self.book);
        book.strangers.remove(&pid);
        if book.expected.remove(&pid) {
            book.ended.insert(pid, ended);
            self.changed.notify_all();
        }
    }
}
