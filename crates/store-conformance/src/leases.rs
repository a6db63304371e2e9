//! Leases of unfinished executions, fencing of commits, and the replica list.

use crate::executions::{exec, round};
use crate::key;
use contrail_store::{CommitOutcome, EventRecord, Fence, LeaseGrant, ReplicaRecord, Store};
use std::sync::Arc;

fn fenced(
    name: &str,
    revision: i64,
    phase: i32,
    owner: &str,
    epoch: i64,
) -> contrail_store::RoundCommit {
    contrail_store::RoundCommit {
        fence: Some(Fence {
            owner: owner.into(),
            epoch,
        }),
        events: vec![EventRecord {
            kind: "workflow",
            payload: vec![phase as u8],
            owner: String::new(),
        }],
        ..round(name, revision, phase)
    }
}

fn names(grants: &[LeaseGrant]) -> Vec<&str> {
    grants.iter().map(|g| g.key.name.as_str()).collect()
}

pub fn claims_take_free_and_expired_leases_once(s: Arc<dyn Store>) {
    for (i, name) in ["e1", "e2", "e3"].iter().enumerate() {
        s.create_execution(&exec(name, i as i64)).unwrap();
    }
    let mut done = exec("e4", 4);
    done.phase = 4;
    s.create_execution(&done).unwrap();
    let a = s.claim_executions("a", 100, 200, 2, false).unwrap();
    assert_eq!(names(&a), ["e1", "e2"], "oldest first, up to the limit");
    assert!(a.iter().all(|g| g.epoch == 1));
    let b = s.claim_executions("b", 100, 300, 10, false).unwrap();
    assert_eq!(
        names(&b),
        ["e3"],
        "held and finished executions are not claimed"
    );
    assert!(
        s.claim_executions("b", 150, 250, 10, false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.claim_execution(&key("e1"), "b", 150, 250).unwrap(), None);
    assert_eq!(s.claim_execution(&key("e4"), "b", 150, 250).unwrap(), None);
    assert_eq!(
        s.claim_execution(&key("nope"), "b", 150, 250).unwrap(),
        None
    );
    assert_eq!(
        s.claim_execution(&key("e2"), "a", 150, 200).unwrap(),
        Some(2),
        "an owner may re-take its own lease, at a higher epoch"
    );
    // After expiry, a takeover raises the epoch.
    assert_eq!(
        s.claim_execution(&key("e1"), "b", 201, 300).unwrap(),
        Some(2)
    );
    let rest = s.claim_executions("c", 201, 300, 10, false).unwrap();
    assert_eq!(names(&rest), ["e2"]);
    assert_eq!(rest[0].epoch, 3);
    // A restarted replica adopts what it held under the same id.
    let adopted = s.claim_executions("c", 202, 300, 10, true).unwrap();
    assert_eq!(names(&adopted), ["e2"]);
    assert_eq!(adopted[0].epoch, 4);
}

pub fn fenced_commits_need_the_current_epoch(s: Arc<dyn Store>) {
    s.create_execution(&exec("e", 1)).unwrap();
    assert_eq!(
        s.commit_round(&fenced("e", 0, 2, "a", 1)).unwrap(),
        CommitOutcome::Fenced,
        "no lease, no commit"
    );
    assert_eq!(s.claim_execution(&key("e"), "a", 10, 20).unwrap(), Some(1));
    assert_eq!(
        s.commit_round(&fenced("e", 0, 2, "a", 1)).unwrap(),
        CommitOutcome::Committed
    );
    // "a" pauses past its lease; "b" takes over and commits.
    assert_eq!(s.claim_execution(&key("e"), "b", 21, 40).unwrap(), Some(2));
    assert_eq!(
        s.commit_round(&fenced("e", 1, 3, "a", 1)).unwrap(),
        CommitOutcome::Fenced,
        "a stale epoch is rejected even at the current revision"
    );
    assert_eq!(
        s.commit_round(&fenced("e", 1, 3, "b", 2)).unwrap(),
        CommitOutcome::Committed
    );
    let e = s.get_execution(&key("e")).unwrap().unwrap();
    assert_eq!((e.phase, e.revision), (3, 2));
    let owners: Vec<(Vec<u8>, String)> = s
        .list_events(&key("e"))
        .unwrap()
        .into_iter()
        .map(|e| (e.payload, e.owner))
        .collect();
    assert_eq!(owners, [(vec![2], "a".into()), (vec![3], "b".into())]);
    assert!(
        s.renew_leases("a", 50).unwrap().is_empty(),
        "a holds nothing"
    );
}

pub fn renewals_keep_only_leases_still_held(s: Arc<dyn Store>) {
    s.create_execution(&exec("e1", 1)).unwrap();
    s.create_execution(&exec("e2", 2)).unwrap();
    s.claim_executions("a", 0, 10, 10, false).unwrap();
    // Expired but not taken over: renewing keeps it, at the same epoch.
    let kept = s.renew_leases("a", 30).unwrap();
    assert_eq!(kept.len(), 2);
    assert!(
        s.claim_executions("b", 20, 40, 10, false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.claim_execution(&key("e2"), "b", 31, 60).unwrap(), Some(2));
    let mut left = s.renew_leases("a", 70).unwrap();
    left.sort();
    assert_eq!(
        left,
        [LeaseGrant {
            key: key("e1"),
            epoch: 1
        }]
    );
    s.release_leases("a").unwrap();
    assert_eq!(
        s.claim_execution(&key("e1"), "b", 32, 60).unwrap(),
        Some(2),
        "released leases are free at once"
    );
}

pub fn terminal_commits_drop_the_lease(s: Arc<dyn Store>) {
    s.create_execution(&exec("e", 1)).unwrap();
    s.claim_execution(&key("e"), "a", 0, 100).unwrap();
    assert_eq!(
        s.commit_round(&fenced("e", 0, 4, "a", 1)).unwrap(),
        CommitOutcome::Committed
    );
    assert!(s.renew_leases("a", 200).unwrap().is_empty());
}

pub fn replicas_are_listed_with_their_leases(s: Arc<dyn Store>) {
    let replica = |id: &str, role: &str, seen_at: i64| ReplicaRecord {
        id: id.into(),
        role: role.into(),
        started_at: 1,
        seen_at,
        expires_at: seen_at + 10,
        leases: 0,
    };
    s.heartbeat(&replica("c1", "controller", 5)).unwrap();
    s.heartbeat(&replica("a1", "api", 5)).unwrap();
    s.heartbeat(&replica("c2", "controller", 1)).unwrap();
    s.heartbeat(&replica("c1", "controller", 20)).unwrap();
    s.create_execution(&exec("e1", 1)).unwrap();
    s.create_execution(&exec("e2", 2)).unwrap();
    s.claim_executions("c1", 20, 40, 10, false).unwrap();
    let live = s.list_replicas(20).unwrap();
    let summary: Vec<(&str, &str, i64, u64)> = live
        .iter()
        .map(|r| (r.id.as_str(), r.role.as_str(), r.seen_at, r.leases))
        .collect();
    assert_eq!(
        summary,
        [("c1", "controller", 20, 2)],
        "expired replicas are not listed"
    );
    s.release_leases("c1").unwrap();
    assert!(
        s.list_replicas(20).unwrap().is_empty(),
        "a released replica leaves"
    );
}

pub fn concurrent_claims_grant_each_execution_once(s: Arc<dyn Store>) {
    for i in 0..40 {
        s.create_execution(&exec(&format!("e{i:02}"), i)).unwrap();
    }
    let handles: Vec<_> = (0..4)
        .map(|r| {
            let s = s.clone();
            std::thread::spawn(move || {
                let owner = format!("r{r}");
                let mut got = Vec::new();
                for i in 0..40 {
                    let k = key(&format!("e{i:02}"));
                    if i % 2 == r % 2 {
                        got.extend(s.claim_executions(&owner, 0, 100, 3, false).unwrap());
                    } else if let Some(epoch) = s.claim_execution(&k, &owner, 0, 100).unwrap() {
                        got.push(LeaseGrant { key: k, epoch });
                    }
                }
                got.into_iter()
                    .map(move |g| (g.key, g.epoch, owner.clone()))
            })
        })
        .collect();
    let mut grants: Vec<(contrail_store::ExecKey, i64, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    grants.sort();
    // An owner may re-take its own lease (a higher epoch), but no two owners ever hold
    // one execution: every execution went to exactly one owner.
    let mut owners: std::collections::BTreeMap<_, std::collections::BTreeSet<String>> =
        Default::default();
    for (k, _, owner) in &grants {
        owners.entry(k.clone()).or_default().insert(owner.clone());
    }
    assert_eq!(owners.len(), 40, "every execution claimed");
    for (k, o) in owners {
        assert_eq!(o.len(), 1, "{k} granted to {o:?}");
    }
    let mut epochs: Vec<_> = grants.iter().map(|(k, e, _)| (k.clone(), *e)).collect();
    let n = epochs.len();
    epochs.dedup();
    assert_eq!(epochs.len(), n, "an epoch is granted once");
}
