//! Registered entities, projects and named-entity metadata.

use crate::query;
use contrail_store::{
    Column, CreateOutcome, EntityKey, EntityKind, EntityRecord, Filter, NamedEntityMeta, Op,
    ProjectRecord, Store,
};
use std::sync::Arc;

fn rec(name: &str, version: &str, digest: u8, t: i64) -> EntityRecord {
    EntityRecord {
        kind: EntityKind::LaunchPlan,
        key: EntityKey {
            project: "p".into(),
            domain: "d".into(),
            name: name.into(),
            version: version.into(),
        },
        digest: vec![digest],
        spec: vec![1, 2, 3],
        closure: vec![],
        state: 0,
        created_at: t,
        updated_at: t,
    }
}

fn versions(records: &[EntityRecord]) -> Vec<&str> {
    records.iter().map(|r| r.key.version.as_str()).collect()
}

pub fn entities_are_immutable(s: Arc<dyn Store>) {
    assert_eq!(
        s.create_entity(&rec("a", "v1", 1, 1)).unwrap(),
        CreateOutcome::Created
    );
    match s.create_entity(&rec("a", "v1", 2, 2)).unwrap() {
        CreateOutcome::Exists(e) => assert_eq!(e.digest, vec![1]),
        other => panic!("{other:?}"),
    }
    let key = rec("a", "v1", 0, 0).key;
    let stored = s.get_entity(EntityKind::LaunchPlan, &key).unwrap().unwrap();
    assert_eq!((stored.digest, stored.spec), (vec![1], vec![1, 2, 3]));
    assert!(s.get_entity(EntityKind::Task, &key).unwrap().is_none());
}

pub fn concurrent_creates_create_once(s: Arc<dyn Store>) {
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || s.create_entity(&rec("a", "v1", i, i as i64)).unwrap())
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let created = outcomes
        .iter()
        .filter(|o| **o == CreateOutcome::Created)
        .count();
    assert_eq!(created, 1);
    let winner = s
        .get_entity(EntityKind::LaunchPlan, &rec("a", "v1", 0, 0).key)
        .unwrap()
        .unwrap();
    for o in outcomes {
        if let CreateOutcome::Exists(e) = o {
            assert_eq!(e.digest, winner.digest, "losers see the winner's record");
        }
    }
}

pub fn entity_lists_filter_sort_and_page(s: Arc<dyn Store>) {
    for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
        s.create_entity(&rec("a", v, 0, i as i64)).unwrap();
    }
    s.create_entity(&rec("b", "v1", 0, 10)).unwrap();
    s.create_entity(&rec("B", "v1", 0, 11)).unwrap();
    let all = s
        .list_entities(EntityKind::LaunchPlan, &query(100))
        .unwrap();
    assert_eq!(
        versions(&all),
        ["v1", "v1", "v3", "v2", "v1"],
        "newest first"
    );
    let mut by_version = query(100);
    by_version.filters.push(Filter {
        column: Column::Version,
        op: Op::Eq,
        values: vec!["v1".into()],
    });
    assert_eq!(
        s.list_entities(EntityKind::LaunchPlan, &by_version)
            .unwrap()
            .len(),
        3
    );
    let mut contains = query(100);
    contains.filters.push(Filter {
        column: Column::Version,
        op: Op::Contains,
        values: vec!["3".into()],
    });
    assert_eq!(
        versions(&s.list_entities(EntityKind::LaunchPlan, &contains).unwrap()),
        ["v3"]
    );
    let mut newer = query(100);
    newer.filters.push(Filter {
        column: Column::CreatedAt,
        op: Op::Gte,
        values: vec!["2".into()],
    });
    newer.filters.push(Filter {
        column: Column::Name,
        op: Op::ValueIn,
        values: vec!["a".into(), "b".into()],
    });
    assert_eq!(
        versions(&s.list_entities(EntityKind::LaunchPlan, &newer).unwrap()),
        ["v1", "v3"]
    );
    let mut page = query(2);
    page.name = Some("a".into());
    page.sort = Some((Column::Version, false));
    page.offset = 2;
    assert_eq!(
        versions(&s.list_entities(EntityKind::LaunchPlan, &page).unwrap()),
        ["v3"]
    );
    // Names order bytewise, as SQLite does (upper case first).
    assert_eq!(
        s.list_entity_names(EntityKind::LaunchPlan, &query(100))
            .unwrap(),
        ["B", "a", "b"]
    );
    let mut names = query(1);
    names.offset = 1;
    assert_eq!(
        s.list_entity_names(EntityKind::LaunchPlan, &names).unwrap(),
        ["a"]
    );
}

pub fn activating_a_launch_plan_deactivates_the_others(s: Arc<dyn Store>) {
    s.create_entity(&rec("a", "v1", 0, 1)).unwrap();
    s.create_entity(&rec("a", "v2", 0, 2)).unwrap();
    let key = |v: &str| rec("a", v, 0, 0).key;
    assert!(s.set_launch_plan_state(&key("v1"), true, 5).unwrap());
    assert!(s.set_launch_plan_state(&key("v2"), true, 6).unwrap());
    let active = s.get_active_launch_plan("p", "d", "a").unwrap().unwrap();
    assert_eq!(active.key.version, "v2");
    let v1 = s
        .get_entity(EntityKind::LaunchPlan, &key("v1"))
        .unwrap()
        .unwrap();
    assert_eq!(v1.state, 0);
    assert!(!s.set_launch_plan_state(&key("v9"), true, 7).unwrap());
    assert!(s.set_launch_plan_state(&key("v2"), false, 8).unwrap());
    assert!(s.get_active_launch_plan("p", "d", "a").unwrap().is_none());
}

