//! flyteadmin's REST API (`/api/v1/...`), the grpc-gateway mapping of the served services.
//!
//! The routes are read from the `google.api.http` options in the compiled schema, not
//! written by hand. A REST call is transcoded into the gRPC call it maps to and sent
//! through the whole edge (body limits, authentication, authorization, handlers), so
//! both doors answer alike. Bodies are proto-JSON (lowerCamelCase by default, proto field
//! names when `Accept` or `Content-Type` is exactly `application/json`) or binary
//! protobuf (`application/octet-stream`), as grpc-gateway chooses them.

use crate::edge;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use prost::Message;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    ReflectMessage, SerializeOptions, Value,
};
use std::sync::OnceLock;
use tonic::Code;
use tower::ServiceExt;

/// The services whose HTTP mappings are served.
const SERVICES: &[&str] = &[
    "flyteidl.service.AdminService",
    "flyteidl.service.DataProxyService",
    "flyteidl.service.SignalService",
];

/// Query parameters one request may carry.
const MAX_QUERY_PARAMS: usize = 64;
/// Parts of one dotted field path (recursive messages could otherwise nest without end).
const MAX_FIELD_DEPTH: usize = 16;

/// One HTTP binding of a gRPC method.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub verb: Method,
    segments: Vec<Segment>,
    body: BodyRule,
    pub method: MethodDescriptor,
    /// The gRPC path of the method (`/package.Service/Method`).
    grpc_path: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    /// A dotted field path of the request message.
    Field(String),
}

#[derive(Debug, Clone, PartialEq)]
enum BodyRule {
    None,
    Whole,
    Field(String),
}

impl Route {
    fn literals(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    /// The field values the path binds, or `None` when the path is not this route's.
    fn bind<'a>(&self, verb: &Method, parts: &[&'a str]) -> Option<Vec<(&str, &'a str)>> {
        if verb != self.verb || parts.len() != self.segments.len() {
            return None;
        }
        let mut bound = Vec::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Field(_) if part.is_empty() => return None,
                Segment::Field(f) => bound.push((f.as_str(), *part)),
            }
        }
        Some(bound)
    }
}

/// Every HTTP binding of the served services, most specific first.
pub(crate) fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let pool = crate::schema();
        let mut routes = Vec::new();
        let Some(http) = pool.get_extension_by_name("google.api.http") else {
            return routes;
        };
        for service in SERVICES.iter().filter_map(|s| pool.get_service_by_name(s)) {
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&http) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&http).into_owned() else {
                    continue;
                };
                let Ok(rule) =
                    contrail_idl::google::api::HttpRule::decode(rule.encode_to_vec().as_slice())
                else {
                    continue;
                };
                let mut rules = vec![rule.clone()];
                rules.extend(rule.additional_bindings.iter().cloned());
                for rule in rules {
                    if let Some(route) = route_of(&method, &rule) {
                        routes.push(route);
                    }
                }
            }
        }
        // More literal segments first, so `/executions/relaunch` wins over a field.
        routes.sort_by_key(|r| std::cmp::Reverse(r.literals()));
        routes
    })
}

fn route_of(
    method: &MethodDescriptor,
    rule: &contrail_idl::google::api::HttpRule,
) -> Option<Route> {
    use contrail_idl::google::api::http_rule::Pattern;
    let (verb, template) = match rule.pattern.as_ref()? {
        Pattern::Get(p) => (Method::GET, p),
        Pattern::Put(p) => (Method::PUT, p),
        Pattern::Post(p) => (Method::POST, p),
        Pattern::Delete(p) => (Method::DELETE, p),
        Pattern::Patch(p) => (Method::PATCH, p),
        Pattern::Custom(_) => return None,
    };
    let segments = template
        .trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                // `{field=pattern}` binds the field to one segment here (flyteidl uses none).
                Some(f) => Segment::Field(f.split('=').next().unwrap_or(f).to_string()),
                None => Segment::Literal(s.to_string()),
            },
        )
        .collect();
    let body = match rule.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        f => BodyRule::Field(f.to_string()),
    };
    Some(Route {
        verb,
        segments,
        body,
        grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        method: method.clone(),
    })
}

/// How a body is written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Binary,
    /// proto-JSON with the proto field names.
    ProtoNames,
    /// proto-JSON with lowerCamelCase names (grpc-gateway's default).
    CamelCase,
}

fn encoding_named(value: &str) -> Option<Encoding> {
    match value {
        "application/octet-stream" => Some(Encoding::Binary),
        "application/json" => Some(Encoding::ProtoNames),
        _ => None,
    }
}

