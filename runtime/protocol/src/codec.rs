//! Length-prefixed postcard frames: blocking helpers and an incremental decoder.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

use crate::MAX_FRAME_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed frame body")]
    Malformed(#[source] postcard::Error),
    #[error("i/o on the channel")]
    Io(#[from] io::Error),
}

/// Encodes `message` as one complete frame (length prefix included).
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut frame =
        postcard::to_extend(message, vec![0u8; 4]).expect("serialising into a Vec cannot fail");
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame
}

/// Decodes one frame body (without its length prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(body.len()));
    }
    postcard::from_bytes(body).map_err(FrameError::Malformed)
}

/// Writes one frame.
pub fn write_frame<W: Write, T: Serialize>(writer: &mut W, message: &T) -> Result<(), FrameError> {
    writer.write_all(&encode(message))?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream at a frame boundary.
pub fn read_frame<R: Read, T: DeserializeOwned>(reader: &mut R) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        match reader.read(&mut len[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    decode(&body).map(Some)
}

/// Accumulates bytes as they arrive and yields complete frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, if one is buffered. An error leaves the decoder unusable:
    /// the stream is out of sync and the connection should be dropped.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buffer[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(len));
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        let message = decode(&self.buffer[4..4 + len]);
        self.buffer.drain(..4 + len);
        message.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{FromAgent, Heartbeat, ToAgent};
    use crate::{ExecMode, ExecSpec, Stream};

    #[test]
    fn round_trips_through_blocking_and_incremental_readers() {
        let messages = vec![
            ToAgent::Exec {
                session: 3,
                spec: ExecSpec {
                    argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
                    env: vec![("A".into(), "b".into())],
                    workdir: Some("/tmp".into()),
                    mode: ExecMode::Pty { rows: 24, cols: 80 },
                },
            },
            ToAgent::Stdin {
                session: 3,
                data: (0..=255).collect(),
            },
            ToAgent::Shutdown { grace_ms: 10_000 },
        ];
        let mut wire = Vec::new();
        for m in &messages {
            write_frame(&mut wire, m).unwrap();
        }
        let mut reader = &wire[..];
        for m in &messages {
            assert_eq!(
                read_frame::<_, ToAgent>(&mut reader).unwrap().as_ref(),
                Some(m)
            );
        }
        assert!(read_frame::<_, ToAgent>(&mut reader).unwrap().is_none());

        let mut decoder = FrameDecoder::new();
        let mut decoded = Vec::new();
        for byte in &wire {
            decoder.push(std::slice::from_ref(byte));
            while let Some(m) = decoder.next_message::<ToAgent>().unwrap() {
                decoded.push(m);
            }
        }
        assert_eq!(decoded, messages);
    }

    #[test]
    fn rejects_oversized_and_truncated_frames() {
        let mut huge = ((MAX_FRAME_BYTES + 1) as u32).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(
            read_frame::<_, FromAgent>(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
        let mut decoder = FrameDecoder::new();
        decoder.push(&huge);
        assert!(matches!(
            decoder.next_message::<FromAgent>(),
            Err(FrameError::TooLarge(_))
        ));

        let frame = encode(&FromAgent::Output {
            session: 1,
            stream: Stream::Stderr,
            data: vec![1; 100],
        });
        let truncated = &frame[..frame.len() - 1];
        assert!(read_frame::<_, FromAgent>(&mut &truncated[..]).is_err());
    }

    #[test]
    fn garbage_body_is_an_error_not_a_panic() {
        let mut wire = 3u32.to_le_bytes().to_vec();
        wire.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            read_frame::<_, FromAgent>(&mut &wire[..]),
            Err(FrameError::Malformed(_))
        ));
        let hb = FromAgent::Heartbeat(Heartbeat {
            seq: 1,
            activity_seq: 2,
            active_sessions: 0,
            processes: 1,
        });
        assert_eq!(decode::<FromAgent>(&encode(&hb)[4..]).unwrap(), hb);
    }
}
