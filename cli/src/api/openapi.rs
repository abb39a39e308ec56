//! The OpenAPI document, generated from the API types and the handlers' annotations.

use utoipa::OpenApi;

use crate::daemon::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "msbd API",
        description = "The msb daemon's API, served over $MSB_HOME/msbd.sock."
    ),
    paths(
        routes::server::status,
        routes::server::shutdown,
        routes::server::health,
        routes::sandboxes::list,
        routes::sandboxes::create,
        routes::sandboxes::inspect,
        routes::sandboxes::remove,
        routes::lifecycle::start,
        routes::lifecycle::stop,
        routes::lifecycle::kill,
        routes::lifecycle::wait,
        routes::logs::logs,
        routes::session::session,
        routes::metrics::list,
        routes::metrics::one,
        routes::metrics::stream,
        routes::metrics::capacity,
        routes::history::sandbox,
        routes::history::fleet,
        routes::history::sql,
        routes::history::export,
    ),
    components(schemas(
        msb_runtime::logs::LogEntry,
        msb_runtime::config::VolumeMount,
        msb_runtime::config::RootfsSource,
    ))
)]
pub struct ApiDoc;

/// The document as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    json.push('\n');
    json
}
