//! Sending one OTLP request: gRPC (tonic, the generated OTLP service clients) or HTTP/protobuf
//! (a POST of the encoded message), with the configured headers and timeout.

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    metrics_service_client::MetricsServiceClient, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::config::{Protocol, Signal, SignalConfig};
use super::export::Payload;

/// Why a send failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Permanent(String),
}

#[derive(Debug)]
pub struct Transport {
    config: SignalConfig,
    /// gRPC only: one lazily connected channel, reconnected by tonic as needed.
    channel: Option<Channel>,
}

impl Transport {
    pub fn new(config: SignalConfig) -> Transport {
        let channel = match config.protocol {
            Protocol::Grpc => Endpoint::from_shared(config.endpoint.clone())
                .ok()
                .map(|e| {
                    e.connect_timeout(config.timeout)
                        .timeout(config.timeout)
                        .connect_lazy()
                }),
            Protocol::HttpProtobuf => None,
        };
        Transport { config, channel }
    }

    pub fn signal(&self) -> Signal {
        self.config.signal
    }

    pub fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    /// Sends; `Ok(n)` when accepted, `n` being the items the collector said it rejected.
    pub async fn send(&self, payload: &Payload) -> Result<u64, SendError> {
        match self.config.protocol {
            Protocol::Grpc => self.send_grpc(payload).await,
            Protocol::HttpProtobuf => {
                let mut body = match payload {
                    Payload::Metrics(r) => r.encode_to_vec(),
                    Payload::Traces(r) => r.encode_to_vec(),
                };
                if self.config.gzip {
                    use std::io::Write;
                    let mut encoder =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    encoder
                        .write_all(&body)
                        .and_then(|_| encoder.finish())
                        .map(|gz| body = gz)
                        .map_err(|e| SendError::Permanent(format!("gzip: {e}")))?;
                }
                let reply = tokio::time::timeout(self.config.timeout, self.post(body))
                    .await
                    .map_err(|_| {
                        SendError::Retryable(format!("no answer within {:?}", self.config.timeout))
                    })??;
                Ok(rejected(payload, &reply))
            }
        }
    }

    async fn send_grpc(&self, payload: &Payload) -> Result<u64, SendError> {
        let channel = self.channel.clone().ok_or_else(|| {
            SendError::Permanent(format!("{} is not a gRPC endpoint", self.config.endpoint))
        })?;
        let status_error = |status: tonic::Status| {
            use tonic::Code;
            let message = format!("gRPC {:?}: {}", status.code(), status.message());
            match status.code() {
                Code::Unavailable
                | Code::ResourceExhausted
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Cancelled
                | Code::OutOfRange
                | Code::DataLoss
                | Code::Unknown
                | Code::Internal => SendError::Retryable(message),
                _ => SendError::Permanent(message),
            }
        };
        match payload {
            Payload::Metrics(request) => {
                let request = self.grpc_request(request.clone())?;
                let mut client = MetricsServiceClient::new(channel);
                if self.config.gzip {
                    client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                let reply = client.export(request).await.map_err(status_error)?;
                Ok(reply
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_data_points.max(0) as u64))
            }
            Payload::Traces(request) => {
                let request = self.grpc_request(request.clone())?;
                let mut client = TraceServiceClient::new(channel);
                if self.config.gzip {
                    client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                let reply = client.export(request).await.map_err(status_error)?;
                Ok(reply
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_spans.max(0) as u64))
            }
        }
    }

    fn grpc_request<T>(&self, message: T) -> Result<tonic::Request<T>, SendError> {
        let mut request = tonic::Request::new(message);
        for (key, value) in &self.config.headers {
            let key = MetadataKey::from_bytes(key.as_bytes())
                .map_err(|e| SendError::Permanent(format!("header {key:?}: {e}")))?;
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|e| SendError::Permanent(format!("header value: {e}")))?;
            request.metadata_mut().insert(key, value);
        }
        request.set_timeout(self.config.timeout);
        Ok(request)
    }

    /// One POST over a fresh connection; returns the response body of a 2xx answer.
    async fn post(&self, body: Vec<u8>) -> Result<bytes::Bytes, SendError> {
        let url: hyper::Uri = self
            .config
            .endpoint
            .parse()
            .map_err(|e| SendError::Permanent(format!("{}: {e}", self.config.endpoint)))?;
        let host = url.host().unwrap_or("localhost").to_owned();
        let port = url.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| SendError::Retryable(format!("connecting to {host}:{port}: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Retryable(format!("HTTP handshake: {e}")))?;
        tokio::spawn(connection);
        let mut request = Request::post(url.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                hyper::header::CONTENT_ENCODING,
                if self.config.gzip { "gzip" } else { "identity" },
            )
            .header(
                hyper::header::USER_AGENT,
                concat!("msbd/", env!("CARGO_PKG_VERSION")),
            );
        for (key, value) in &self.config.headers {
            request = request.header(key.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| SendError::Permanent(format!("building the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Retryable(format!("sending: {e}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        let message = format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim());
        // The OTLP/HTTP specification's retryable answers.
        if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
            Err(SendError::Retryable(message))
        } else {
            Err(SendError::Permanent(message))
        }
    }
}

/// Items a 2xx OTLP/HTTP answer says were rejected (its partial success).
fn rejected(payload: &Payload, reply: &[u8]) -> u64 {
    match payload {
        Payload::Metrics(_) => ExportMetricsServiceResponse::decode(reply)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_data_points.max(0) as u64),
        Payload::Traces(_) => ExportTraceServiceResponse::decode(reply)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_spans.max(0) as u64),
    }
}
