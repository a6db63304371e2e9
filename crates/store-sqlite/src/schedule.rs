//! Table `schedules` on SQLite.

use crate::{SqliteStore, backend};
use contrail_store::{EntityKey, Result, ScheduleRecord, ScheduleStore};
use rusqlite::params;

impl ScheduleStore for SqliteStore {
    fn add_schedule(&self, k: &EntityKey) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO schedules (project, domain, name, version) VALUES (?,?,?,?) \
                 ON CONFLICT DO NOTHING",
                params![k.project, k.domain, k.name, k.version],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn active_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT s.project, s.domain, s.name, s.version, e.spec, e.updated_at, s.last_fire \
                 FROM schedules s JOIN entities e ON e.kind='launch_plan' AND e.project=s.project \
                 AND e.domain=s.domain AND e.name=s.name AND e.version=s.version \
                 WHERE e.state=1 ORDER BY s.project, s.domain, s.name, s.version",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ScheduleRecord {
                    key: EntityKey {
                        project: r.get(0)?,
                        domain: r.get(1)?,
                        name: r.get(2)?,
                        version: r.get(3)?,
                    },
                    spec: r.get(4)?,
                    activated_at: r.get(5)?,
                    last_fire: r.get(6)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
    }

    fn record_fire(&self, k: &EntityKey, at: i64) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE schedules SET last_fire=? WHERE project=? AND domain=? AND name=? \
                 AND version=? AND (last_fire IS NULL OR last_fire < ?)",
                params![at, k.project, k.domain, k.name, k.version, at],
            )
            .map_err(backend)?;
        Ok(())
    }
}
