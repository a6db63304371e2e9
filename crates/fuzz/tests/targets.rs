//! Fuzz targets, seeded from the requests real flytekit sent
//! (`shared/fixtures/flytekit-wire/dumps`) and mutated by proptest: bit flips, cuts,
//! inserted bytes, splices of other requests. Each target asserts that nothing panics and
//! that answers keep their contract (no UNKNOWN, no INTERNAL; accepted keys stay inside
//! the store). `CONTRAIL_FUZZ_CASES` sets the iterations per target.

use contrail_compiler::{Key, LaunchPlanInterface, References, compile_workflow};
use contrail_idl::admin::{LaunchPlanCreateRequest, TaskCreateRequest, WorkflowCreateRequest};
use contrail_idl::core;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

fn cases(default: u32) -> u32 {
    std::env::var("CONTRAIL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(256),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Prints the iterations a target ran (collected by `scripts/fuzz.sh`).
fn report(target: &str, n: u32) {
    println!("fuzz target {target}: {n} iterations, 0 panics");
}

// ------------------------------------------------------------------ seeds

fn dumps() -> PathBuf {
    match std::env::var_os("CONTRAIL_FIXTURES") {
        Some(p) => PathBuf::from(p).join("flytekit-wire/dumps"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/flytekit-wire/dumps"),
    }
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(contrail_idl::FILE_DESCRIPTOR_SET).unwrap())
}

/// The recorded registrations of one kind, encoded, with the gRPC method that takes them.
fn recorded(kind: &str, full_name: &str) -> Vec<Vec<u8>> {
    let desc = pool().get_message_by_name(full_name).unwrap();
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(dumps())
        .expect("the fixtures are present")
        .map(|e| e.unwrap().path().join(kind))
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut de = serde_json::Deserializer::from_str(&text);
            if let Ok(m) = DynamicMessage::deserialize(desc.clone(), &mut de) {
                out.push(m.encode_to_vec());
            }
        }
    }
    out
}

struct Seeds {
    /// (method path, encoded request) pairs; every method also has an empty request.
    requests: Vec<(String, Vec<u8>)>,
    methods: Vec<String>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let admin = "/flyteidl.service.AdminService";
        let mut requests = Vec::new();
        for (kind, name, method) in [
            ("tasks", "flyteidl.admin.TaskCreateRequest", "CreateTask"),
            (
                "workflows",
                "flyteidl.admin.WorkflowCreateRequest",
                "CreateWorkflow",
            ),
            (
                "launch_plans",
                "flyteidl.admin.LaunchPlanCreateRequest",
                "CreateLaunchPlan",
            ),
        ] {
            for bytes in recorded(kind, name) {
                requests.push((format!("{admin}/{method}"), bytes));
            }
        }
        let mut methods = Vec::new();
        for service in [
            "flyteidl.service.AdminService",
            "flyteidl.service.DataProxyService",
            "flyteidl.service.SignalService",
            "datacatalog.DataCatalog",
        ] {
            for m in pool().get_service_by_name(service).unwrap().methods() {
                let path = format!("/{service}/{}", m.name());
                requests.push((path.clone(), Vec::new()));
                methods.push(path);
            }
        }
        assert!(
            requests.len() > methods.len() + 10,
            "few seeds: are the fixtures there?"
        );
        Seeds { requests, methods }
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        1 => any::<usize>().prop_map(Mutation::Cut),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        1 => (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(p, s, l)| Mutation::Splice(p, s, l)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation], donor: &[u8]) -> Vec<u8> {
    for m in mutations {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
        match m {
            Mutation::Flip(p, bit) if !bytes.is_empty() => {
                let i = p % bytes.len();
                bytes[i] ^= 1 << bit;
            }
            Mutation::Flip(..) => {}
            Mutation::Cut(p) => {
                let i = at(*p, bytes.len());
                bytes.truncate(i);
            }
            Mutation::Insert(p, extra) => {
                let i = at(*p, bytes.len());
                bytes.splice(i..i, extra.iter().copied());
            }
            Mutation::Splice(p, start, len) if !donor.is_empty() => {
                let s = start % donor.len();
                let e = (s + len % 64).min(donor.len());
                let i = at(*p, bytes.len());
                bytes.splice(i..i, donor[s..e].iter().copied());
            }
            Mutation::Splice(..) => {}
        }
    }
    bytes
}

