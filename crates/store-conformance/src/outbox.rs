use crate::executions::{exec, round};
use crate::key;
use contrail_store::{CommitOutcome, NotificationRecord, RoundCommit, Store};
use std::sync::Arc;

fn message(id: &str, exec: &str, created_at: i64) -> NotificationRecord {
    NotificationRecord {
        id: id.into(),
        exec: key(exec),
        phase: 4,
        channel: "email".into(),
        recipients: vec!["a@example.com".into(), "b@example.com".into()],
        created_at,
        ..Default::default()
    }
}

pub fn notifications_are_written_with_their_round_and_claimed_until_delivered(s: Arc<dyn Store>) {
    assert!(s.create_execution(&exec("n1", 1)).unwrap());
    let done = RoundCommit {
        notifications: vec![message("n1/4/0", "n1", 10), message("n1/4/1", "n1", 10)],
        ..round("n1", 0, 4)
    };
    // A conflicting round writes nothing, its messages included.
    let stale = RoundCommit {
        revision: 7,
        notifications: vec![message("n1/4/9", "n1", 10)],
        ..round("n1", 7, 4)
    };
    assert_eq!(s.commit_round(&stale).unwrap(), CommitOutcome::Conflict);
    assert_eq!(s.commit_round(&done).unwrap(), CommitOutcome::Committed);
    // The same ids written again (a replayed commit) stay one message each.
    let again = RoundCommit {
        notifications: done.notifications.clone(),
        ..round("n1", 1, 4)
    };
    assert_eq!(s.commit_round(&again).unwrap(), CommitOutcome::Committed);
    let listed = s.list_notifications(&key("n1")).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].0, message("n1/4/0", "n1", 10));
    assert!(!listed[0].1);

    // Not due before its time; claimed once until the claim lapses.
    assert!(s.claim_notifications(9, 100, 10).unwrap().is_empty());
    let claimed = s.claim_notifications(10, 100, 1).unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["n1/4/0"]
    );
    let claimed = s.claim_notifications(11, 100, 10).unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["n1/4/1"]
    );
    assert!(
        s.claim_notifications(50, 100, 10).unwrap().is_empty(),
        "both claimed"
    );
    // One delivered, one failed: only the failed one comes back, at its retry time.
    s.notification_sent("n1/4/0", 60).unwrap();
    s.notification_failed("n1/4/1", 200, "connection refused")
        .unwrap();
    assert!(s.claim_notifications(150, 300, 10).unwrap().is_empty());
    let retried = s.claim_notifications(200, 300, 10).unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(
        (retried[0].attempts, retried[0].last_error.as_str()),
        (1, "connection refused")
    );
    // A lapsed claim (a worker died) is claimed again.
    let lapsed = s.claim_notifications(300, 400, 10).unwrap();
    assert_eq!(lapsed.len(), 1);
    s.notification_sent("n1/4/1", 310).unwrap();
    assert!(
        s.claim_notifications(10_000, 20_000, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        s.list_notifications(&key("n1"))
            .unwrap()
            .iter()
            .all(|(_, sent)| *sent)
    );
}
