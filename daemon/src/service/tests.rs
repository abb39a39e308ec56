//! The service layer without root, supervisors or HTTP: a real store in a temporary home, and
//! the errors each operation gives, with the status code the routes answer with.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use msb_api::CreateSandboxRequest;
use msb_runtime::config::{RootfsSource, SandboxConfig};
use msb_runtime::lifecycle::SandboxStatus;
use msb_runtime::paths::MsbHome;

use super::{capacity, create, info, lifecycle};
use crate::config::DaemonConfig;
use crate::error::ApiError;
use crate::state::Daemon;
use crate::telemetry::Telemetry;

fn daemon(dir: &std::path::Path) -> Arc<Daemon> {
    let home = MsbHome::new(dir);
    std::fs::create_dir_all(home.sandboxes()).unwrap();
    let store = msb_store::Store::open(&home.database()).unwrap();
    let config = DaemonConfig::load_with(&home.daemon_config(), |_| None).unwrap();
    let telemetry = Telemetry::new(config.otlp.clone(), home.root());
    Daemon::new(
        home,
        store,
        "/bin/false".into(),
        "/bin/false".into(),
        "warn".into(),
        telemetry,
        config,
    )
}

fn request(name: &str, root: &std::path::Path) -> CreateSandboxRequest {
    CreateSandboxRequest {
        config: SandboxConfig {
            command: vec!["true".into()],
            cpus: Some(0.5),
            memory_mib: Some(64),
            rootfs: RootfsSource::Bind {
                path: root.to_owned(),
            },
            ..SandboxConfig::named(name)
        },
        start: false,
        attach: None,
    }
}

fn status(error: impl Into<ApiError>) -> StatusCode {
    error.into().into_response().status()
}

#[tokio::test]
async fn create_inspect_wait_and_remove_a_sandbox_that_never_ran() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let created = create::create_sandbox(&daemon, request("web", root.path()))
        .await
        .unwrap();
    assert_eq!(created.status, SandboxStatus::Created);
    assert!(created.runs.is_empty());
    assert_eq!(info::list(&daemon, false).unwrap().len(), 0, "not active");
    assert_eq!(info::list(&daemon, true).unwrap()[0].name, "web");
    // Waiting on a sandbox that was never started returns at once.
    let ending = lifecycle::wait(&daemon, "web").await.unwrap();
    assert_eq!(
        (ending.status, ending.exit_code),
        (SandboxStatus::Created, None)
    );
    // Nothing runs, so nothing is committed.
    let report = capacity::capacity_report(&daemon).unwrap();
    assert_eq!(
        (report.cpus_committed, report.memory_committed_bytes),
        (0.0, 0)
    );
    lifecycle::remove(&daemon, "web", false).await.unwrap();
    let gone = lifecycle::remove(&daemon, "web", false).await.unwrap_err();
    assert!(
        matches!(&gone, lifecycle::LifecycleError::Catalog(super::CatalogError::NotFound(n)) if n == "web")
    );
    assert_eq!(status(gone), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn each_refusal_is_typed_and_answered_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    create::create_sandbox(&daemon, request("web", root.path()))
        .await
        .unwrap();

    let taken = create::create_sandbox(&daemon, request("web", root.path()))
        .await
        .unwrap_err();
    assert_eq!(status(taken), StatusCode::CONFLICT);

    let bad_name = create::create_sandbox(&daemon, request("-bad", root.path()))
        .await
        .unwrap_err();
    assert!(matches!(bad_name, create::CreateError::Invalid(_)));
    assert_eq!(status(bad_name), StatusCode::BAD_REQUEST);

    let mut detached = request("other", root.path());
    detached.attach = Some(msb_api::AttachMode::Stream);
    let attach = create::create_sandbox(&daemon, detached).await.unwrap_err();
    assert!(matches!(
        attach,
        create::CreateError::Invalid(msb_api::requests::RequestError::AttachWithoutStart)
    ));
    assert_eq!(status(attach), StatusCode::BAD_REQUEST);
    assert!(
        info::info_by_name(&daemon, "other").is_err(),
        "nothing half-created"
    );

    let signal = lifecycle::kill(&daemon, "web", 99).await.unwrap_err();
    assert!(matches!(signal, lifecycle::LifecycleError::BadSignal(99)));
    assert_eq!(status(signal), StatusCode::BAD_REQUEST);

    // Killing what does not run is a transition the state machine refuses.
    let not_running = lifecycle::kill(&daemon, "web", 15).await.unwrap_err();
    assert!(matches!(
        not_running,
        lifecycle::LifecycleError::Transition(_)
    ));
    assert_eq!(status(not_running), StatusCode::CONFLICT);

    let missing = lifecycle::start(&daemon, "ghost").await.unwrap_err();
    assert_eq!(missing.to_string(), "no sandbox named \"ghost\"");
    assert_eq!(status(missing), StatusCode::NOT_FOUND);

    // A catalog row this msbd cannot read is a server error naming the sandbox.
    let id = daemon.sandbox("web").unwrap().id;
    daemon.store().set_status(&id, "Levitating").unwrap();
    let unreadable = info::info_by_name(&daemon, "web").unwrap_err();
    assert!(
        unreadable.to_string().contains("sandbox web"),
        "{unreadable}"
    );
    assert_eq!(status(unreadable), StatusCode::INTERNAL_SERVER_ERROR);
}
