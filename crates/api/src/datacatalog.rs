//! `datacatalog.DataCatalog`, for tools that speak it, over the same catalog the
//! controller memoizes into: datasets, artifacts (their data stored as one `LiteralMap`
//! blob), tags and reservation leases. Artifact metadata carries the producing execution
//! the way Flyte's propeller writes it (`exec-project`, `exec-domain`, `execution-name`,
//! `exec-node`, `exec-attempt`).

use crate::admin::run;
use crate::error::{ApiError, ApiResult, invalid};
use crate::{Api, validate};
use contrail_idl::core as c;
use contrail_idl::datacatalog::{self as d, data_catalog_server::DataCatalog};
use contrail_store::{ArtifactRecord, CatalogKey, ExecKey, untagged};
use prost::Message;
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

/// How long a reservation lives past its heartbeat interval (Flyte: 3 intervals, capped).
const GRACE: i64 = 3;
const MAX_HEARTBEAT_SECS: i64 = 10;

fn dataset_key(field: &str, id: Option<&d::DatasetId>) -> ApiResult<CatalogKey> {
    let id = id.ok_or_else(|| invalid(format!("{field} is missing")))?;
    for (f, v) in [
        ("project", &id.project),
        ("domain", &id.domain),
        ("name", &id.name),
        ("version", &id.version),
    ] {
        validate::text(&format!("{field}.{f}"), v)?;
    }
    Ok(CatalogKey {
        project: id.project.clone(),
        domain: id.domain.clone(),
        name: id.name.clone(),
        version: id.version.clone(),
        tag: String::new(),
    })
}

fn dataset_id(k: &CatalogKey) -> d::DatasetId {
    d::DatasetId {
        project: k.project.clone(),
        domain: k.domain.clone(),
        name: k.name.clone(),
        version: k.version.clone(),
        ..Default::default()
    }
}

