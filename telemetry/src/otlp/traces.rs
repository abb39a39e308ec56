//! Spans to OTLP: a span processor that keeps ended spans in a bounded buffer (counting what
//! does not fit) and a task that sends them in batches every second through the traces
//! [`Exporter`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use super::export::{Exporter, Payload};

/// Ended spans held at most between two sends.
const MAX_BUFFERED_SPANS: usize = 4096;
/// A batch is sent when this many spans wait, or every [`FLUSH_EVERY`].
const BATCH: usize = 512;
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Buffer {
    spans: Mutex<Vec<SpanData>>,
    resource: Mutex<ResourceAttributesWithSchema>,
    wake: tokio::sync::Notify,
}

/// The processor the tracer provider calls; cheap and non-blocking on the hot path.
#[derive(Debug, Clone)]
pub struct QueueingSpanProcessor {
    buffer: Arc<Buffer>,
    exporter: Exporter,
}

impl QueueingSpanProcessor {
    /// Starts the batching task on the current Tokio runtime.
    pub fn start(exporter: Exporter) -> QueueingSpanProcessor {
        let buffer = Arc::new(Buffer {
            spans: Mutex::new(Vec::new()),
            resource: Mutex::new(ResourceAttributesWithSchema::default()),
            wake: tokio::sync::Notify::new(),
        });
        let processor = QueueingSpanProcessor {
            buffer: buffer.clone(),
            exporter: exporter.clone(),
        };
        let batcher = processor.clone();
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(FLUSH_EVERY, batcher.buffer.wake.notified()).await;
                batcher.send_buffered();
            }
        });
        processor
    }

    /// Moves what is buffered into one export request.
    pub fn send_buffered(&self) {
        let spans = std::mem::take(&mut *self.buffer.spans.lock().unwrap());
        if spans.is_empty() {
            return;
        }
        let count = spans.len() as u64;
        let resource_spans = {
            let resource = self.buffer.resource.lock().unwrap();
            group_spans_by_resource_and_scope(spans, &resource)
        };
        self.exporter.submit(
            Payload::Traces(ExportTraceServiceRequest { resource_spans }),
            count,
        );
    }
}

impl SpanProcessor for QueueingSpanProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let mut spans = self.buffer.spans.lock().unwrap();
        if spans.len() >= MAX_BUFFERED_SPANS {
            self.exporter.stats().add_dropped(1);
            return;
        }
        spans.push(span);
        if spans.len() >= BATCH {
            self.buffer.wake.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.send_buffered();
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.send_buffered();
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self.buffer.resource.lock().unwrap() = resource.into();
    }
}
