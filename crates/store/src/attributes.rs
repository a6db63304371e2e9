//! Table `matchable_attributes`: settings per project, project and domain, or workflow,
//! one row per resource type (`admin.MatchableResource`), holding an encoded
//! `admin.MatchingAttributes`. Coarser scopes leave the finer keys empty.

use crate::Result;

/// Where attributes apply: a project (`domain` and `workflow` empty), a project and
/// domain (`workflow` empty), or one workflow of a project and domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AttributeScope {
    pub project: String,
    pub domain: String,
    pub workflow: String,
}

pub trait AttributeStore: Send + Sync + 'static {
    /// Sets (or replaces) the attributes of one resource type at one scope.
    fn put_attributes(
        &self,
        scope: &AttributeScope,
        resource: i32,
        attributes: &[u8],
    ) -> Result<()>;
    fn get_attributes(&self, scope: &AttributeScope, resource: i32) -> Result<Option<Vec<u8>>>;
    /// False when there was nothing to delete.
    fn delete_attributes(&self, scope: &AttributeScope, resource: i32) -> Result<bool>;
    /// Every resource type's attributes at one scope (resource type, attributes).
    fn attributes_at(&self, scope: &AttributeScope) -> Result<Vec<(i32, Vec<u8>)>>;
    /// Every scope's attributes of one resource type, ordered by scope.
    fn list_attributes(&self, resource: i32) -> Result<Vec<(AttributeScope, Vec<u8>)>>;
}
