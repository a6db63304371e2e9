//! Table `schedules` on PostgreSQL.

use crate::PgStore;
use contrail_store::{EntityKey, Result, ScheduleRecord, ScheduleStore};

impl ScheduleStore for PgStore {
    fn add_schedule(&self, k: &EntityKey) -> Result<()> {
        self.exec(
            "INSERT INTO schedules (project, domain, name, version) VALUES ($1,$2,$3,$4) \
             ON CONFLICT DO NOTHING",
            &[&k.project, &k.domain, &k.name, &k.version],
        )?;
        Ok(())
    }

    fn active_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        Ok(self
            .rows(
                "SELECT s.project, s.domain, s.name, s.version, e.spec, e.updated_at, s.last_fire \
                 FROM schedules s JOIN entities e ON e.kind='launch_plan' AND e.project=s.project \
                 AND e.domain=s.domain AND e.name=s.name AND e.version=s.version \
                 WHERE e.state=1 ORDER BY s.project, s.domain, s.name, s.version",
                &[],
            )?
            .iter()
            .map(|r| ScheduleRecord {
                key: EntityKey {
                    project: r.get(0),
                    domain: r.get(1),
                    name: r.get(2),
                    version: r.get(3),
                },
                spec: r.get(4),
                activated_at: r.get(5),
                last_fire: r.get(6),
            })
            .collect())
    }

    fn record_fire(&self, k: &EntityKey, at: i64) -> Result<()> {
        self.exec(
            "UPDATE schedules SET last_fire=$1 WHERE project=$2 AND domain=$3 AND name=$4 \
             AND version=$5 AND (last_fire IS NULL OR last_fire < $1)",
            &[&at, &k.project, &k.domain, &k.name, &k.version],
        )?;
        Ok(())
    }
}