// ------------------------------------------------------------------ every RPC, in process

struct InProcess {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn api() -> &'static InProcess {
    static API: OnceLock<InProcess> = OnceLock::new();
    API.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            contrail_store_sqlite::SqliteStore::open(&dir.path().join("contrail.db")).unwrap(),
        );
        std::fs::create_dir_all(dir.path().join("blobs/contrail")).unwrap();
        let blob = contrail_blob::BlobStore::new(dir.path().join("blobs"), "contrail", vec![7; 32]);
        let api = contrail_api::Api::new(store, blob, contrail_api::ApiConfig::default());
        api.seed().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        InProcess {
            router: api.router(),
            runtime,
            _dir: dir,
        }
    })
}

/// Sends one framed gRPC request through the whole edge; returns its grpc-status.
fn call(path: &str, message: &[u8]) -> String {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut body = vec![0u8];
    body.extend((message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let ip = api();
    let req = axum::http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(axum::body::Body::from(body))
        .unwrap();
    ip.runtime.block_on(async {
        let response = ip.router.clone().oneshot(req).await.unwrap();
        if let Some(s) = response.headers().get("grpc-status") {
            return s.to_str().unwrap_or("?").to_string();
        }
        let collected = response.into_body().collect().await.unwrap();
        collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .map(|s| s.to_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| "none".into())
    })
}

#[test]
fn every_rpc_decodes_and_validates_mutated_requests_without_unknown_or_internal() {
    let seeds = seeds();
    let strategy = (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<bool>(),
        proptest::collection::vec(mutation(), 0..6),
    );
    let mut runner = runner();
    runner
        .run(&strategy, |(seed, donor, method, cross, muts)| {
            let (own_method, bytes) = &seeds.requests[seed.index(seeds.requests.len())];
            // Half the time the request goes to its own method; else to any method.
            let path = if cross {
                &seeds.methods[method.index(seeds.methods.len())]
            } else {
                own_method
            };
            let donor = &seeds.requests[donor.index(seeds.requests.len())].1;
            let message = mutate(bytes.clone(), &muts, donor);
            let status = call(path, &message);
            prop_assert!(
                status != "2" && status != "13" && status != "none",
                "{path}: grpc-status {status} for {} bytes",
                message.len()
            );
            Ok(())
        })
        .unwrap();
    report("rpc", runner.config().cases);
}

/// Sends one HTTP request through the whole edge; returns its status.
fn http_call(method: &str, uri: &str, content_type: &str, body: Vec<u8>) -> u16 {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let ip = api();
    let Ok(req) = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(axum::body::Body::from(body))
    else {
        return 400; // not even a request
    };
    ip.runtime.block_on(async {
        let response = ip.router.clone().oneshot(req).await.unwrap();
        let status = response.status().as_u16();
        // The whole answer is produced (a panic in a body stream would surface here).
        let _ = response.into_body().collect().await;
        status
    })
}

/// REST paths: real route shapes with their variable segments replaced.
const REST_PATHS: &[&str] = &[
    "/api/v1/executions/{}/{}/{}",
    "/api/v1/executions/{}/{}",
    "/api/v1/executions",
    "/api/v1/executions/relaunch",
    "/api/v1/node_executions/{}/{}/{}/{}",
    "/api/v1/task_executions/{}/{}/{}/{}/{}/{}/{}/{}/{}",
    "/api/v1/tasks/{}/{}/{}/{}",
    "/api/v1/launch_plans/{}/{}/{}/{}",
    "/api/v1/named_entities/{}/{}/{}/{}",
    "/api/v1/projects/{}",
    "/api/v1/signals",
    "/api/v1/data",
    "/api/v1/{}",
    "/logs/{}/{}/{}/{}/{}/{}",
    "/console/{}",
];

fn query_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "limit",
            "token",
            "filters",
            "sort_by.key",
            "sortBy.direction",
            "id.project",
            "id.name",
            "spec.launch_plan.name",
            "inputs",
            "native_url",
            "item",
            "offset",
        ])
        .prop_map(str::to_string),
        (1usize..400).prop_map(|n| format!(
            "{}scalar.primitive.integer",
            "scalar.union.value.".repeat(n)
        )),
        "[a-z_.]{0,40}",
    ]
}