impl Api {
    fn artifact_of(&self, a: &ArtifactRecord) -> ApiResult<d::Artifact> {
        let data = self
            .blob
            .get(self.blob.key_of(&a.outputs_uri)?)
            .map(|b| c::LiteralMap::decode(b.as_slice()))
            .map_err(ApiError::from)??;
        let tagged = !a.key.tag.starts_with('#');
        Ok(d::Artifact {
            id: a.artifact_id.clone(),
            dataset: Some(dataset_id(&a.key)),
            data: data
                .literals
                .into_iter()
                .map(|(name, value)| d::ArtifactData {
                    name,
                    value: Some(value),
                })
                .collect(),
            metadata: Some(d::Metadata {
                key_map: [
                    ("exec-project", a.source.project.clone()),
                    ("exec-domain", a.source.domain.clone()),
                    ("execution-name", a.source.name.clone()),
                    ("exec-node", a.source_node.clone()),
                    ("exec-attempt", a.source_attempt.to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            }),
            tags: if tagged {
                vec![d::Tag {
                    name: a.key.tag.clone(),
                    artifact_id: a.artifact_id.clone(),
                    dataset: Some(dataset_id(&a.key)),
                }]
            } else {
                vec![]
            },
            created_at: Some(crate::admin_ts(a.created_at)),
            ..Default::default()
        })
    }

    fn find_artifact(
        &self,
        dataset: &CatalogKey,
        by_tag: Option<&str>,
        by_id: Option<&str>,
    ) -> ApiResult<ArtifactRecord> {
        let found = match (by_tag, by_id) {
            (Some(t), _) => self.store.get_artifact(&CatalogKey {
                tag: t.to_string(),
                ..dataset.clone()
            })?,
            (None, Some(id)) => self.store.get_artifact_by_id(id)?.filter(|a| {
                CatalogKey {
                    tag: String::new(),
                    ..a.key.clone()
                } == *dataset
            }),
            (None, None) => return Err(invalid("query_handle: give a tag_name or an artifact_id")),
        };
        found.ok_or_else(|| ApiError::NotFound("no such artifact".into()))
    }

    fn write_data(
        &self,
        key: &CatalogKey,
        id: &str,
        data: &[d::ArtifactData],
    ) -> ApiResult<String> {
        let m = c::LiteralMap {
            literals: data
                .iter()
                .map(|x| (x.name.clone(), x.value.clone().unwrap_or_default()))
                .collect(),
        };
        let blob_key = contrail_blob::layout::catalog_outputs(
            &key.project,
            &key.domain,
            &key.name,
            &key.version,
            id,
        );
        self.blob.put(&blob_key, &m.encode_to_vec())?;
        Ok(self.blob.uri(&blob_key))
    }
}

#[tonic::async_trait]
impl DataCatalog for Api {
    async fn create_dataset(
        &self,
        r: Request<d::CreateDatasetRequest>,
    ) -> R<d::CreateDatasetResponse> {
        run(self, move |api| {
            let ds = r
                .into_inner()
                .dataset
                .ok_or_else(|| invalid("dataset is missing"))?;
            let key = dataset_key("dataset.id", ds.id.as_ref())?;
            let meta = ds.metadata.unwrap_or_default().encode_to_vec();
            if !api.store.create_dataset(&key, &meta, api.now_nanos())? {
                return Err(ApiError::AlreadyExists("dataset already exists".into()));
            }
            Ok(d::CreateDatasetResponse {})
        })
        .await
    }

    async fn get_dataset(&self, r: Request<d::GetDatasetRequest>) -> R<d::GetDatasetResponse> {
        run(self, move |api| {
            let key = dataset_key("dataset", r.get_ref().dataset.as_ref())?;
            let meta = api
                .store
                .get_dataset(&key)?
                .ok_or_else(|| ApiError::NotFound("dataset does not exist".into()))?;
            Ok(d::GetDatasetResponse {
                dataset: Some(d::Dataset {
                    id: Some(dataset_id(&key)),
                    metadata: Some(d::Metadata::decode(meta.as_slice())?),
                    partition_keys: vec![],
                }),
            })
        })
        .await
    }

    async fn create_artifact(
        &self,
        r: Request<d::CreateArtifactRequest>,
    ) -> R<d::CreateArtifactResponse> {
        run(self, move |api| {
            let a = r
                .into_inner()
                .artifact
                .ok_or_else(|| invalid("artifact is missing"))?;
            validate::text("artifact.id", &a.id)?;
            let key = dataset_key("artifact.dataset", a.dataset.as_ref())?;
            if api.store.get_dataset(&key)?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "artifact.dataset: dataset {}/{}/{}/{} does not exist; create it first",
                    key.project, key.domain, key.name, key.version
                )));
            }
            if api.store.get_artifact_by_id(&a.id)?.is_some() {
                return Err(ApiError::AlreadyExists(format!("artifact {} exists", a.id)));
            }
            let meta = a.metadata.clone().unwrap_or_default().key_map;
            let get = |k: &str| meta.get(k).cloned().unwrap_or_default();
            let uri = api.write_data(&key, &a.id, &a.data)?;
            let rec = ArtifactRecord {
                key: CatalogKey {
                    tag: untagged(&a.id),
                    ..key.clone()
                },
                artifact_id: a.id.clone(),
                outputs_uri: uri,
                source: ExecKey {
                    project: get("exec-project"),
                    domain: get("exec-domain"),
                    name: get("execution-name"),
                },
                source_node: get("exec-node"),
                source_attempt: get("exec-attempt").parse().unwrap_or(0),
                created_at: api.now_nanos(),
            };
            api.store.put_artifact(&rec, false)?;
            for t in &a.tags {
                api.store.tag_artifact(&a.id, &t.name)?;
            }
            Ok(d::CreateArtifactResponse {})
        })
        .await
    }

    async fn get_artifact(&self, r: Request<d::GetArtifactRequest>) -> R<d::GetArtifactResponse> {
        run(self, move |api| {
            let r = r.into_inner();
            let key = dataset_key("dataset", r.dataset.as_ref())?;
            use d::get_artifact_request::QueryHandle as Q;
            let a = match &r.query_handle {
                Some(Q::TagName(t)) => api.find_artifact(&key, Some(t), None)?,
                Some(Q::ArtifactId(id)) => api.find_artifact(&key, None, Some(id))?,
                None => api.find_artifact(&key, None, None)?,
            };
            Ok(d::GetArtifactResponse {
                artifact: Some(api.artifact_of(&a)?),
            })
        })
        .await
    }

    async fn add_tag(&self, r: Request<d::AddTagRequest>) -> R<d::AddTagResponse> {
        run(self, move |api| {
            let t = r
                .into_inner()
                .tag
                .ok_or_else(|| invalid("tag is missing"))?;
            validate::text("tag.name", &t.name)?;
            validate::text("tag.artifact_id", &t.artifact_id)?;
            dataset_key("tag.dataset", t.dataset.as_ref())?;
            if api.store.get_artifact_by_id(&t.artifact_id)?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "artifact {} does not exist",
                    t.artifact_id
                )));
            }
            if !api.store.tag_artifact(&t.artifact_id, &t.name)? {
                return Err(ApiError::AlreadyExists(format!("tag {} is taken", t.name)));
            }
            Ok(d::AddTagResponse {})
        })
        .await
    }

    async fn list_artifacts(
        &self,
        r: Request<d::ListArtifactsRequest>,
    ) -> R<d::ListArtifactsResponse> {
        run(self, move |api| {
            let key = dataset_key("dataset", r.get_ref().dataset.as_ref())?;
            let rows =
                api.store
                    .list_artifacts(Some(&key.project), Some(&key.domain), Some(&key.name))?;
            Ok(d::ListArtifactsResponse {
                artifacts: rows
                    .iter()
                    .filter(|a| a.key.version == key.version)
                    .map(|a| api.artifact_of(a))
                    .collect::<ApiResult<_>>()?,
                next_token: String::new(),
            })
        })
        .await
    }

    async fn list_datasets(
        &self,
        _r: Request<d::ListDatasetsRequest>,
    ) -> R<d::ListDatasetsResponse> {
        run(self, move |api| {
            Ok(d::ListDatasetsResponse {
                datasets: api
                    .store
                    .list_datasets(None, None)?
                    .iter()
                    .map(|k| d::Dataset {
                        id: Some(dataset_id(k)),
                        ..Default::default()
                    })
                    .collect(),
                next_token: String::new(),
            })
        })
        .await
    }

    async fn update_artifact(
        &self,
        r: Request<d::UpdateArtifactRequest>,
    ) -> R<d::UpdateArtifactResponse> {
        run(self, move |api| {
            let r = r.into_inner();
            let key = dataset_key("dataset", r.dataset.as_ref())?;
            use d::update_artifact_request::QueryHandle as Q;
            let a = match &r.query_handle {
                Some(Q::TagName(t)) => api.find_artifact(&key, Some(t), None)?,
                Some(Q::ArtifactId(id)) => api.find_artifact(&key, None, Some(id))?,
                None => api.find_artifact(&key, None, None)?,
            };
            api.write_data(&key, &a.artifact_id, &r.data)?;
            Ok(d::UpdateArtifactResponse {
                artifact_id: a.artifact_id,
            })
        })
        .await
    }

    async fn get_or_extend_reservation(
        &self,
        r: Request<d::GetOrExtendReservationRequest>,
    ) -> R<d::GetOrExtendReservationResponse> {
        run(self, move |api| {
            let r = r.into_inner();
            let rid = r
                .reservation_id
                .clone()
                .ok_or_else(|| invalid("reservation_id is missing"))?;
            validate::text("reservation_id.tag_name", &rid.tag_name)?;
            validate::text("owner_id", &r.owner_id)?;
            let key = CatalogKey {
                tag: rid.tag_name.clone(),
                ..dataset_key("reservation_id.dataset_id", rid.dataset_id.as_ref())?
            };
            let beat = r.heartbeat_interval.map_or(MAX_HEARTBEAT_SECS, |h| {
                h.seconds.clamp(1, MAX_HEARTBEAT_SECS)
            });
            let now = api.now_nanos();
            let expires = now + GRACE * beat * 1_000_000_000;
            let holder = api.store.reserve(&key, &r.owner_id, now, expires)?;
            Ok(d::GetOrExtendReservationResponse {
                reservation: Some(d::Reservation {
                    reservation_id: Some(rid),
                    owner_id: holder,
                    heartbeat_interval: Some(prost_types::Duration {
                        seconds: beat,
                        nanos: 0,
                    }),
                    expires_at: Some(crate::admin_ts(expires)),
                    metadata: None,
                }),
            })
        })
        .await
    }

    async fn release_reservation(
        &self,
        r: Request<d::ReleaseReservationRequest>,
    ) -> R<d::ReleaseReservationResponse> {
        run(self, move |api| {
            let r = r.into_inner();
            let rid = r
                .reservation_id
                .ok_or_else(|| invalid("reservation_id is missing"))?;
            validate::text("owner_id", &r.owner_id)?;
            let key = CatalogKey {
                tag: rid.tag_name.clone(),
                ..dataset_key("reservation_id.dataset_id", rid.dataset_id.as_ref())?
            };
            api.store.release(&key, &r.owner_id)?;
            Ok(d::ReleaseReservationResponse {})
        })
        .await
    }
}
