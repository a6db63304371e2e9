//! The catalog half of the SQLite adapter.

use crate::{SqliteStore, backend};
use contrail_store::{
    ArtifactRecord, ArtifactUse, CatalogKey, CatalogStore, ExecKey, MemoStore, Result,
};
use rusqlite::{OptionalExtension, params, types::Value};

const COLS: &str = "project, domain, name, version, tag, artifact_id, outputs_uri, src_project, \
     src_domain, src_exec, src_node, src_attempt, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ArtifactRecord> {
    Ok(ArtifactRecord {
        key: CatalogKey {
            project: r.get(0)?,
            domain: r.get(1)?,
            name: r.get(2)?,
            version: r.get(3)?,
            tag: r.get(4)?,
        },
        artifact_id: r.get(5)?,
        outputs_uri: r.get(6)?,
        source: ExecKey {
            project: r.get(7)?,
            domain: r.get(8)?,
            name: r.get(9)?,
        },
        source_node: r.get(10)?,
        source_attempt: r.get(11)?,
        created_at: r.get(12)?,
    })
}

impl SqliteStore {
    fn artifacts(&self, sql: &str, args: Vec<Value>) -> Result<Vec<ArtifactRecord>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        stmt.query_map(rusqlite::params_from_iter(args), row)
            .map_err(backend)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(backend)
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Appends ` AND <col>=?` for every filter that is set.
fn and_eq(sql: &mut String, args: &mut Vec<Value>, filters: &[(&str, Option<&str>)]) {
    for (col, v) in filters {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col}=?"));
            args.push(text(v));
        }
    }
}

impl CatalogStore for SqliteStore {
    fn get_artifact_by_id(&self, id: &str) -> Result<Option<ArtifactRecord>> {
        self.read()
            .prepare_cached(&format!(
                "SELECT {COLS} FROM catalog_artifacts WHERE artifact_id=?"
            ))
            .and_then(|mut s| s.query_row(params![id], row).optional())
            .map_err(backend)
    }

