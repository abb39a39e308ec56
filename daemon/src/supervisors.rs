//! msbd's side of the supervisor socket: control requests and the watch connection.

use std::path::Path;

use msb_protocol::session::{ClientEvent, ClientRequest, Control};
use msb_protocol::FrameError;
use msb_runtime::framing::{read_frame, write_frame};
use tokio::net::UnixStream;

/// Sends one control request. `Ok(None)`: the supervisor closed the connection without an
/// answer, which for `Stop` means it is gone, as asked.
pub async fn control(socket: &Path, control: Control) -> Result<Option<ClientEvent>, FrameError> {
    let mut stream = UnixStream::connect(socket).await?;
    write_frame(&mut stream, &ClientRequest::Control(control)).await?;
    match read_frame(&mut stream).await {
        Ok(reply) => Ok(reply),
        Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a watch connection: it yields `RecordChanged` on every run-record change and ends
/// when the supervisor exits.
pub async fn watch(socket: &Path) -> Result<UnixStream, FrameError> {
    let mut stream = UnixStream::connect(socket).await?;
    write_frame(&mut stream, &ClientRequest::Watch).await?;
    Ok(stream)
}
