//! Table `notifications` (the outbox) on SQLite; messages keep their insertion order as rowid.

use crate::{SqliteStore, backend};
use contrail_store::{ExecKey, NotificationRecord, OutboxStore, Result};
use rusqlite::{Row, params};

const COLS: &str = "id, project, domain, exec_name, phase, channel, recipients, created_at, \
                    attempts, last_error, delivered_at";

fn row(r: &Row<'_>) -> rusqlite::Result<(NotificationRecord, bool)> {
    let recipients: String = r.get(6)?;
    let delivered: Option<i64> = r.get(10)?;
    Ok((
        NotificationRecord {
            id: r.get(0)?,
            exec: ExecKey {
                project: r.get(1)?,
                domain: r.get(2)?,
                name: r.get(3)?,
            },
            phase: r.get(4)?,
            channel: r.get(5)?,
            recipients: recipients.lines().map(str::to_string).collect(),
            created_at: r.get(7)?,
            attempts: r.get(8)?,
            last_error: r.get(9)?,
        },
        delivered.is_some(),
    ))
}

/// Writes a round's messages inside its transaction; ids already written are kept.
pub(crate) fn insert(
    tx: &rusqlite::Transaction<'_>,
    messages: &[NotificationRecord],
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO notifications (id, project, domain, exec_name, phase, channel, recipients, \
             created_at, next_attempt_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
        )
        .map_err(backend)?;
    for m in messages {
        stmt.execute(params![
            m.id,
            m.exec.project,
            m.exec.domain,
            m.exec.name,
            m.phase,
            m.channel,
            m.recipients.join("\n"),
            m.created_at,
            m.created_at,
        ])
        .map_err(backend)?;
    }
    Ok(())
}

impl OutboxStore for SqliteStore {
    fn claim_notifications(
        &self,
        now: i64,
        claim_until: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let claimed = tx
            .prepare_cached(&format!(
                "UPDATE notifications SET next_attempt_at=? WHERE id IN (SELECT id FROM notifications \
                 WHERE delivered_at IS NULL AND next_attempt_at<=? ORDER BY rowid LIMIT ?) \
                 RETURNING {COLS}, rowid"
            ))
            .and_then(|mut s| {
                s.query_map(params![claim_until, now, limit], |r| {
                    Ok((row(r)?.0, r.get::<_, i64>(11)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        let mut claimed = claimed;
        claimed.sort_by_key(|(_, rowid)| *rowid);
        Ok(claimed.into_iter().map(|(m, _)| m).collect())
    }

    fn notification_sent(&self, id: &str, now: i64) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE notifications SET delivered_at=? WHERE id=?",
                params![now, id],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn notification_failed(&self, id: &str, retry_at: i64, error: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE notifications SET attempts=attempts+1, next_attempt_at=?, last_error=? \
                 WHERE id=? AND delivered_at IS NULL",
                params![retry_at, error, id],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn list_notifications(&self, k: &ExecKey) -> Result<Vec<(NotificationRecord, bool)>> {
        self.read()
            .prepare_cached(&format!(
                "SELECT {COLS} FROM notifications WHERE project=? AND domain=? AND exec_name=? \
                 ORDER BY rowid"
            ))
            .and_then(|mut s| {
                s.query_map(params![k.project, k.domain, k.name], row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(backend)
    }
}