    fn list_artifacts(
        &self,
        project: Option<&str>,
        domain: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<ArtifactRecord>> {
        let mut sql = format!("SELECT {COLS} FROM catalog_artifacts WHERE 1=1");
        let mut args = Vec::new();
        let filters = [("project", project), ("domain", domain), ("name", name)];
        and_eq(&mut sql, &mut args, &filters);
        sql.push_str(" ORDER BY seq DESC");
        self.artifacts(&sql, args)
    }

    fn delete_artifacts(
        &self,
        project: &str,
        domain: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<usize> {
        let mut sql =
            "DELETE FROM catalog_artifacts WHERE project=? AND domain=? AND name=?".to_string();
        let mut args = vec![text(project), text(domain), text(name)];
        and_eq(&mut sql, &mut args, &[("version", version)]);
        self.conn()
            .execute(&sql, rusqlite::params_from_iter(args))
            .map_err(backend)
    }

    fn artifacts_produced_by(
        &self,
        exec: &ExecKey,
        node_id: Option<&str>,
    ) -> Result<Vec<ArtifactRecord>> {
        let mut sql = format!(
            "SELECT {COLS} FROM catalog_artifacts WHERE src_project=? AND src_domain=? AND src_exec=?"
        );
        let mut args = vec![text(&exec.project), text(&exec.domain), text(&exec.name)];
        and_eq(&mut sql, &mut args, &[("src_node", node_id)]);
        sql.push_str(" ORDER BY seq");
        self.artifacts(&sql, args)
    }

    fn artifacts_used_by(
        &self,
        exec: &ExecKey,
        node_id: Option<&str>,
    ) -> Result<Vec<ArtifactRecord>> {
        let cols = COLS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!(
            "SELECT {cols} FROM catalog_uses u JOIN catalog_artifacts a ON a.artifact_id = u.artifact_id \
             WHERE u.project=? AND u.domain=? AND u.exec_name=?"
        );
        let mut args = vec![text(&exec.project), text(&exec.domain), text(&exec.name)];
        and_eq(&mut sql, &mut args, &[("u.node_id", node_id)]);
        sql.push_str(" ORDER BY u.at");
        self.artifacts(&sql, args)
    }

    fn uses_of(&self, artifact_id: &str) -> Result<Vec<ArtifactUse>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT artifact_id, project, domain, exec_name, node_id, at FROM catalog_uses \
                 WHERE artifact_id=? ORDER BY at",
            )
            .map_err(backend)?;
        stmt.query_map(params![artifact_id], |r| {
            Ok(ArtifactUse {
                artifact_id: r.get(0)?,
                exec: ExecKey {
                    project: r.get(1)?,
                    domain: r.get(2)?,
                    name: r.get(3)?,
                },
                node_id: r.get(4)?,
                at: r.get(5)?,
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)
    }

    fn create_dataset(&self, k: &CatalogKey, metadata: &[u8], now: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO catalog_datasets (project, domain, name, version, metadata, created_at) \
                 VALUES (?,?,?,?,?,?)",
                params![k.project, k.domain, k.name, k.version, metadata, now],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn get_dataset(&self, k: &CatalogKey) -> Result<Option<Vec<u8>>> {
        let found: Option<Vec<u8>> = self
            .conn()
            .prepare_cached(
                "SELECT metadata FROM catalog_datasets WHERE project=? AND domain=? AND name=? AND version=?",
            )
            .and_then(|mut s| {
                s.query_row(params![k.project, k.domain, k.name, k.version], |r| r.get(0))
                    .optional()
            })
            .map_err(backend)?;
        if found.is_some() {
            return Ok(found);
        }
        Ok(self.dataset_exists_by_artifact(k)?.then(Vec::new))
    }

    fn list_datasets(
        &self,
        project: Option<&str>,
        domain: Option<&str>,
    ) -> Result<Vec<CatalogKey>> {
        let mut sql = "SELECT DISTINCT project, domain, name, version FROM (\
             SELECT project, domain, name, version FROM catalog_datasets \
             UNION SELECT project, domain, name, version FROM catalog_artifacts) WHERE 1=1"
            .to_string();
        let mut args = Vec::new();
        and_eq(
            &mut sql,
            &mut args,
            &[("project", project), ("domain", domain)],
        );
        sql.push_str(" ORDER BY project, domain, name, version");
        let conn = self.read();
        let mut stmt = conn.prepare(&sql).map_err(backend)?;
        stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok(CatalogKey {
                project: r.get(0)?,
                domain: r.get(1)?,
                name: r.get(2)?,
                version: r.get(3)?,
                tag: String::new(),
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)
    }

    fn tag_artifact(&self, artifact_id: &str, tag: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE OR IGNORE catalog_artifacts SET tag=? WHERE artifact_id=? AND tag=?",
                params![tag, artifact_id, contrail_store::untagged(artifact_id)],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }
}

impl MemoStore for SqliteStore {
    fn get_artifact(&self, k: &CatalogKey) -> Result<Option<ArtifactRecord>> {
        self.read()
            .prepare_cached(&format!(
                "SELECT {COLS} FROM catalog_artifacts \
                 WHERE project=? AND domain=? AND name=? AND version=? AND tag=?"
            ))
            .and_then(|mut s| {
                s.query_row(params![k.project, k.domain, k.name, k.version, k.tag], row)
                    .optional()
            })
            .map_err(backend)
    }
    fn put_artifact(&self, a: &ArtifactRecord, overwrite: bool) -> Result<bool> {
        let k = &a.key;
        let verb = if overwrite {
            "INSERT OR REPLACE"
        } else {
            "INSERT OR IGNORE"
        };
        let n = self
            .conn()
            .execute(
                &format!(
                    "{verb} INTO catalog_artifacts ({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                ),
                params![
                    k.project,
                    k.domain,
                    k.name,
                    k.version,
                    k.tag,
                    a.artifact_id,
                    a.outputs_uri,
                    a.source.project,
                    a.source.domain,
                    a.source.name,
                    a.source_node,
                    a.source_attempt,
                    a.created_at
                ],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }
    fn record_use(&self, u: &ArtifactUse) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO catalog_uses \
                 (artifact_id, project, domain, exec_name, node_id, at) VALUES (?,?,?,?,?,?)",
                params![
                    u.artifact_id,
                    u.exec.project,
                    u.exec.domain,
                    u.exec.name,
                    u.node_id,
                    u.at
                ],
            )
            .map_err(backend)?;
        Ok(())
    }
    fn reserve(&self, k: &CatalogKey, owner: &str, now: i64, expires_at: i64) -> Result<String> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let args = params![k.project, k.domain, k.name, k.version, k.tag];
        let held: Option<(String, i64)> = tx
            .query_row(
                "SELECT owner, expires_at FROM catalog_reservations \
                 WHERE project=? AND domain=? AND name=? AND version=? AND tag=?",
                args,
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        let holder = match held {
            Some((o, exp)) if o != owner && exp > now => o,
            _ => {
                tx.execute(
                    "INSERT OR REPLACE INTO catalog_reservations \
                     (project, domain, name, version, tag, owner, expires_at) VALUES (?,?,?,?,?,?,?)",
                    params![k.project, k.domain, k.name, k.version, k.tag, owner, expires_at],
                )
                .map_err(backend)?;
                owner.to_string()
            }
        };
        tx.commit().map_err(backend)?;
        Ok(holder)
    }
    fn release(&self, k: &CatalogKey, owner: &str) -> Result<()> {
        self.conn()
            .execute(
                "DELETE FROM catalog_reservations \
                 WHERE project=? AND domain=? AND name=? AND version=? AND tag=? AND owner=?",
                params![k.project, k.domain, k.name, k.version, k.tag, owner],
            )
            .map_err(backend)?;
        Ok(())
    }
}

impl SqliteStore {
    fn dataset_exists_by_artifact(&self, k: &CatalogKey) -> Result<bool> {
        self.read()
            .prepare_cached(
                "SELECT 1 FROM catalog_artifacts WHERE project=? AND domain=? AND name=? AND version=? LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![k.project, k.domain, k.name, k.version], |_| Ok(()))
                    .optional()
            })
            .map(|r| r.is_some())
            .map_err(backend)
    }
}
