//! A work queue keyed by execution: an execution is queued at most once (repeated wake-ups
//! coalesce), handed to one worker at a time, re-queued once if woken while being worked
//! on, and can be scheduled for later (requeue-after). Like kube-runtime's scheduler, an
//! execution has at most one timer: the earliest requested wins, so resyncs that ask again
//! for the same deadline never pile timers up.

use contrail_store::ExecKey;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
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
    /// Deadlines in time order; `deadline` holds each key's one entry.
    timers: BTreeSet<(Instant, ExecKey)>,
    deadline: HashMap<ExecKey, Instant>,
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

    /// Schedules a round for `k` at `at`, unless one is scheduled earlier already.
    pub fn add_at(&self, k: ExecKey, at: Instant) {
        let mut s = self.state();
        match s.deadline.get(&k) {
            Some(&current) if current <= at => return,
            Some(&current) => {
                s.timers.remove(&(current, k.clone()));
            }
            None => {}
        }
        s.deadline.insert(k.clone(), at);
        s.timers.insert((at, k));
        drop(s);
        self.notify.notify_one();
    }

    /// How many timers are pending.
    #[cfg(test)]
    fn timers(&self) -> usize {
        self.state().timers.len()
    }

    /// Executions ready to work on, and timers pending.
    pub fn depth(&self) -> (usize, usize) {
        let s = self.state();
        (s.ready.len(), s.timers.len())
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
                        s.deadline.remove(&k);
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
    async fn an_execution_has_one_timer_and_the_earliest_wins() {
        let q = Queue::default();
        let base = Instant::now() + std::time::Duration::from_secs(3600);
        // An hour-long gate, looked at by 3,600 resyncs, each asking for the same deadline
        // computed afresh (so never the identical instant).
        for i in 0..3600u64 {
            q.add_at(k("gate"), base + std::time::Duration::from_nanos(i));
        }
        assert_eq!(q.timers(), 1);
        q.add_at(k("other"), base);
        assert_eq!(q.timers(), 2);
        // An earlier deadline replaces the later one.
        let soon = Instant::now() + std::time::Duration::from_millis(20);
        q.add_at(k("gate"), soon);
        assert_eq!(q.timers(), 2);
        assert_eq!(q.next().await, k("gate"));
        assert!(Instant::now() >= soon);
        assert_eq!(q.timers(), 1);
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
