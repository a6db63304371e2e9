//! Optional trace export (`--otlp-endpoint`): the spans of RPCs (`rpc`, with the method and
//! the execution it names) and of controller passes (`reconcile`, with the execution) go to
//! an OpenTelemetry collector over OTLP/HTTP (protobuf), in batches.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;

/// The exporting layer and its provider (shut it down to flush before exit). `endpoint` is
/// the collector's base URL, e.g. `http://localhost:4318`.
pub fn layer<S>(endpoint: &str) -> Result<(impl Layer<S>, SdkTracerProvider), String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| format!("--otlp-endpoint {endpoint}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("contrail").build())
        .build();
    let tracer = provider.tracer("contrail");
    // Only Contrail's own spans, at info and above: the RPCs and the reconcile passes.
    let only_ours = tracing_subscriber::filter::filter_fn(|meta| {
        meta.target().starts_with("contrail") && *meta.level() <= tracing::Level::INFO
    });
    Ok((
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(only_ours),
        provider,
    ))
}
