//! Log level and format of the command line (cli.md §1.3): `--log-level` (else `RDD_LOG_LEVEL`,
//! else `debug` in developer mode and `warn` otherwise) and `--log-format text|json`.
//!
//! Both formats are logrus-shaped, because the BATS suites and scripts match on them: text is
//! `time="…" level=info msg="…" key=value`, json one object per line with `time`, `level`,
//! `msg` and the event's fields.

use std::fmt::{self, Write as _};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Text,
    Json,
}

pub fn parse_format(s: &str) -> Result<Format, String> {
    match s {
        "text" | "" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        _ => Err(format!("invalid log format: {s:?}")),
    }
}

pub fn parse_level(s: &str) -> Result<&'static str, String> {
    Ok(match s {
        // tracing has no fatal: fatal messages are logged at error level.
        "fatal" | "error" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        _ => {
            return Err(format!(
                "invalid log level: {s:?} (fatal, error, warn, info, debug, trace)"
            ));
        }
    })
}

/// The effective level: the flag, else `RDD_LOG_LEVEL`, else by developer mode.
pub fn level(flag: Option<&str>, developer: bool) -> Result<&'static str, String> {
    let env = std::env::var("RDD_LOG_LEVEL").ok();
    match flag
        .filter(|s| !s.is_empty())
        .or(env.as_deref().filter(|s| !s.is_empty()))
    {
        Some(l) => parse_level(l),
        None if developer => Ok("debug"),
        None => Ok("warn"),
    }
}

pub fn init(level: &str, format: Format) {
    let _ = init_with_otlp(level, format, None);
}

/// [`init`], and when `otlp` names an endpoint, span export over OTLP/gRPC as
/// `rdd-apiserver` (`rdd svc serve` hosts the API server). Must run inside a Tokio runtime then.
/// Keep the returned guard alive while spans should be exported.
pub fn init_with_otlp(
    level: &str,
    format: Format,
    otlp: Option<&str>,
) -> Option<rdd_process::telemetry::Telemetry> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // rdd's own messages at the chosen level; the libraries' chatter only from warn on. kube's
    // client logs every failed request at error level, although the caller gets the error and
    // reports it (or, polling for a server that is still starting, expects it): those lines are
    // left to debug and trace.
    let quiet_kube = if matches!(level, "debug" | "trace") {
        ""
    } else {
        ",kube_client::client::builder=off"
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "warn,rdd={level},rdd_kit={level},rdd_process={level},rdd_apiserver={level}{quiet_kube}"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .event_format(Logrus(format))
        .with_filter(filter);
    let (otel, guard) =
        match otlp.map(|endpoint| rdd_process::telemetry::otlp_layer("rdd-apiserver", endpoint)) {
            Some(Ok((layer, guard))) => (Some(layer), Some(guard)),
            Some(Err(e)) => {
                eprintln!("rdd: OTLP export disabled: {e}");
                (None, None)
            }
            None => (None, None),
        };
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    guard
}

struct Logrus(Format);

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(key(field), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(key(field), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(key(field), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(key(field), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(key(field), Value::String(format!("{value:?}")));
    }
}

fn key(field: &Field) -> String {
    match field.name() {
        "message" => "msg".into(),
        n => n.to_string(),
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// logrus quotes a text value only when it needs it.
fn text_value(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+:".contains(c))
    {
        s
    } else {
        serde_json::to_string(&s).unwrap_or(s)
    }
}

impl<S, N> FormatEvent<S, N> for Logrus
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let level = level_name(event.metadata().level());
        let msg = fields
            .0
            .remove("msg")
            .unwrap_or(Value::String(String::new()));
        match self.0 {
            Format::Json => {
                let mut m = Map::new();
                m.insert("level".into(), level.into());
                m.insert("msg".into(), msg);
                m.insert("time".into(), time.into());
                for (k, v) in fields.0 {
                    m.entry(k).or_insert(v);
                }
                writeln!(w, "{}", Value::Object(m))
            }
            Format::Text => {
                let mut line = format!("time=\"{time}\" level={level} msg={}", text_value(&msg));
                for (k, v) in &fields.0 {
                    let _ = write!(line, " {k}={}", text_value(v));
                }
                writeln!(w, "{line}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_levels() {
        assert_eq!(parse_format("json"), Ok(Format::Json));
        assert_eq!(parse_format("text"), Ok(Format::Text));
        assert_eq!(
            parse_format("xml").unwrap_err(),
            "invalid log format: \"xml\""
        );
        assert_eq!(parse_level("fatal"), Ok("error"));
        assert!(parse_level("loud").is_err());
        assert_eq!(text_value(&Value::String("ready".into())), "ready");
        assert_eq!(
            text_value(&Value::String("App created".into())),
            "\"App created\""
        );
    }
}
