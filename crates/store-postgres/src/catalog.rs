//! The catalog half of the PostgreSQL adapter.

use crate::{PgStore, Sql, backend};
use contrail_store::{
    ArtifactRecord, ArtifactUse, CatalogKey, CatalogStore, ExecKey, MemoStore, Result,
};
use tokio_postgres::Row;

const COLS: &str = "project, domain, name, version, tag, artifact_id, outputs_uri, src_project, \
     src_domain, src_exec, src_node, src_attempt, created_at";

fn row(r: &Row) -> ArtifactRecord {
    ArtifactRecord {
        key: CatalogKey {
            project: r.get(0),
            domain: r.get(1),
            name: r.get(2),
            version: r.get(3),
            tag: r.get(4),
        },
        artifact_id: r.get(5),
        outputs_uri: r.get(6),
        source: ExecKey {
            project: r.get(7),
            domain: r.get(8),
            name: r.get(9),
        },
        source_node: r.get(10),
        source_attempt: r.get::<_, i64>(11) as u32,
        created_at: r.get(12),
    }
}

/// Appends ` AND <col>=$n` for every filter that is set.
fn and_eq(sql: &mut Sql, filters: &[(&str, Option<&str>)]) {
    for (col, v) in filters {
        if let Some(v) = v {
            sql.and_eq(col, v);
        }
    }
}

/// The unique-violation SQLSTATE.
fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

impl PgStore {
    fn artifacts(&self, sql: &Sql) -> Result<Vec<ArtifactRecord>> {
        Ok(self
            .rows(&sql.text, &sql.params())?
            .iter()
            .map(row)
            .collect())
    }

    fn dataset_exists_by_artifact(&self, k: &CatalogKey) -> Result<bool> {
        Ok(self
            .opt_row(
                "SELECT 1 FROM catalog_artifacts \
                 WHERE project=$1 AND domain=$2 AND name=$3 AND version=$4 LIMIT 1",
                &[&k.project, &k.domain, &k.name, &k.version],
            )?
            .is_some())
    }
}

impl CatalogStore for PgStore {
    fn get_artifact_by_id(&self, id: &str) -> Result<Option<ArtifactRecord>> {
        Ok(self
            .opt_row(
                &format!("SELECT {COLS} FROM catalog_artifacts WHERE artifact_id=$1"),
                &[&id],
            )?
            .as_ref()
            .map(row))
    }