#[test]
fn rest_routes_take_any_path_query_and_body_without_internal_errors() {
    let strategy = (
        any::<prop::sample::Index>(),
        proptest::collection::vec("[a-zA-Z0-9%._~-]{0,24}", 9),
        proptest::collection::vec((query_key(), "[ -~]{0,30}"), 0..6),
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
        prop::sample::select(vec![
            "application/json",
            "application/octet-stream",
            "text/plain",
            "",
        ]),
        prop_oneof![
            Just(Vec::new()),
            "[ -~]{0,200}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..200),
            (1usize..300)
                .prop_map(|n| format!("{}{}", "{\"a\":[".repeat(n), "]}".repeat(n)).into_bytes()),
        ],
    );
    let mut runner = runner();
    runner
        .run(
            &strategy,
            |(path, segments, query, method, content_type, body)| {
                let template = REST_PATHS[path.index(REST_PATHS.len())];
                let mut uri = String::new();
                let mut parts = segments.iter();
                for (k, piece) in template.split("{}").enumerate() {
                    if k > 0 {
                        uri.push_str(parts.next().map_or("x", String::as_str));
                    }
                    uri.push_str(piece);
                }
                if !query.is_empty() {
                    let q: Vec<String> = query
                        .iter()
                        .map(|(k, v)| {
                            format!(
                                "{}={}",
                                k,
                                percent_encoding::utf8_percent_encode(
                                    v,
                                    percent_encoding::NON_ALPHANUMERIC
                                )
                            )
                        })
                        .collect();
                    uri = format!("{uri}?{}", q.join("&"));
                }
                let status = http_call(method, &uri, content_type, body);
                prop_assert!(status != 500, "{method} {uri}: HTTP {status}");
                Ok(())
            },
        )
        .unwrap();
    report("rest", runner.config().cases);
}

// ------------------------------------------------------------------ the compiler

fn references() -> &'static References {
    static REFS: OnceLock<References> = OnceLock::new();
    REFS.get_or_init(|| {
        let mut refs = References::default();
        for bytes in recorded("tasks", "flyteidl.admin.TaskCreateRequest") {
            let t = TaskCreateRequest::decode(bytes.as_slice()).unwrap();
            refs.tasks.insert(
                Key::of(t.id.as_ref().unwrap()),
                t.spec.unwrap().template.unwrap(),
            );
        }
        for bytes in recorded("launch_plans", "flyteidl.admin.LaunchPlanCreateRequest") {
            let lp = LaunchPlanCreateRequest::decode(bytes.as_slice()).unwrap();
            refs.launch_plans.insert(
                Key::of(lp.id.as_ref().unwrap()),
                LaunchPlanInterface {
                    inputs: lp.spec.unwrap().default_inputs.unwrap_or_default(),
                    outputs: Default::default(),
                },
            );
        }
        refs
    })
}

