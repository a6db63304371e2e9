//! A work queue keyed by execution: an execution is queued at most once (repeated wake-ups
//! coalesce), handed to one worker at a time, re-queued once if woken while being worked
//! on, and can be scheduled for later (requeue-after).

use contrail_store::ExecKey;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Default)]
struct State {
    ready: VecDeque<ExecKey>,
    queued: HashSet<ExecKey>,
    working: HashSet<ExecKey>,
    /// Woken while being worked on: queue again when the worker is done.
    again: HashSet<ExecKey>,
    timers: BTreeSet<(Instant, ExecKey)>,
}

#[derive(Default)]
pub struct Queue {
    s: Mutex<State>,
    notify: Notify,
}

impl Queue {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.s.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, k: ExecKey) {
        let mut s = self.state();
        if s.working.contains(&k) {
            s.again.insert(k);
        } else if s.queued.insert(k.clone()) {
            s.ready.push_back(k);
            drop(s);
            self.notify.notify_one();
        }
    }

    pub fn add_at(&self, k: ExecKey, at: Instant) {
        self.state().timers.insert((at, k));
        self.notify.notify_one();
    }

    /// Waits for the next execution to work on.
    pub async fn next(&self) -> ExecKey {
        loop {
            let wait_until = {
                let mut s = self.state();
                let now = Instant::now();
                while let Some((at, _)) = s.timers.first() {
                    if *at > now {
                        break;
                    }
                    if let Some((_, k)) = s.timers.pop_first() {
                        if s.working.contains(&k) {
                            s.again.insert(k);
                        } else if s.queued.insert(k.clone()) {
                            s.ready.push_back(k);
                        }
                    }
                }
                if let Some(k) = s.ready.pop_front() {
                    s.queued.remove(&k);
                    s.working.insert(k.clone());
                    if !s.ready.is_empty() {
                        self.notify.notify_one();
                    }
                    return k;
                }
                s.timers.first().map(|(at, _)| *at)
            };
            match wait_until {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at, self.notify.notified()).await;
                }
                None => self.notify.notified().await,
            }
        }
    }

    pub fn done(&self, k: &ExecKey) {
        let mut s = self.state();
        s.working.remove(k);
        if s.again.remove(k) && s.queued.insert(k.clone()) {
            s.ready.push_back(k.clone());
            drop(s);
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> ExecKey {
        ExecKey {
            project: "p".into(),
            domain: "d".into(),
            name: n.into(),
        }
    }

    #[tokio::test]
    async fn wakeups_coalesce_and_one_worker_holds_a_key() {
        let q = Queue::default();
        q.add(k("a"));
        q.add(k("a"));
        q.add(k("b"));
        assert_eq!(q.next().await, k("a"));
        q.add(k("a")); // while working: remembered, not handed out twice
        assert_eq!(q.next().await, k("b"));
        let none = tokio::time::timeout(std::time::Duration::from_millis(20), q.next()).await;
        assert!(
            none.is_err(),
            "a is being worked on and must not be handed out"
        );
        q.done(&k("a"));
        assert_eq!(q.next().await, k("a"));
    }

    #[tokio::test]
    async fn requeue_after_fires_at_its_time() {
        let q = Queue::default();
        let at = Instant::now() + std::time::Duration::from_millis(30);
        q.add_at(k("t"), at);
        assert_eq!(q.next().await, k("t"));
        assert!(Instant::now() >= at);
    }
}
