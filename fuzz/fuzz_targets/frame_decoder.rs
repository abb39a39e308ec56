//! Arbitrary bytes through every frame reader msb has: the incremental `FrameDecoder` and the
//! blocking `read_frame`, for each message type that crosses a channel. Neither may panic,
//! whatever arrives; and whatever decodes must survive an encode/decode round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use msb_protocol::agent::{FromAgent, ToAgent};
use msb_protocol::session::{ClientEvent, ClientRequest};
use msb_protocol::{decode, encode, read_frame, FrameDecoder};

/// Decodes `data` as a stream of `$ty` frames, pushed in chunks of `$chunk` bytes and read
/// blocking-style, checking that every decoded message round-trips.
macro_rules! exercise {
    ($ty:ty, $data:expr, $chunk:expr) => {{
        let mut decoder = FrameDecoder::new();
        'stream: for piece in $data.chunks($chunk) {
            decoder.push(piece);
            loop {
                match decoder.next_message::<$ty>() {
                    Ok(Some(message)) => round_trip!($ty, message),
                    Ok(None) => break,
                    // The decoder is out of sync after an error, as documented.
                    Err(_) => break 'stream,
                }
            }
        }

        let mut reader: &[u8] = $data;
        while let Ok(Some(message)) = read_frame::<_, $ty>(&mut reader) {
            round_trip!($ty, message);
        }
    }};
}

macro_rules! round_trip {
    ($ty:ty, $message:expr) => {{
        let message = $message;
        let frame = encode(&message);
        let again: $ty = decode(&frame[4..]).expect("an encoded message decodes");
        assert_eq!(again, message);
    }};
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the stream is split for the incremental decoder.
    let (chunk, stream) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first % 32) + 1, rest),
        None => (1, data),
    };
    exercise!(ToAgent, stream, chunk);
    exercise!(FromAgent, stream, chunk);
    exercise!(ClientRequest, stream, chunk);
    exercise!(ClientEvent, stream, chunk);
});