/// Inbound: `Content-Type` without its parameters. Outbound: `Accept` as a whole string,
/// else the inbound one.
fn encodings(headers: &HeaderMap) -> (Encoding, Encoding) {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let inbound = get(header::CONTENT_TYPE)
        .and_then(|v| encoding_named(v.split(';').next().unwrap_or("").trim()))
        .unwrap_or(Encoding::CamelCase);
    let outbound = get(header::ACCEPT)
        .and_then(encoding_named)
        .unwrap_or(inbound);
    (inbound, outbound)
}

/// An error as grpc-gateway writes it: `{code, message, details}` with the matching status.
pub(crate) fn error(code: Code, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "code": code as i32,
        "message": message.into(),
        "details": [],
    });
    (
        edge::http_status(code),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    error(Code::InvalidArgument, message)
}

/// Where REST calls go: the whole gRPC edge, and its message limit.
#[derive(Clone)]
pub(crate) struct Gateway {
    pub edge: axum::Router,
    pub max_message_bytes: usize,
}

/// Serves `/api/v1/...`: the call is sent through the whole gRPC edge.
pub(crate) async fn serve(State(gateway): State<Gateway>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut found = None;
    for route in routes() {
        if let Some(bound) = route.bind(req.method(), &parts) {
            found = Some((route, bound));
            break;
        }
    }
    let Some((route, bound)) = found else {
        let known = routes().iter().any(|r| r.bind(&r.verb, &parts).is_some());
        return if known {
            error(
                Code::Unimplemented,
                format!("{} {path}: method not allowed", req.method()),
            )
        } else {
            error(Code::NotFound, format!("{path}: no such route"))
        };
    };
    let (inbound, outbound) = encodings(req.headers());
    let limit = edge::body_limit(&route.grpc_path, gateway.max_message_bytes);
    let (head, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                Code::ResourceExhausted,
                format!("the request body is over {limit} bytes or unreadable: {e}"),
            );
        }
    };
    let request = match build_request(route, &bound, head.uri.query(), &body, inbound) {
        Ok(m) => m,
        Err(e) => return invalid(e),
    };
    // The gRPC call, carrying the caller's credentials.
    let framed = edge::frame(&request.encode_to_vec());
    let mut call = axum::http::Request::builder()
        .method(Method::POST)
        .uri(&route.grpc_path)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers");
    for name in ["authorization", "flyte-authorization", "cookie", "host"] {
        if let Some(v) = head.headers.get(name) {
            call = call.header(name, v);
        }
    }
    let call = match call.body(Body::from(framed)) {
        Ok(c) => c,
        Err(e) => return error(Code::Internal, format!("cannot build the gRPC call: {e}")),
    };
    let answer = match gateway.edge.oneshot(call).await {
        Ok(a) => a,
        Err(never) => match never {},
    };
    respond(answer, route.method.output(), outbound).await
}

fn build_request(
    route: &Route,
    bound: &[(&str, &str)],
    query: Option<&str>,
    body: &[u8],
    inbound: Encoding,
) -> Result<DynamicMessage, String> {
    let input = route.method.input();
    let mut message = match &route.body {
        BodyRule::None => DynamicMessage::new(input.clone()),
        BodyRule::Whole => decode_body(input.clone(), body, inbound)?,
        BodyRule::Field(field) => {
            let desc = input
                .get_field_by_name(field)
                .ok_or_else(|| format!("body field {field} is not in the request"))?;
            let Kind::Message(kind) = desc.kind() else {
                return Err(format!("body field {field} is not a message"));
            };
            let inner = decode_body(kind, body, inbound)?;
            let mut m = DynamicMessage::new(input.clone());
            m.set_field(&desc, Value::Message(inner));
            m
        }
    };
    for (field, raw) in bound {
        let value = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| format!("path field {field} is not UTF-8"))?;
        set_field(&mut message, field, &value)?;
    }
    if let Some(query) = query {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if pairs.len() > MAX_QUERY_PARAMS {
            return Err(format!(
                "{} query parameters; at most {MAX_QUERY_PARAMS} are accepted",
                pairs.len()
            ));
        }
        for (field, value) in pairs {
            set_field(&mut message, &field, &value)?;
        }
    }
    Ok(message)
}

fn decode_body(
    desc: MessageDescriptor,
    body: &[u8],
    inbound: Encoding,
) -> Result<DynamicMessage, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(desc));
    }
    match inbound {
        Encoding::Binary => DynamicMessage::decode(desc, body)
            .map_err(|e| format!("the body is not a valid protobuf message: {e}")),
        Encoding::ProtoNames | Encoding::CamelCase => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let options = DeserializeOptions::new().deny_unknown_fields(false);
            let message = DynamicMessage::deserialize_with_options(desc, &mut de, &options)
                .map_err(|e| format!("the body is not valid JSON for the request: {e}"))?;
            de.end()
                .map_err(|e| format!("the body has trailing data: {e}"))?;
            Ok(message)
        }
    }
}

