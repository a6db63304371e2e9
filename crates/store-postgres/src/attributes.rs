//! Table `matchable_attributes` on PostgreSQL.

use crate::PgStore;
use contrail_store::{AttributeScope, AttributeStore, Result};

impl AttributeStore for PgStore {
    fn put_attributes(&self, s: &AttributeScope, resource: i32, attributes: &[u8]) -> Result<()> {
        self.exec(
            "INSERT INTO matchable_attributes (project, domain, workflow, resource_type, attributes) \
             VALUES ($1,$2,$3,$4,$5) ON CONFLICT (project, domain, workflow, resource_type) \
             DO UPDATE SET attributes=excluded.attributes",
            &[&s.project, &s.domain, &s.workflow, &i64::from(resource), &attributes],
        )?;
        Ok(())
    }

    fn get_attributes(&self, s: &AttributeScope, resource: i32) -> Result<Option<Vec<u8>>> {
        Ok(self
            .opt_row(
                "SELECT attributes FROM matchable_attributes WHERE project=$1 AND domain=$2 \
                 AND workflow=$3 AND resource_type=$4",
                &[&s.project, &s.domain, &s.workflow, &i64::from(resource)],
            )?
            .map(|r| r.get(0)))
    }

    fn attributes_at(&self, s: &AttributeScope) -> Result<Vec<(i32, Vec<u8>)>> {
        Ok(self
            .rows(
                "SELECT resource_type, attributes FROM matchable_attributes WHERE project=$1 \
                 AND domain=$2 AND workflow=$3 ORDER BY resource_type",
                &[&s.project, &s.domain, &s.workflow],
            )?
            .iter()
            .map(|r| (r.get::<_, i64>(0) as i32, r.get(1)))
            .collect())
    }

    fn delete_attributes(&self, s: &AttributeScope, resource: i32) -> Result<bool> {
        Ok(self.exec(
            "DELETE FROM matchable_attributes WHERE project=$1 AND domain=$2 AND workflow=$3 \
             AND resource_type=$4",
            &[&s.project, &s.domain, &s.workflow, &i64::from(resource)],
        )? > 0)
    }

    fn list_attributes(&self, resource: i32) -> Result<Vec<(AttributeScope, Vec<u8>)>> {
        Ok(self
            .rows(
                "SELECT project, domain, workflow, attributes FROM matchable_attributes \
                 WHERE resource_type=$1 ORDER BY project, domain, workflow",
                &[&i64::from(resource)],
            )?
            .iter()
            .map(|r| {
                (
                    AttributeScope {
                        project: r.get(0),
                        domain: r.get(1),
                        workflow: r.get(2),
                    },
                    r.get(3),
                )
            })
            .collect())
    }
}
