//! Logs and traces. Every process logs through `tracing` to stderr; when an OTLP endpoint is
//! configured (`otlp_endpoint`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`) spans are also
//! exported over OTLP/gRPC. Trace context crosses process boundaries as W3C `traceparent`, in
//! HTTP headers (API requests) and gRPC metadata (gateway calls), so one change is one trace.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::ProcessError;

/// Flushes buffered spans when dropped; keep it alive for the process's lifetime.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            // Best effort: an unreachable collector must not hold up shutdown.
            let _ = p.shutdown();
        }
    }
}

/// The OTLP endpoint from configuration, else from the standard OpenTelemetry variable.
pub fn otlp_endpoint(configured: Option<&str>) -> Option<String> {
    configured
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|s| !s.is_empty())
        })
}

/// The service name spans are exported under: `OTEL_SERVICE_NAME` when set, else `default`.
pub fn service_name(default: &str) -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A layer exporting spans at info level and above over OTLP/gRPC to `endpoint`, as `service`
/// (see [`service_name`]). The sampler follows `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`
/// (default: parent-based, always on). Must run inside a Tokio runtime.
pub fn otlp_layer<S>(
    service: &str,
    endpoint: &str,
) -> Result<(impl tracing_subscriber::Layer<S>, Telemetry), ProcessError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.to_string())
        .build()
        .map_err(|e| ProcessError::Telemetry(format!("OTLP exporter for {endpoint}: {e}")))?;
    let service = service_name(service);
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider.clone());
    // Its own filter: quiet logs (`log_level=warn`) must not silence the spans that make up a
    // trace, which are recorded at info level and above.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    Ok((
        layer,
        Telemetry {
            provider: Some(provider),
        },
    ))
}

/// Install the global subscriber: stderr logs filtered by `log_filter` (`EnvFilter` syntax), and
/// OTLP span export to `otlp` when given. Must run inside a Tokio runtime when `otlp` is set.
pub fn init(
    service: &str,
    log_filter: &str,
    otlp: Option<&str>,
) -> Result<Telemetry, ProcessError> {
    let filter = EnvFilter::try_new(log_filter)
        .map_err(|e| ProcessError::Config(format!("log_level {log_filter:?}: {e}")))?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let Some(endpoint) = otlp_endpoint(otlp) else {
        tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .try_init()
            .map_err(|e| ProcessError::Telemetry(e.to_string()))?;
        return Ok(Telemetry { provider: None });
    };
    let (otlp, telemetry) = otlp_layer(service, &endpoint)?;
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otlp)
        .try_init()
        .map_err(|e| ProcessError::Telemetry(e.to_string()))?;
    Ok(telemetry)
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Write the current span's context into `headers` as `traceparent`/`tracestate`.
pub fn inject(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The current span's context as a W3C `traceparent` value; empty outside any sampled span.
pub fn current_traceparent() -> String {
    let mut headers = http::HeaderMap::new();
    inject(&mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Make `span` a child of the remote context in a `traceparent` value (empty: no change).
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(traceparent) {
        headers.insert("traceparent", v);
    }
    set_parent_from(span, &headers);
}

/// Make `span` a child of the remote context carried in `headers`, if any.
pub fn set_parent_from(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(cx);
    }
}

/// A tonic client interceptor that sends the caller's trace context with every call.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceInterceptor;

impl tonic::service::Interceptor for TraceInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut headers = http::HeaderMap::new();
        inject(&mut headers);
        for (k, v) in headers.iter() {
            if let (Ok(k), Ok(v)) = (
                tonic::metadata::MetadataKey::from_bytes(k.as_str().as_bytes()),
                tonic::metadata::MetadataValue::try_from(v.as_bytes()),
            ) {
                req.metadata_mut().insert(k, v);
            }
        }
        Ok(req)
    }
}
