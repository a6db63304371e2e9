//! The storage port. **API Boundary** for adapters (`store-sqlite`, later `store-postgres`).
//!
//! Records hold protobuf payloads as opaque, canonically encoded bytes: the store never
//! interprets flyteidl, it only keys, orders and filters them.
//! Architecture Invariant: registered entities are immutable; `create_entity` never
//! overwrites, it reports what is already there.

/// Storage failures. None of these is the client's fault; the API maps them to INTERNAL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backing database failed (retryable when it is a busy/locked condition).
    #[error("storage backend: {0}")]
    Backend(String),
    /// Stored data could not be read back (a bug or a corrupted file; not retryable).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

mod attributes;
mod catalog;
mod exec;
mod lease;
mod outbox;
mod ports;
mod schedule;
pub use attributes::*;
pub use catalog::*;
pub use exec::*;
pub use lease::*;
pub use outbox::*;
pub use ports::*;
pub use schedule::*;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The three registered, versioned, immutable entity kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    Task,
    Workflow,
    LaunchPlan,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Task => "task",
            EntityKind::Workflow => "workflow",
            EntityKind::LaunchPlan => "launch_plan",
        }
    }
}

/// project / domain / name / version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EntityKey {
    pub project: String,
    pub domain: String,
    pub name: String,
    pub version: String,
}

impl std::fmt::Display for EntityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}@{}",
            self.project, self.domain, self.name, self.version
        )
    }
}

/// One registered entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRecord {
    pub kind: EntityKind,
    pub key: EntityKey,
    /// SHA-256 of the canonical encoding that decides "identical" versus "different".
    pub digest: Vec<u8>,
    /// Canonical encoding of the spec as registered.
    pub spec: Vec<u8>,
    /// Canonical encoding of the derived closure (compiled task/workflow, launch-plan closure).
    pub closure: Vec<u8>,
    /// Launch-plan state (0 inactive, 1 active); 0 for other kinds.
    pub state: i32,
    /// Unix time in nanoseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// What `create_entity` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// An entity with this key exists already (identical or not: compare digests).
    Exists(Box<EntityRecord>),
}

/// A column that lists may filter and sort on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Project,
    Domain,
    Name,
    Version,
    State,
    CreatedAt,
    UpdatedAt,
    /// Execution/node/task phase.
    Phase,
    /// An execution's workflow name (execution lists only).
    Workflow,
    /// An execution's launch plan name (execution lists only).
    LaunchPlan,
}

impl Column {
    /// The column's name in an adapter's entity, project and execution-list tables.
    pub fn sql_name(self) -> &'static str {
        match self {
            Column::Project => "project",
            Column::Domain => "domain",
            Column::Name => "name",
            Column::Version => "version",
            Column::State => "state",
            Column::CreatedAt => "created_at",
            Column::UpdatedAt => "updated_at",
            Column::Phase => "phase",
            Column::Workflow => "workflow",
            Column::LaunchPlan => "launch_plan",
        }
    }

    /// Its name in the executions table (versions are names there; state is the phase).
    pub fn execution_sql_name(self) -> &'static str {
        match self {
            Column::Version => "name",
            Column::State => "phase",
            other => other.sql_name(),
        }
    }

    /// Its name in the node and task record tables (names and versions are node ids).
    pub fn node_sql_name(self) -> &'static str {
        match self {
            Column::Name | Column::Version => "node_id",
            Column::State => "phase",
            other => other.sql_name(),
        }
    }

    /// Whether filter values compare as integers.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Column::State | Column::CreatedAt | Column::UpdatedAt | Column::Phase
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
    ValueIn,
}

/// One filter term, e.g. `eq(version,v1)`. Values are compared as text, or as integers
/// for `State`, `CreatedAt` and `UpdatedAt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub column: Column,
    pub op: Op,
    pub values: Vec<String>,
}

/// A page request over one project/domain (and optionally one name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub project: String,
    pub domain: String,
    pub name: Option<String>,
    pub filters: Vec<Filter>,
    /// Column and `descending`; default: created_at descending.
    pub sort: Option<(Column, bool)>,
    pub limit: u32,
    pub offset: u64,
}

/// A project and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProjectRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Canonical encoding of `admin.Labels`.
    pub labels: Vec<u8>,
    /// `admin.Project.ProjectState`.
    pub state: i32,
}

/// User-editable metadata of a named entity (all versions of one name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamedEntityMeta {
    pub description: String,
    pub state: i32,
}

/// The storage port. Implementations must be safe under concurrent callers.
pub trait Store:
    ExecutionStore
    + CatalogStore
    + LeaseStore
    + RegistryStore
    + ControllerStore
    + ScheduleStore
    + OutboxStore
    + AttributeStore
    + Send
    + Sync
    + 'static
{
    /// Inserts the entity unless its key exists; never overwrites.
    fn create_entity(&self, rec: &EntityRecord) -> Result<CreateOutcome>;
    /// Up to `limit` records matching the query, in the requested order.
    fn list_entities(&self, kind: EntityKind, q: &ListQuery) -> Result<Vec<EntityRecord>>;
    /// Distinct names of `kind` in the project/domain, ordered by name.
    fn list_entity_names(&self, kind: EntityKind, q: &ListQuery) -> Result<Vec<String>>;
    /// Sets a launch plan's state; activating it deactivates every other version of its name.
    /// Returns false when no such launch plan exists.
    fn set_launch_plan_state(&self, key: &EntityKey, active: bool, now: i64) -> Result<bool>;
    fn get_active_launch_plan(
        &self,
        project: &str,
        domain: &str,
        name: &str,
    ) -> Result<Option<EntityRecord>>;

    /// Creates a project; false if the id exists.
    fn create_project(&self, p: &ProjectRecord) -> Result<bool>;
    /// Updates a project; false if it does not exist.
    fn update_project(&self, p: &ProjectRecord) -> Result<bool>;
    fn get_project(&self, id: &str) -> Result<Option<ProjectRecord>>;
    fn list_projects(&self) -> Result<Vec<ProjectRecord>>;

    fn get_named_entity_meta(
        &self,
        kind: EntityKind,
        project: &str,
        domain: &str,
        name: &str,
    ) -> Result<Option<NamedEntityMeta>>;
    fn put_named_entity_meta(
        &self,
        kind: EntityKind,
        project: &str,
        domain: &str,
        name: &str,
        meta: &NamedEntityMeta,
    ) -> Result<()>;
}
