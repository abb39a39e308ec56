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

#[derive(Debug)]
struct Buffer {
    spans: Mutex<Vec<SpanData>>,
    /// Ended spans held at most between two sends (`OTEL_BSP_MAX_QUEUE_SIZE`).
    capacity: usize,
    /// A batch is sent when this many spans wait (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`), or every
    /// `OTEL_BSP_SCHEDULE_DELAY`.
    batch: usize,
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
    pub fn start(exporter: Exporter, config: &super::OtlpConfig) -> QueueingSpanProcessor {
        let buffer = Arc::new(Buffer {
            spans: Mutex::new(Vec::new()),
            capacity: config.span_queue,
            batch: config.span_batch,
            resource: Mutex::new(ResourceAttributesWithSchema::default()),
            wake: tokio::sync::Notify::new(),
        });
        let processor = QueueingSpanProcessor {
            buffer: buffer.clone(),
            exporter: exporter.clone(),
        };
        let batcher = processor.clone();
        let delay = config.span_delay;
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(delay, batcher.buffer.wake.notified()).await;
                batcher.send_buffered();
            }
        });
        processor
    }

    /// Moves what is buffered into export requests of at most one batch each.
    pub fn send_buffered(&self) {
        let mut spans = std::mem::take(&mut *self.buffer.spans.lock().unwrap());
        while spans.len() > self.buffer.batch {
            let rest = spans.split_off(self.buffer.batch);
            self.send(spans);
            spans = rest;
        }
        if !spans.is_empty() {
            self.send(spans);
        }
    }

    fn send(&self, spans: Vec<SpanData>) {
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
        if spans.len() >= self.buffer.capacity {
            self.exporter.stats().add_dropped(1);
            return;
        }
        spans.push(span);
        if spans.len() >= self.buffer.batch {
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
