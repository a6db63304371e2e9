//! The lease half of the PostgreSQL adapter, and cross-process wake-ups.

use crate::exec::wake_payload;
use crate::{PgStore, WAKE_CHANNEL, backend};
use contrail_store::{ExecKey, LeaseGrant, LeaseStore, ReplicaRecord, Result};
use futures_util::StreamExt;
use std::sync::atomic::Ordering;
use tokio_postgres::Row;

fn grant(r: &Row) -> LeaseGrant {
    LeaseGrant {
        key: ExecKey {
            project: r.get(0),
            domain: r.get(1),
            name: r.get(2),
        },
        epoch: r.get(3),
    }
}

/// Takes the lease of each candidate execution: a new row at epoch 1, or a takeover at
/// epoch + 1 when the row still qualifies (it is re-checked under the row lock, so of two
/// claimers of one row only one succeeds).
const TAKE: &str = "INSERT INTO leases (project, domain, name, owner, epoch, expires_at) \
     SELECT project, domain, name, $1, 1, $2 FROM candidates \
     ON CONFLICT (project, domain, name) DO UPDATE \
     SET owner=excluded.owner, epoch=leases.epoch+1, expires_at=excluded.expires_at \
     WHERE leases.expires_at < $3 OR leases.owner = '' OR ($4 AND leases.owner = $1) \
     RETURNING project, domain, name, epoch";

impl LeaseStore for PgStore {
    fn claim_executions(
        &self,
        owner: &str,
        now: i64,
        expires_at: i64,
        limit: u32,
        adopt: bool,
    ) -> Result<Vec<LeaseGrant>> {
        // SKIP LOCKED: rows another claimer (or a commit) holds right now are left for
        // later instead of waited for.
        let sql = format!(
            "WITH candidates AS (\
               SELECT e.project, e.domain, e.name FROM executions e \
               LEFT JOIN leases l ON l.project=e.project AND l.domain=e.domain AND l.name=e.name \
               WHERE e.phase NOT IN (4, 6, 7, 8) \
               AND (l.owner IS NULL OR l.expires_at < $3 OR l.owner = '' OR ($4 AND l.owner = $1)) \
               ORDER BY e.seq LIMIT $5 FOR UPDATE OF e SKIP LOCKED) {TAKE}"
        );
        Ok(self
            .rows(&sql, &[&owner, &expires_at, &now, &adopt, &(limit as i64)])?
            .iter()
            .map(grant)
            .collect())
    }

    fn claim_execution(
        &self,
        k: &ExecKey,
        owner: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<i64>> {
        let sql = format!(
            "WITH candidates AS (\
               SELECT project, domain, name FROM executions \
               WHERE project=$5 AND domain=$6 AND name=$7 AND phase NOT IN (4, 6, 7, 8)) {TAKE}"
        );
        Ok(self
            .opt_row(
                &sql,
                &[
                    &owner,
                    &expires_at,
                    &now,
                    &true,
                    &k.project,
                    &k.domain,
                    &k.name,
                ],
            )?
            .map(|r| r.get(3)))
    }

    fn renew_leases(&self, owner: &str, expires_at: i64) -> Result<Vec<LeaseGrant>> {
        Ok(self
            .rows(
                "UPDATE leases SET expires_at=$1 WHERE owner=$2 \
                 RETURNING project, domain, name, epoch",
                &[&expires_at, &owner],
            )?
            .iter()
            .map(grant)
            .collect())
    }

    fn release_leases(&self, owner: &str) -> Result<()> {
        // Kept (unowned, expired) rather than deleted, so epochs only ever grow.
        self.exec(
            "UPDATE leases SET owner='', expires_at=0 WHERE owner=$1",
            &[&owner],
        )?;
        self.exec("DELETE FROM replicas WHERE id=$1", &[&owner])?;
        Ok(())
    }

    fn heartbeat(&self, r: &ReplicaRecord) -> Result<()> {
        self.exec(
            "INSERT INTO replicas (id, role, started_at, seen_at, expires_at) VALUES ($1,$2,$3,$4,$5) \
             ON CONFLICT (id) DO UPDATE SET role=excluded.role, seen_at=excluded.seen_at, \
             expires_at=excluded.expires_at",
            &[&r.id, &r.role, &r.started_at, &r.seen_at, &r.expires_at],
        )?;
        Ok(())
    }

    fn list_replicas(&self, now: i64) -> Result<Vec<ReplicaRecord>> {
        Ok(self
            .rows(
                "SELECT r.id, r.role, r.started_at, r.seen_at, r.expires_at, \
                 (SELECT count(*) FROM leases l WHERE l.owner = r.id AND l.expires_at >= $1) \
                 FROM replicas r WHERE r.expires_at >= $1 ORDER BY r.id",
                &[&now],
            )?
            .iter()
            .map(|r| ReplicaRecord {
                id: r.get(0),
                role: r.get(1),
                started_at: r.get(2),
                seen_at: r.get(3),
                expires_at: r.get(4),
                leases: r.get::<_, i64>(5) as u64,
            })
            .collect())
    }

    fn nudge(&self, k: &ExecKey) -> Result<()> {
        self.exec(
            "SELECT pg_notify($1, $2)",
            &[&WAKE_CHANNEL, &wake_payload(k)],
        )?;
        Ok(())
    }

    fn subscribe(&self, on_wake: Box<dyn Fn(ExecKey) + Send + Sync>) -> bool {
        crate::lock(&self.listeners).push(on_wake.into());
        if !self.listening.swap(true, Ordering::SeqCst) {
            let config = self.config.clone();
            let listeners = self.listeners.clone();
            self.rt().spawn(listen(config, listeners));
        }
        true
    }
}

/// Holds one connection in `LISTEN` and hands every notification to the listeners,
/// reconnecting after a failure (wake-ups are hints: the resync covers the gap).
async fn listen(config: tokio_postgres::Config, listeners: crate::Listeners) {
    loop {
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                let _ = tx.send(n.payload().to_string());
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("wake-up listener: {e}");
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client
                    .batch_execute(&format!("LISTEN {WAKE_CHANNEL}"))
                    .await
                {
                    tracing::warn!("cannot LISTEN: {e}");
                } else {
                    tracing::info!("listening for wake-ups");
                    while let Some(payload) = rx.recv().await {
                        let mut parts = payload.splitn(3, '/');
                        if let (Some(p), Some(d), Some(n)) =
                            (parts.next(), parts.next(), parts.next())
                        {
                            let key = ExecKey {
                                project: p.into(),
                                domain: d.into(),
                                name: n.into(),
                            };
                            let all = crate::lock(&listeners).clone();
                            for f in all {
                                f(key.clone());
                            }
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!("wake-up listener cannot connect: {}", backend(e)),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