/// Sets the field at a dotted path (proto or JSON names) from its text form.
fn set_field(message: &mut DynamicMessage, path: &str, raw: &str) -> Result<(), String> {
    if path.split('.').count() > MAX_FIELD_DEPTH {
        let shown: String = path.chars().take(60).collect();
        return Err(format!(
            "{shown}...: a field path has at most {MAX_FIELD_DEPTH} parts"
        ));
    }
    set_path(message, path, raw, path)
}

fn set_path(
    message: &mut DynamicMessage,
    path: &str,
    raw: &str,
    whole: &str,
) -> Result<(), String> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let desc = message.descriptor();
    let field = desc
        .get_field_by_name(head)
        .or_else(|| desc.get_field_by_json_name(head))
        .ok_or_else(|| format!("{whole}: no such field in {}", desc.name()))?;
    match rest {
        Some(rest) => match message.get_field_mut(&field) {
            Value::Message(inner) if !field.is_list() && !field.is_map() => {
                set_path(inner, rest, raw, whole)
            }
            _ => Err(format!("{whole}: {head} is not a message")),
        },
        None => {
            let value = scalar(&field, raw).map_err(|e| format!("{whole}: {e}"))?;
            if field.is_list() {
                if let Value::List(items) = message.get_field_mut(&field) {
                    items.push(value);
                }
            } else {
                message.set_field(&field, value);
            }
            Ok(())
        }
    }
}

