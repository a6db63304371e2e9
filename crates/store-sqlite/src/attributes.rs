//! Table `matchable_attributes` on SQLite.

use crate::{SqliteStore, backend};
use contrail_store::{AttributeScope, AttributeStore, Result};
use rusqlite::{OptionalExtension, params};

impl AttributeStore for SqliteStore {
    fn put_attributes(&self, s: &AttributeScope, resource: i32, attributes: &[u8]) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO matchable_attributes (project, domain, workflow, resource_type, attributes) \
                 VALUES (?,?,?,?,?) ON CONFLICT (project, domain, workflow, resource_type) \
                 DO UPDATE SET attributes=excluded.attributes",
                params![s.project, s.domain, s.workflow, resource, attributes],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn get_attributes(&self, s: &AttributeScope, resource: i32) -> Result<Option<Vec<u8>>> {
        self.read()
            .query_row(
                "SELECT attributes FROM matchable_attributes WHERE project=? AND domain=? \
                 AND workflow=? AND resource_type=?",
                params![s.project, s.domain, s.workflow, resource],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
    }

    fn attributes_at(&self, s: &AttributeScope) -> Result<Vec<(i32, Vec<u8>)>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT resource_type, attributes FROM matchable_attributes WHERE project=? \
                 AND domain=? AND workflow=? ORDER BY resource_type",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![s.project, s.domain, s.workflow], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
    }

    fn delete_attributes(&self, s: &AttributeScope, resource: i32) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM matchable_attributes WHERE project=? AND domain=? AND workflow=? \
                 AND resource_type=?",
                params![s.project, s.domain, s.workflow, resource],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn list_attributes(&self, resource: i32) -> Result<Vec<(AttributeScope, Vec<u8>)>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT project, domain, workflow, attributes FROM matchable_attributes \
                 WHERE resource_type=? ORDER BY project, domain, workflow",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![resource], |r| {
                Ok((
                    AttributeScope {
                        project: r.get(0)?,
                        domain: r.get(1)?,
                        workflow: r.get(2)?,
                    },
                    r.get(3)?,
                ))
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
    }
}