pub fn schedules_follow_their_launch_plans_state_and_keep_the_latest_fire(s: Arc<dyn Store>) {
    s.create_entity(&rec("a", "v1", 0, 1)).unwrap();
    s.create_entity(&rec("a", "v2", 0, 2)).unwrap();
    s.create_entity(&rec("b", "v1", 0, 3)).unwrap();
    let key = |name: &str, v: &str| rec(name, v, 0, 0).key;
    for (name, v) in [("a", "v1"), ("a", "v2"), ("a", "v2")] {
        s.add_schedule(&key(name, v)).unwrap();
    }
    assert!(
        s.active_schedules().unwrap().is_empty(),
        "nothing is active yet"
    );
    // An active launch plan without a schedule mark is not scheduled.
    s.set_launch_plan_state(&key("b", "v1"), true, 4).unwrap();
    s.set_launch_plan_state(&key("a", "v1"), true, 5).unwrap();
    let active = s.active_schedules().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].key, key("a", "v1"));
    assert_eq!(
        (active[0].spec.as_slice(), active[0].activated_at),
        (&[1u8, 2, 3][..], 5)
    );
    assert_eq!(active[0].last_fire, None);
    s.record_fire(&key("a", "v1"), 60).unwrap();
    s.record_fire(&key("a", "v1"), 30).unwrap();
    assert_eq!(
        s.active_schedules().unwrap()[0].last_fire,
        Some(60),
        "never moves back"
    );
    // Activating another version deactivates this one's schedule.
    s.set_launch_plan_state(&key("a", "v2"), true, 7).unwrap();
    let active = s.active_schedules().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].key.clone(), active[0].last_fire),
        (key("a", "v2"), None)
    );
    s.set_launch_plan_state(&key("a", "v2"), false, 8).unwrap();
    assert!(s.active_schedules().unwrap().is_empty());
}

pub fn projects_and_named_entity_metadata(s: Arc<dyn Store>) {
    let p = ProjectRecord {
        id: "x".into(),
        name: "X".into(),
        description: "first".into(),
        labels: vec![1],
        state: 0,
    };
    assert!(s.create_project(&p).unwrap());
    assert!(!s.create_project(&p).unwrap(), "ids are unique");
    let renamed = ProjectRecord {
        description: "second".into(),
        ..p.clone()
    };
    assert!(s.update_project(&renamed).unwrap());
    assert!(
        !s.update_project(&ProjectRecord {
            id: "nope".into(),
            ..p.clone()
        })
        .unwrap()
    );
    assert_eq!(s.get_project("x").unwrap().unwrap(), renamed);
    assert_eq!(s.list_projects().unwrap(), vec![renamed]);

    let kind = EntityKind::Workflow;
    assert!(
        s.get_named_entity_meta(kind, "p", "d", "w")
            .unwrap()
            .is_none()
    );
    let meta = NamedEntityMeta {
        description: "hello".into(),
        state: 1,
    };
    s.put_named_entity_meta(kind, "p", "d", "w", &meta).unwrap();
    let again = NamedEntityMeta {
        description: "bye".into(),
        state: 0,
    };
    s.put_named_entity_meta(kind, "p", "d", "w", &again)
        .unwrap();
    assert_eq!(
        s.get_named_entity_meta(kind, "p", "d", "w").unwrap(),
        Some(again)
    );
}

pub fn matchable_attributes_are_kept_per_scope_and_resource(s: Arc<dyn Store>) {
    use contrail_store::AttributeScope;
    let scope = |p: &str, d: &str, w: &str| AttributeScope {
        project: p.into(),
        domain: d.into(),
        workflow: w.into(),
    };
    assert_eq!(s.get_attributes(&scope("p", "", ""), 0).unwrap(), None);
    s.put_attributes(&scope("p", "", ""), 0, &[1]).unwrap();
    s.put_attributes(&scope("p", "d", ""), 0, &[2]).unwrap();
    s.put_attributes(&scope("p", "d", "wf"), 0, &[3]).unwrap();
    s.put_attributes(&scope("p", "d", ""), 5, &[9]).unwrap();
    s.put_attributes(&scope("p", "d", ""), 0, &[4]).unwrap();
    assert_eq!(
        s.get_attributes(&scope("p", "d", ""), 0).unwrap(),
        Some(vec![4]),
        "replaced"
    );
    assert_eq!(
        s.list_attributes(0).unwrap(),
        vec![
            (scope("p", "", ""), vec![1]),
            (scope("p", "d", ""), vec![4]),
            (scope("p", "d", "wf"), vec![3])
        ]
    );
    assert_eq!(
        s.attributes_at(&scope("p", "d", "")).unwrap(),
        vec![(0, vec![4]), (5, vec![9])]
    );
    assert!(s.attributes_at(&scope("q", "", "")).unwrap().is_empty());
    assert!(s.delete_attributes(&scope("p", "d", "wf"), 0).unwrap());
    assert!(!s.delete_attributes(&scope("p", "d", "wf"), 0).unwrap());
    assert_eq!(s.list_attributes(0).unwrap().len(), 2);
    assert_eq!(
        s.list_attributes(5).unwrap(),
        vec![(scope("p", "d", ""), vec![9])]
    );
}
