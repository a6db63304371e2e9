//! Catalog artifacts, their uses (lineage), reservations, datasets and tags.

use crate::key;
use contrail_store::{ArtifactRecord, ArtifactUse, CatalogKey, Store, untagged};
use std::sync::Arc;

fn dataset(tag: &str) -> CatalogKey {
    CatalogKey {
        project: "p".into(),
        domain: "d".into(),
        name: "flyte_task-t".into(),
        version: "1-a-b".into(),
        tag: tag.into(),
    }
}

fn art(id: &str, tag: &str, exec: &str) -> ArtifactRecord {
    ArtifactRecord {
        key: dataset(tag),
        artifact_id: id.into(),
        outputs_uri: format!("s3://b/{id}"),
        source: key(exec),
        source_node: "n0".into(),
        source_attempt: 0,
        created_at: 1,
    }
}

pub fn first_artifact_writer_wins_and_uses_are_lineage(s: Arc<dyn Store>) {
    assert!(s.put_artifact(&art("a1", "t1", "e1"), false).unwrap());
    assert!(!s.put_artifact(&art("a2", "t1", "e2"), false).unwrap());
    assert_eq!(
        s.get_artifact(&dataset("t1")).unwrap().unwrap().artifact_id,
        "a1"
    );
    assert!(s.put_artifact(&art("a3", "t1", "e3"), true).unwrap());
    assert_eq!(
        s.get_artifact(&dataset("t1")).unwrap().unwrap().artifact_id,
        "a3"
    );
    assert!(s.get_artifact_by_id("a1").unwrap().is_none(), "overwritten");
    assert_eq!(
        s.get_artifact_by_id("a3").unwrap().unwrap().outputs_uri,
        "s3://b/a3"
    );
    let reader = key("e4");
    let usage = ArtifactUse {
        artifact_id: "a3".into(),
        exec: reader.clone(),
        node_id: "n1".into(),
        at: 5,
    };
    s.record_use(&usage).unwrap();
    s.record_use(&usage).unwrap();
    assert_eq!(
        s.uses_of("a3").unwrap(),
        vec![usage],
        "a use is recorded once"
    );
    assert_eq!(
        s.artifacts_used_by(&reader, Some("n1")).unwrap()[0].artifact_id,
        "a3"
    );
    assert!(s.artifacts_used_by(&reader, Some("n2")).unwrap().is_empty());
    assert_eq!(s.artifacts_produced_by(&key("e3"), None).unwrap().len(), 1);
    assert!(
        s.artifacts_produced_by(&key("e1"), None)
            .unwrap()
            .is_empty()
    );
    s.put_artifact(&art("a4", "t2", "e3"), false).unwrap();
    let newest_first: Vec<String> = s
        .list_artifacts(Some("p"), None, Some("flyte_task-t"))
        .unwrap()
        .into_iter()
        .map(|a| a.artifact_id)
        .collect();
    assert_eq!(newest_first, ["a4", "a3"]);
    assert!(s.list_artifacts(Some("q"), None, None).unwrap().is_empty());
    assert_eq!(
        s.delete_artifacts("p", "d", "flyte_task-t", Some("other"))
            .unwrap(),
        0
    );
    assert_eq!(
        s.delete_artifacts("p", "d", "flyte_task-t", None).unwrap(),
        2
    );
    assert!(s.get_artifact(&dataset("t1")).unwrap().is_none());
}

pub fn reservations_are_leases(s: Arc<dyn Store>) {
    let k = dataset("t");
    assert_eq!(s.reserve(&k, "a", 0, 30).unwrap(), "a");
    assert_eq!(s.reserve(&k, "b", 10, 40).unwrap(), "a");
    // The holder extends; after expiry another takes over.
    assert_eq!(s.reserve(&k, "a", 20, 50).unwrap(), "a");
    assert_eq!(s.reserve(&k, "b", 49, 79).unwrap(), "a");
    assert_eq!(s.reserve(&k, "b", 50, 80).unwrap(), "b");
    s.release(&k, "a").unwrap();
    assert_eq!(
        s.reserve(&k, "c", 51, 81).unwrap(),
        "b",
        "only the holder releases"
    );
    s.release(&k, "b").unwrap();
    assert_eq!(s.reserve(&k, "c", 52, 82).unwrap(), "c");
}

pub fn datasets_and_tags(s: Arc<dyn Store>) {
    let k = dataset("");
    assert!(s.create_dataset(&k, b"meta", 1).unwrap());
    assert!(!s.create_dataset(&k, b"other", 2).unwrap());
    assert_eq!(s.get_dataset(&k).unwrap(), Some(b"meta".to_vec()));
    // An artifact filed in a dataset nobody created implies it.
    let implied = CatalogKey {
        version: "2-a-b".into(),
        ..dataset("")
    };
    assert!(s.get_dataset(&implied).unwrap().is_none());
    let loose = ArtifactRecord {
        key: CatalogKey {
            tag: untagged("x1"),
            ..implied.clone()
        },
        ..art("x1", "", "e1")
    };
    s.put_artifact(&loose, false).unwrap();
    assert_eq!(s.get_dataset(&implied).unwrap(), Some(Vec::new()));
    let versions: Vec<String> = s
        .list_datasets(Some("p"), Some("d"))
        .unwrap()
        .into_iter()
        .map(|d| d.version)
        .collect();
    assert_eq!(versions, ["1-a-b", "2-a-b"]);
    assert!(s.tag_artifact("x1", "latest").unwrap());
    assert!(!s.tag_artifact("x1", "again").unwrap(), "tagged once");
    let tagged = CatalogKey {
        tag: "latest".into(),
        ..implied.clone()
    };
    assert_eq!(s.get_artifact(&tagged).unwrap().unwrap().artifact_id, "x1");
    let rival = ArtifactRecord {
        key: CatalogKey {
            tag: untagged("x2"),
            ..implied.clone()
        },
        ..art("x2", "", "e2")
    };
    s.put_artifact(&rival, false).unwrap();
    assert!(!s.tag_artifact("x2", "latest").unwrap(), "the tag is taken");
}