    fn list_artifacts(
        &self,
        project: Option<&str>,
        domain: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<ArtifactRecord>> {
        let mut sql = Sql::new(format!("SELECT {COLS} FROM catalog_artifacts WHERE TRUE"));
        and_eq(
            &mut sql,
            &[("project", project), ("domain", domain), ("name", name)],
        );
        sql.push(" ORDER BY seq DESC");
        self.artifacts(&sql)
    }

    fn delete_artifacts(
        &self,
        project: &str,
        domain: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<usize> {
        let mut sql = Sql::new("DELETE FROM catalog_artifacts WHERE TRUE");
        and_eq(
            &mut sql,
            &[
                ("project", Some(project)),
                ("domain", Some(domain)),
                ("name", Some(name)),
                ("version", version),
            ],
        );
        Ok(self.exec(&sql.text, &sql.params())? as usize)
    }

    fn artifacts_produced_by(
        &self,
        exec: &ExecKey,
        node_id: Option<&str>,
    ) -> Result<Vec<ArtifactRecord>> {
        let mut sql = Sql::new(format!("SELECT {COLS} FROM catalog_artifacts WHERE TRUE"));
        and_eq(
            &mut sql,
            &[
                ("src_project", Some(&exec.project)),
                ("src_domain", Some(&exec.domain)),
                ("src_exec", Some(&exec.name)),
                ("src_node", node_id),
            ],
        );
        sql.push(" ORDER BY seq");
        self.artifacts(&sql)
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
        let mut sql = Sql::new(format!(
            "SELECT {cols} FROM catalog_uses u \
             JOIN catalog_artifacts a ON a.artifact_id = u.artifact_id WHERE TRUE"
        ));
        and_eq(
            &mut sql,
            &[
                ("u.project", Some(&exec.project)),
                ("u.domain", Some(&exec.domain)),
                ("u.exec_name", Some(&exec.name)),
                ("u.node_id", node_id),
            ],
        );
        sql.push(" ORDER BY u.at");
        self.artifacts(&sql)
    }

    fn uses_of(&self, artifact_id: &str) -> Result<Vec<ArtifactUse>> {
        Ok(self
            .rows(
                "SELECT artifact_id, project, domain, exec_name, node_id, at FROM catalog_uses \
                 WHERE artifact_id=$1 ORDER BY at",
                &[&artifact_id],
            )?
            .iter()
            .map(|r| ArtifactUse {
                artifact_id: r.get(0),
                exec: ExecKey {
                    project: r.get(1),
                    domain: r.get(2),
                    name: r.get(3),
                },
                node_id: r.get(4),
                at: r.get(5),
            })
            .collect())
    }

    fn create_dataset(&self, k: &CatalogKey, metadata: &[u8], now: i64) -> Result<bool> {
        Ok(self.exec(
            "INSERT INTO catalog_datasets (project, domain, name, version, metadata, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING",
            &[&k.project, &k.domain, &k.name, &k.version, &metadata, &now],
        )? > 0)
    }

    fn get_dataset(&self, k: &CatalogKey) -> Result<Option<Vec<u8>>> {
        let found = self.opt_row(
            "SELECT metadata FROM catalog_datasets \
             WHERE project=$1 AND domain=$2 AND name=$3 AND version=$4",
            &[&k.project, &k.domain, &k.name, &k.version],
        )?;
        if let Some(r) = found {
            return Ok(Some(r.get(0)));
        }
        Ok(self.dataset_exists_by_artifact(k)?.then(Vec::new))
    }

    fn list_datasets(
        &self,
        project: Option<&str>,
        domain: Option<&str>,
    ) -> Result<Vec<CatalogKey>> {
        let mut sql = Sql::new(
            "SELECT DISTINCT project, domain, name, version FROM (\
             SELECT project, domain, name, version FROM catalog_datasets \
             UNION SELECT project, domain, name, version FROM catalog_artifacts) d WHERE TRUE",
        );
        and_eq(&mut sql, &[("project", project), ("domain", domain)]);
        sql.push(" ORDER BY project, domain, name, version");
        Ok(self
            .rows(&sql.text, &sql.params())?
            .iter()
            .map(|r| CatalogKey {
                project: r.get(0),
                domain: r.get(1),
                name: r.get(2),
                version: r.get(3),
                tag: String::new(),
            })
            .collect())
    }

    fn tag_artifact(&self, artifact_id: &str, tag: &str) -> Result<bool> {
        let untagged = contrail_store::untagged(artifact_id);
        self.run(async {
            let conn = self.pool.get().await.map_err(backend)?;
            match conn
                .execute(
                    "UPDATE catalog_artifacts SET tag=$1 WHERE artifact_id=$2 AND tag=$3",
                    &[&tag, &artifact_id, &untagged],
                )
                .await
            {
                Ok(n) => Ok(n > 0),
                // The tag is taken: not tagged, as SQLite's UPDATE OR IGNORE answers.
                Err(e) if is_unique_violation(&e) => Ok(false),
                Err(e) => Err(backend(e)),
            }
        })
    }
}

impl MemoStore for PgStore {
    fn get_artifact(&self, k: &CatalogKey) -> Result<Option<ArtifactRecord>> {
        Ok(self
            .opt_row(
                &format!(
                    "SELECT {COLS} FROM catalog_artifacts \
                     WHERE project=$1 AND domain=$2 AND name=$3 AND version=$4 AND tag=$5"
                ),
                &[&k.project, &k.domain, &k.name, &k.version, &k.tag],
            )?
            .as_ref()
            .map(row))
    }
    fn put_artifact(&self, a: &ArtifactRecord, overwrite: bool) -> Result<bool> {
        let k = &a.key;
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
            &k.project,
            &k.domain,
            &k.name,
            &k.version,
            &k.tag,
            &a.artifact_id,
            &a.outputs_uri,
            &a.source.project,
            &a.source.domain,
            &a.source.name,
            &a.source_node,
            &(a.source_attempt as i64),
            &a.created_at,
        ];
        let values = "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)";
        if !overwrite {
            return Ok(self.exec(
                &format!(
                    "INSERT INTO catalog_artifacts ({COLS}) VALUES {values} ON CONFLICT DO NOTHING"
                ),
                &args,
            )? > 0);
        }
        // Overwriting replaces whatever holds the key or the id, and files the record as
        // the newest (a fresh seq), as SQLite's INSERT OR REPLACE does.
        self.run(async {
            let mut conn = self.pool.get().await.map_err(backend)?;
            let tx = conn.transaction().await.map_err(backend)?;
            tx.execute(
                "DELETE FROM catalog_artifacts WHERE (project=$1 AND domain=$2 AND name=$3 \
                 AND version=$4 AND tag=$5) OR artifact_id=$6",
                &args[..6],
            )
            .await
            .map_err(backend)?;
            let n = tx
                .execute(
                    &format!("INSERT INTO catalog_artifacts ({COLS}) VALUES {values}"),
                    &args,
                )
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(n > 0)
        })
    }
    fn record_use(&self, u: &ArtifactUse) -> Result<()> {
        self.exec(
            "INSERT INTO catalog_uses (artifact_id, project, domain, exec_name, node_id, at) \
             VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING",
            &[
                &u.artifact_id,
                &u.exec.project,
                &u.exec.domain,
                &u.exec.name,
                &u.node_id,
                &u.at,
            ],
        )?;
        Ok(())
    }
    fn reserve(&self, k: &CatalogKey, owner: &str, now: i64, expires_at: i64) -> Result<String> {
        // Take the row when it is free, expired or ours; otherwise report its holder.
        let taken = self.opt_row(
            "INSERT INTO catalog_reservations (project, domain, name, version, tag, owner, expires_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7) \
             ON CONFLICT (project, domain, name, version, tag) DO UPDATE \
             SET owner=excluded.owner, expires_at=excluded.expires_at \
             WHERE catalog_reservations.owner=excluded.owner OR catalog_reservations.expires_at <= $8 \
             RETURNING owner",
            &[
                &k.project, &k.domain, &k.name, &k.version, &k.tag, &owner, &expires_at, &now,
            ],
        )?;
        if let Some(r) = taken {
            return Ok(r.get(0));
        }
        let holder = self.opt_row(
            "SELECT owner FROM catalog_reservations \
             WHERE project=$1 AND domain=$2 AND name=$3 AND version=$4 AND tag=$5",
            &[&k.project, &k.domain, &k.name, &k.version, &k.tag],
        )?;
        // Released between the two statements: free now, so try once more.
        match holder {
            Some(r) => Ok(r.get(0)),
            None => self.reserve(k, owner, now, expires_at),
        }
    }
    fn release(&self, k: &CatalogKey, owner: &str) -> Result<()> {
        self.exec(
            "DELETE FROM catalog_reservations \
             WHERE project=$1 AND domain=$2 AND name=$3 AND version=$4 AND tag=$5 AND owner=$6",
            &[&k.project, &k.domain, &k.name, &k.version, &k.tag, &owner],
        )?;
        Ok(())
    }
}