#[test]
fn the_compiler_takes_mutated_workflows_without_panicking() {
    let workflows = recorded("workflows", "flyteidl.admin.WorkflowCreateRequest");
    let strategy = (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        proptest::collection::vec(mutation(), 1..8),
    );
    let mut runner = runner();
    let compiled = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&strategy, |(seed, donor, muts)| {
            let bytes = mutate(
                workflows[seed.index(workflows.len())].clone(),
                &muts,
                &workflows[donor.index(workflows.len())],
            );
            if let Ok(req) = WorkflowCreateRequest::decode(bytes.as_slice())
                && let Some(spec) = req.spec
            {
                let _ = compile_workflow(&spec, references());
                compiled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    assert!(compiled.into_inner() > 0, "no mutated workflow decoded");
    report("compiler", runner.config().cases);
}

// ------------------------------------------------------------------ attr_path resolution

fn msgpack() -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        any::<f64>().prop_map(rmpv::Value::from),
        "[a-z]{0,6}".prop_map(rmpv::Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(rmpv::Value::Array),
            proptest::collection::vec(("[a-c]{1,2}".prop_map(rmpv::Value::from), inner), 0..6)
                .prop_map(rmpv::Value::Map),
        ]
    })
}

fn binary(tag: &str, value: Vec<u8>) -> core::Literal {
    contrail_engine::resolve::scalar_literal(core::scalar::Value::Binary(core::Binary {
        value,
        tag: tag.into(),
    }))
}

fn literal() -> impl Strategy<Value = core::Literal> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| contrail_engine::resolve::primitive_literal(
            core::primitive::Value::Integer(i)
        )),
        msgpack().prop_map(|v| {
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &v).unwrap();
            binary("msgpack", bytes)
        }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| binary("msgpack", b)),
        "[a-z]{0,4}".prop_map(|k| {
            let mut fields = std::collections::BTreeMap::new();
            fields.insert(
                k,
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::NumberValue(1.0)),
                },
            );
            contrail_engine::resolve::scalar_literal(core::scalar::Value::Generic(
                prost_types::Struct { fields },
            ))
        }),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|literals| core::Literal {
                value: Some(core::literal::Value::Collection(core::LiteralCollection {
                    literals
                })),
                ..Default::default()
            }),
            proptest::collection::btree_map("[a-c]{1,2}", inner, 0..4).prop_map(|literals| {
                core::Literal {
                    value: Some(core::literal::Value::Map(core::LiteralMap { literals })),
                    ..Default::default()
                }
            }),
        ]
    })
}

fn attr_path() -> impl Strategy<Value = Vec<core::PromiseAttribute>> {
    proptest::collection::vec(
        prop_oneof![
            "[a-c]{1,2}".prop_map(|s| core::PromiseAttribute {
                value: Some(core::promise_attribute::Value::StringValue(s)),
            }),
            (-2i32..6).prop_map(|i| core::PromiseAttribute {
                value: Some(core::promise_attribute::Value::IntValue(i)),
            }),
            Just(core::PromiseAttribute { value: None }),
        ],
        0..6,
    )
}

#[test]
fn attr_paths_resolve_or_fail_cleanly_through_maps_lists_msgpack_and_structs() {
    let mut runner = runner();
    runner
        .run(&(literal(), attr_path()), |(lit, path)| {
            let _ = contrail_engine::resolve::walk(lit, &path);
            Ok(())
        })
        .unwrap();
    report("attr_path", runner.config().cases);
}

#[test]
fn deeply_nested_msgpack_fails_cleanly() {
    // 100k nested arrays: a parser that recursed without a bound would overflow the stack.
    let mut bytes = vec![0x91u8; 100_000];
    bytes.push(0xc0);
    let path = vec![
        core::PromiseAttribute {
            value: Some(core::promise_attribute::Value::IntValue(0)),
        };
        3
    ];
    let _ = contrail_engine::resolve::walk(binary("msgpack", bytes), &path);
}

// ------------------------------------------------------------------ the filter parser