fn scalar(field: &FieldDescriptor, raw: &str) -> Result<Value, String> {
    let number = |what: &str| format!("{raw:?} is not {what}");
    Ok(match field.kind() {
        Kind::String => Value::String(raw.to_string()),
        Kind::Bool => Value::Bool(match raw {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(number("a boolean")),
        }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(raw.parse().map_err(|_| number("a 32-bit integer"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(raw.parse().map_err(|_| number("a 64-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(
            raw.parse()
                .map_err(|_| number("an unsigned 32-bit integer"))?,
        ),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(
            raw.parse()
                .map_err(|_| number("an unsigned 64-bit integer"))?,
        ),
        Kind::Float => Value::F32(raw.parse().map_err(|_| number("a number"))?),
        Kind::Double => Value::F64(raw.parse().map_err(|_| number("a number"))?),
        Kind::Bytes => Value::Bytes(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, raw)
                .or_else(|_| {
                    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE, raw)
                })
                .map_err(|_| number("base64"))?
                .into(),
        ),
        Kind::Enum(e) => {
            let v = e
                .get_value_by_name(raw)
                .map(|v| v.number())
                .or_else(|| {
                    raw.parse::<i32>()
                        .ok()
                        .filter(|n| e.get_value(*n).is_some())
                })
                .ok_or_else(|| format!("{raw:?} is not a value of {}", e.name()))?;
            Value::EnumNumber(v)
        }
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
            let quoted = serde_json::Value::String(raw.to_string()).to_string();
            let mut de = serde_json::Deserializer::from_str(&quoted);
            Value::Message(DynamicMessage::deserialize(m, &mut de).map_err(|e| e.to_string())?)
        }
        Kind::Message(m) => return Err(format!("{} cannot be given as text", m.name())),
    })
}

/// Turns the gRPC answer into the REST one.
async fn respond(answer: Response, output: MessageDescriptor, outbound: Encoding) -> Response {
    let (head, body) = answer.into_parts();
    let collected = match body.collect().await {
        Ok(c) => c,
        Err(e) => return error(Code::Unavailable, format!("the call was cut short: {e}")),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status_of = |h: &HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
    };
    let code = status_of(&head.headers)
        .or_else(|| status_of(&trailers))
        .map(Code::from_i32);
    let bytes = collected.to_bytes();
    match code {
        Some(Code::Ok) => {}
        Some(code) => {
            let message = head
                .headers
                .get("grpc-message")
                .or_else(|| trailers.get("grpc-message"))
                .and_then(|v| v.to_str().ok())
                .map(|m| {
                    percent_encoding::percent_decode_str(m)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default();
            return error(code, message);
        }
        // Not a gRPC answer: a plain-HTTP refusal from the edge (401, 403...) passes on.
        None => return Response::from_parts(head, Body::from(bytes)),
    }
    let payload = match edge::unframe(&bytes) {
        Ok(p) => p,
        Err(e) => return error(Code::Internal, format!("the gRPC answer: {e}")),
    };
    if outbound == Encoding::Binary {
        return (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            payload.to_vec(),
        )
            .into_response();
    }
    let message = match DynamicMessage::decode(output, payload) {
        Ok(m) => m,
        Err(e) => return error(Code::Internal, format!("cannot read the gRPC answer: {e}")),
    };
    match to_json(&message, outbound == Encoding::ProtoNames) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => error(Code::Internal, format!("cannot write JSON: {e}")),
    }
}

/// proto-JSON with unpopulated fields written out, as grpc-gateway writes it.
pub(crate) fn to_json(message: &DynamicMessage, proto_names: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    let options = SerializeOptions::new()
        .use_proto_field_name(proto_names)
        .skip_default_fields(false);
    message
        .serialize_with_options(&mut ser, &options)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(verb: Method, path: &str) -> Option<(String, Vec<(String, String)>)> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        routes().iter().find_map(|r| {
            r.bind(&verb, &parts).map(|b| {
                (
                    r.method.name().to_string(),
                    b.into_iter()
                        .map(|(f, v)| (f.to_string(), v.to_string()))
                        .collect(),
                )
            })
        })
    }

    #[test]
    fn the_routes_come_from_the_schema() {
        // flyteidl 1.16 declares 66 bindings on these three services (with the
        // additional list bindings); tests/e2e/test_rest.py sends each.
        assert_eq!(routes().len(), 66);
        let (m, b) = find(Method::GET, "/api/v1/executions/p/d/n1").unwrap();
        assert_eq!(m, "GetExecution");
        assert_eq!(b[2], ("id.name".to_string(), "n1".to_string()));
        let expected = [
            (Method::GET, "/api/v1/executions/p/d", "ListExecutions"),
            (
                Method::POST,
                "/api/v1/executions/relaunch",
                "RelaunchExecution",
            ),
            (Method::GET, "/api/v1/tasks/p/d", "ListTasks"),
            (Method::GET, "/api/v1/tasks/p/d/t", "ListTasks"),
            (
                Method::GET,
                "/api/v1/node_executions/p/d/e/n0/dynamic_workflow",
                "GetDynamicNodeWorkflow",
            ),
            (Method::GET, "/api/v1/signals/p/d/e", "ListSignals"),
            (
                Method::POST,
                "/api/v1/dataproxy/artifact_link",
                "CreateDownloadLink",
            ),
        ];
        for (verb, path, method) in expected {
            assert_eq!(
                find(verb, path).map(|f| f.0).as_deref(),
                Some(method),
                "{path}"
            );
        }
        assert!(find(Method::GET, "/api/v1/nothing").is_none());
    }

    #[test]
    fn path_and_query_fields_fill_the_request() {
        let route = routes()
            .iter()
            .find(|r| r.method.name() == "ListExecutions")
            .unwrap();
        let m = build_request(
            route,
            &[("id.project", "p"), ("id.domain", "d")],
            Some("limit=5&sort_by.key=created_at&sortBy.direction=ASCENDING&filters=eq(phase,SUCCEEDED)"),
            b"",
            Encoding::CamelCase,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&to_json(&m, true).unwrap()).unwrap();
        assert_eq!(json["id"]["project"], "p");
        assert_eq!(json["limit"], 5);
        assert_eq!(json["sort_by"]["direction"], "ASCENDING");
        assert_eq!(json["filters"], "eq(phase,SUCCEEDED)");
        let bad = build_request(route, &[], Some("limit=x"), b"", Encoding::CamelCase);
        assert!(bad.unwrap_err().contains("limit"));
        let unknown = build_request(route, &[], Some("nope=1"), b"", Encoding::CamelCase);
        assert!(unknown.unwrap_err().contains("nope"));
        let deep = format!("id.{}", "x.".repeat(40));
        let too_deep = build_request(
            route,
            &[],
            Some(&format!("{deep}=1")),
            b"",
            Encoding::CamelCase,
        );
        assert!(too_deep.unwrap_err().contains("at most 16 parts"));
    }

    #[test]
    fn the_body_encoding_follows_the_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(encodings(&h), (Encoding::CamelCase, Encoding::CamelCase));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(encodings(&h), (Encoding::ProtoNames, Encoding::ProtoNames));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/octet-stream"),
        );
        assert_eq!(encodings(&h).1, Encoding::Binary);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(
            encodings(&h).1,
            Encoding::ProtoNames,
            "falls back to the inbound"
        );
    }
}
