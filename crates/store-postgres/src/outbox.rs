//! Table `notifications` (the outbox) on PostgreSQL.

use crate::{PgStore, backend};
use contrail_store::{ExecKey, NotificationRecord, OutboxStore, Result};
use tokio_postgres::Row;

const COLS: &str = "id, project, domain, exec_name, phase, channel, recipients, created_at, \
                    attempts, last_error, delivered_at";

fn row(r: &Row) -> (NotificationRecord, bool) {
    let recipients: String = r.get(6);
    let delivered: Option<i64> = r.get(10);
    (
        NotificationRecord {
            id: r.get(0),
            exec: ExecKey {
                project: r.get(1),
                domain: r.get(2),
                name: r.get(3),
            },
            phase: r.get::<_, i64>(4) as i32,
            channel: r.get(5),
            recipients: recipients.lines().map(str::to_string).collect(),
            created_at: r.get(7),
            attempts: r.get::<_, i64>(8) as u32,
            last_error: r.get(9),
        },
        delivered.is_some(),
    )
}

/// Writes a round's messages inside its transaction; ids already written are kept.
pub(crate) async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    messages: &[NotificationRecord],
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO notifications (id, project, domain, exec_name, phase, channel, \
             recipients, created_at, next_attempt_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8) \
             ON CONFLICT (id) DO NOTHING",
        )
        .await
        .map_err(backend)?;
    for m in messages {
        let recipients = m.recipients.join("\n");
        tx.execute(
            &stmt,
            &[
                &m.id,
                &m.exec.project,
                &m.exec.domain,
                &m.exec.name,
                &i64::from(m.phase),
                &m.channel,
                &recipients,
                &m.created_at,
            ],
        )
        .await
        .map_err(backend)?;
    }
    Ok(())
}

impl OutboxStore for PgStore {
    fn claim_notifications(
        &self,
        now: i64,
        claim_until: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        // SKIP LOCKED: a message another worker is claiming right now is left to it.
        let mut claimed: Vec<(NotificationRecord, i64)> = self
            .rows(
                &format!(
                    "UPDATE notifications SET next_attempt_at=$1 WHERE id IN (SELECT id FROM \
                     notifications WHERE delivered_at IS NULL AND next_attempt_at<=$2 \
                     ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING {COLS}, seq"
                ),
                &[&claim_until, &now, &i64::from(limit)],
            )?
            .iter()
            .map(|r| (row(r).0, r.get(11)))
            .collect();
        claimed.sort_by_key(|(_, seq)| *seq);
        Ok(claimed.into_iter().map(|(m, _)| m).collect())
    }

    fn notification_sent(&self, id: &str, now: i64) -> Result<()> {
        self.exec(
            "UPDATE notifications SET delivered_at=$1 WHERE id=$2",
            &[&now, &id],
        )?;
        Ok(())
    }

    fn notification_failed(&self, id: &str, retry_at: i64, error: &str) -> Result<()> {
        self.exec(
            "UPDATE notifications SET attempts=attempts+1, next_attempt_at=$1, last_error=$2 \
             WHERE id=$3 AND delivered_at IS NULL",
            &[&retry_at, &error, &id],
        )?;
        Ok(())
    }

    fn list_notifications(&self, k: &ExecKey) -> Result<Vec<(NotificationRecord, bool)>> {
        Ok(self
            .rows(
                &format!(
                    "SELECT {COLS} FROM notifications WHERE project=$1 AND domain=$2 \
                     AND exec_name=$3 ORDER BY seq"
                ),
                &[&k.project, &k.domain, &k.name],
            )?
            .iter()
            .map(row)
            .collect())
    }
}