fn filter_text() -> impl Strategy<Value = String> {
    let term = (
        prop_oneof![
            Just("eq".to_string()),
            Just("ne".to_string()),
            Just("gt".to_string()),
            Just("value_in".to_string()),
            Just("contains".to_string()),
            Just("lte".to_string()),
            "[a-z_]{0,8}"
        ],
        prop_oneof![
            Just("name".to_string()),
            Just("phase".to_string()),
            Just("created_at".to_string()),
            Just("execution_tag.key".to_string()),
            Just("launch_plan.name".to_string()),
            "[a-z_.]{0,12}"
        ],
        "[ -~]{0,24}",
        any::<bool>(),
    )
        .prop_map(|(f, field, v, close)| {
            format!("{f}({field},{v}{}", if close { ")" } else { "" })
        });
    prop_oneof![
        proptest::collection::vec(term, 0..5).prop_map(|t| t.join("+")),
        "\\PC{0,64}",
    ]
}

#[test]
fn the_filter_parser_and_page_tokens_take_anything() {
    use contrail_api::list::{Phases, issue_token, parse_filters_for, parse_token};
    let mut runner = runner();
    runner
        .run(
            &(filter_text(), "\\PC{0,40}", any::<u32>()),
            |(filters, token, offset)| {
                for phases in [Phases::Workflow, Phases::Node, Phases::Task] {
                    if let Ok(parsed) = parse_filters_for(&filters, phases) {
                        prop_assert!(parsed.len() <= contrail_api::list::MAX_TERMS);
                    }
                }
                let _ = parse_token(&token);
                prop_assert_eq!(
                    parse_token(&issue_token(offset as u64)).unwrap(),
                    offset as u64
                );
                Ok(())
            },
        )
        .unwrap();
    report("filters", runner.config().cases);
}

// ------------------------------------------------------------------ upload keys, S3 keys

fn stays_inside(rel: &str) -> bool {
    Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
}

fn key_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        proptest::collection::vec(
            prop_oneof![
                Just("..".to_string()),
                Just(".".to_string()),
                Just(String::new()),
                Just(".contrail-x".to_string()),
                "[a-z0-9=_-]{1,8}",
                "\\PC{1,6}"
            ],
            1..6
        )
        .prop_map(|s| s.join("/")),
        "[ -~]{0,30}".prop_map(|s| format!("/{s}")),
    ]
}

#[test]
fn upload_keys_and_segments_never_leave_the_bucket() {
    let store = contrail_blob::BlobStore::new("/tmp/never-used", "contrail", vec![1; 32]);
    let mut runner = runner();
    runner
        .run(&(key_text(), key_text()), |(key, segment)| {
            if contrail_blob::validate_key(&key).is_ok() {
                prop_assert!(stays_inside(&key), "accepted {key:?}");
                let path = store.path(&key).unwrap();
                prop_assert!(path.starts_with("/tmp/never-used/contrail/"));
                let uri = store.uri(&key);
                prop_assert_eq!(store.key_of(&uri).unwrap(), key.as_str());
            }
            if contrail_blob::validate_segment(&segment).is_ok() {
                prop_assert!(!segment.contains('/') && stays_inside(&segment));
            }
            // A URI of another bucket or scheme never maps into this one.
            let foreign = format!("s3://other/{key}");
            prop_assert!(store.key_of(&foreign).is_err());
            Ok(())
        })
        .unwrap();
    report("upload_keys", runner.config().cases);
}

#[test]
fn the_s3_key_mapping_is_inside_the_bucket_and_one_to_one() {
    use contrail_blob::objects::validate_object_key;
    let mut runner = runner();
    runner
        .run(&(key_text(), key_text()), |(a, b)| {
            let (ma, mb) = (validate_object_key(&a), validate_object_key(&b));
            if let Ok(pa) = &ma {
                prop_assert!(stays_inside(pa), "{a:?} -> {pa:?}");
            }
            if let (Ok(pa), Ok(pb)) = (&ma, &mb)
                && a != b
            {
                prop_assert_ne!(pa, pb, "{:?} and {:?} share a file", a, b);
            }
            Ok(())
        })
        .unwrap();
    report("s3_keys", runner.config().cases);
}
