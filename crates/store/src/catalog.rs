//! The catalog: memoized task outputs (artifacts) filed by cache key, who consumed them,
//! and the reservations that serialize identical runs.

use crate::{ExecKey, MemoStore, Result};

/// A dataset (`flyte_task-<name>` at `<cache_version>-<in>-<out>`) and one tag in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CatalogKey {
    pub project: String,
    pub domain: String,
    pub name: String,
    pub version: String,
    pub tag: String,
}

/// One memoized result: where its outputs are and which attempt produced them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArtifactRecord {
    pub key: CatalogKey,
    pub artifact_id: String,
    /// Blob URI of the outputs `LiteralMap`.
    pub outputs_uri: String,
    pub source: ExecKey,
    pub source_node: String,
    pub source_attempt: u32,
    pub created_at: i64,
}

/// An execution's node that reused an artifact (a cache hit).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArtifactUse {
    pub artifact_id: String,
    pub exec: ExecKey,
    pub node_id: String,
    pub at: i64,
}

pub trait CatalogStore: MemoStore {
    fn get_artifact_by_id(&self, artifact_id: &str) -> Result<Option<ArtifactRecord>>;
    /// Artifacts, newest first, optionally of one project/domain and dataset name.
    fn list_artifacts(
        &self,
        project: Option<&str>,
        domain: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<ArtifactRecord>>;
    /// Deletes the artifacts of a dataset name (one version, or all); returns how many.
    fn delete_artifacts(
        &self,
        project: &str,
        domain: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<usize>;
    /// Artifacts an execution produced (in one node, or in all).
    fn artifacts_produced_by(
        &self,
        exec: &ExecKey,
        node_id: Option<&str>,
    ) -> Result<Vec<ArtifactRecord>>;
    /// Artifacts an execution reused (in one node, or in all).
    fn artifacts_used_by(
        &self,
        exec: &ExecKey,
        node_id: Option<&str>,
    ) -> Result<Vec<ArtifactRecord>>;
    fn uses_of(&self, artifact_id: &str) -> Result<Vec<ArtifactUse>>;

    /// Creates a dataset (its key's `tag` is ignored); false if it exists.
    fn create_dataset(&self, key: &CatalogKey, metadata: &[u8], now: i64) -> Result<bool>;
    /// A dataset's metadata: created explicitly, or implied by an artifact filed in it.
    fn get_dataset(&self, key: &CatalogKey) -> Result<Option<Vec<u8>>>;
    /// Every dataset (created or implied), optionally of one project/domain.
    fn list_datasets(&self, project: Option<&str>, domain: Option<&str>)
    -> Result<Vec<CatalogKey>>;
    /// Files an untagged artifact (created through the DataCatalog API) under `tag`;
    /// false when the tag is taken or the artifact is tagged already.
    fn tag_artifact(&self, artifact_id: &str, tag: &str) -> Result<bool>;
}

/// The tag an artifact created without one carries until it is tagged.
pub fn untagged(artifact_id: &str) -> String {
    format!("#{artifact_id}")
}
