//! The lease half of the SQLite adapter. One process owns a SQLite file, so leases here
//! mostly keep the controller's code path the same as on PostgreSQL; the single writer
//! connection serialises claims, renewals and fenced commits.

use crate::{SqliteStore, backend};
use contrail_store::{ExecKey, LeaseGrant, LeaseStore, ReplicaRecord, Result};
use rusqlite::{OptionalExtension, params};

/// Takes (or re-takes) one lease inside a transaction; the new epoch.
fn take(tx: &rusqlite::Transaction<'_>, k: &ExecKey, owner: &str, expires_at: i64) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO leases (project, domain, name, owner, epoch, expires_at) VALUES (?,?,?,?,1,?) \
         ON CONFLICT (project, domain, name) DO UPDATE SET owner=excluded.owner, \
         epoch=leases.epoch+1, expires_at=excluded.expires_at RETURNING epoch",
    )
    .and_then(|mut s| {
        s.query_row(
            params![k.project, k.domain, k.name, owner, expires_at],
            |r| r.get(0),
        )
    })
    .map_err(backend)
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecKey> {
    Ok(ExecKey {
        project: r.get(0)?,
        domain: r.get(1)?,
        name: r.get(2)?,
    })
}

impl LeaseStore for SqliteStore {
    fn claim_executions(
        &self,
        owner: &str,
        now: i64,
        expires_at: i64,
        limit: u32,
        adopt: bool,
    ) -> Result<Vec<LeaseGrant>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let keys = tx
            .prepare_cached(
                "SELECT e.project, e.domain, e.name FROM executions e \
                 LEFT JOIN leases l ON l.project=e.project AND l.domain=e.domain AND l.name=e.name \
                 WHERE e.phase NOT IN (4, 6, 7, 8) \
                 AND (l.owner IS NULL OR l.expires_at < ? OR (? AND l.owner = ?)) \
                 ORDER BY e.seq LIMIT ?",
            )
            .and_then(|mut s| {
                s.query_map(params![now, adopt, owner, limit], key_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(backend)?;
        let mut grants = Vec::with_capacity(keys.len());
        for key in keys {
            let epoch = take(&tx, &key, owner, expires_at)?;
            grants.push(LeaseGrant { key, epoch });
        }
        tx.commit().map_err(backend)?;
        Ok(grants)
    }

    fn claim_execution(
        &self,
        k: &ExecKey,
        owner: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let free: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM executions e \
                 LEFT JOIN leases l ON l.project=e.project AND l.domain=e.domain AND l.name=e.name \
                 WHERE e.project=? AND e.domain=? AND e.name=? AND e.phase NOT IN (4, 6, 7, 8) \
                 AND (l.owner IS NULL OR l.expires_at < ? OR l.owner = ?)",
                params![k.project, k.domain, k.name, now, owner],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let epoch = match free {
            Some(_) => Some(take(&tx, k, owner, expires_at)?),
            None => None,
        };
        tx.commit().map_err(backend)?;
        Ok(epoch)
    }

    fn renew_leases(&self, owner: &str, expires_at: i64) -> Result<Vec<LeaseGrant>> {
        self.conn()
            .prepare_cached(
                "UPDATE leases SET expires_at=? WHERE owner=? \
                 RETURNING project, domain, name, epoch",
            )
            .and_then(|mut s| {
                s.query_map(params![expires_at, owner], |r| {
                    Ok(LeaseGrant {
                        key: key_row(r)?,
                        epoch: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(backend)
    }

    fn release_leases(&self, owner: &str) -> Result<()> {
        let conn = self.conn();
        // Kept (unowned, expired) rather than deleted, so epochs only ever grow.
        conn.execute(
            "UPDATE leases SET owner='', expires_at=0 WHERE owner=?",
            params![owner],
        )
        .map_err(backend)?;
        conn.execute("DELETE FROM replicas WHERE id=?", params![owner])
            .map_err(backend)?;
        Ok(())
    }

    fn heartbeat(&self, r: &ReplicaRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO replicas (id, role, started_at, seen_at, expires_at) VALUES (?,?,?,?,?) \
                 ON CONFLICT (id) DO UPDATE SET role=excluded.role, seen_at=excluded.seen_at, \
                 expires_at=excluded.expires_at",
                params![r.id, r.role, r.started_at, r.seen_at, r.expires_at],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn list_replicas(&self, now: i64) -> Result<Vec<ReplicaRecord>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT r.id, r.role, r.started_at, r.seen_at, r.expires_at, \
                 (SELECT count(*) FROM leases l WHERE l.owner = r.id AND l.expires_at >= ?) \
                 FROM replicas r WHERE r.expires_at >= ? ORDER BY r.id",
            )
            .map_err(backend)?;
        stmt.query_map(params![now, now], |r| {
            Ok(ReplicaRecord {
                id: r.get(0)?,
                role: r.get(1)?,
                started_at: r.get(2)?,
                seen_at: r.get(3)?,
                expires_at: r.get(4)?,
                leases: r.get::<_, i64>(5)? as u64,
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)
    }
}
