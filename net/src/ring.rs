//! Frames, their recycling pool and the two bounded rings between the guest's device and the
//! stack. Named from the guest's view: `tx` carries what the guest sent, `rx` what it receives.
//!
//! Pushing onto a full ring never waits: the transmit side drops the frame and counts it; the
//! stack checks for room in the receive ring before producing a TCP segment (backpressure) and
//! drops and counts datagrams.

use crossbeam_queue::ArrayQueue;

use crate::counters::NetCounters;

/// One Ethernet frame in a buffer sized for the largest frame, reused through [`FramePool`].
#[derive(Debug)]
pub(crate) struct Frame {
    buf: Box<[u8]>,
    len: usize,
}

impl Frame {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The whole buffer, to read a frame into; then [`Frame::set_len`].
    pub(crate) fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The first `len` bytes, to build a frame in.
    pub(crate) fn prepare(&mut self, len: usize) -> &mut [u8] {
        self.len = len.min(self.buf.len());
        &mut self.buf[..self.len]
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len());
    }
}

/// Recycles frame buffers so the data path does not allocate per frame. Keeps at most
/// `retain` idle buffers; beyond that a returned frame is freed.
#[derive(Debug)]
pub(crate) struct FramePool {
    idle: ArrayQueue<Frame>,
    frame_bytes: usize,
}

impl FramePool {
    pub(crate) fn new(frame_bytes: usize, retain: usize) -> Self {
        FramePool {
            idle: ArrayQueue::new(retain.max(1)),
            frame_bytes,
        }
    }

    pub(crate) fn get(&self) -> Frame {
        self.idle.pop().unwrap_or_else(|| Frame {
            buf: vec![0; self.frame_bytes].into_boxed_slice(),
            len: 0,
        })
    }

    pub(crate) fn put(&self, mut frame: Frame) {
        frame.len = 0;
        let _ = self.idle.push(frame);
    }

    pub(crate) fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }
}

/// The two rings and the pool they share.
#[derive(Debug)]
pub(crate) struct Rings {
    pub(crate) tx: ArrayQueue<Frame>,
    pub(crate) rx: ArrayQueue<Frame>,
    pub(crate) pool: FramePool,
}

impl Rings {
    pub(crate) fn new(tx_frames: usize, rx_frames: usize, frame_bytes: usize) -> Self {
        Rings {
            tx: ArrayQueue::new(tx_frames.max(1)),
            rx: ArrayQueue::new(rx_frames.max(1)),
            pool: FramePool::new(frame_bytes, 256),
        }
    }

    /// Device side: queues a frame the guest sent; a full ring drops it and counts the drop.
    pub(crate) fn push_from_guest(&self, frame: Frame, counters: &NetCounters) -> bool {
        let bytes = frame.len as u64;
        match self.tx.push(frame) {
            Ok(()) => {
                NetCounters::add(&counters.tx_bytes, bytes);
                NetCounters::inc(&counters.tx_packets);
                true
            }
            Err(frame) => {
                NetCounters::inc(&counters.drops_tx_ring_full);
                self.pool.put(frame);
                false
            }
        }
    }

    /// Stack side: queues a datagram frame for the guest; a full ring drops it and counts it.
    pub(crate) fn push_to_guest(&self, frame: Frame, counters: &NetCounters) -> bool {
        match self.rx.push(frame) {
            Ok(()) => true,
            Err(frame) => {
                NetCounters::inc(&counters.drops_rx_ring_full);
                self.pool.put(frame);
                false
            }
        }
    }

    /// Publishes the occupancy gauges.
    pub(crate) fn publish_occupancy(&self, counters: &NetCounters) {
        NetCounters::set(&counters.tx_ring_frames, self.tx.len() as u64);
        NetCounters::set(&counters.rx_ring_frames, self.rx.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(rings: &Rings, len: usize) -> Frame {
        let mut f = rings.pool.get();
        f.prepare(len).fill(7);
        f
    }

    #[test]
    fn full_rings_drop_and_count_without_waiting() {
        let counters = NetCounters::default();
        let rings = Rings::new(4, 2, 128);
        for _ in 0..10 {
            rings.push_from_guest(frame(&rings, 100), &counters);
        }
        for _ in 0..3 {
            rings.push_to_guest(frame(&rings, 60), &counters);
        }
        rings.publish_occupancy(&counters);
        let s = counters.snapshot();
        assert_eq!(
            (s.tx_packets, s.tx_bytes, s.drops_tx_ring_full),
            (4, 400, 6)
        );
        assert_eq!(s.drops_rx_ring_full, 1);
        assert_eq!((s.tx_ring_frames, s.rx_ring_frames), (4, 2));
        // Draining makes room again.
        while let Some(f) = rings.tx.pop() {
            assert_eq!(f.as_slice(), &[7; 100][..]);
            rings.pool.put(f);
        }
        assert!(rings.push_from_guest(frame(&rings, 1), &counters));
        assert_eq!(counters.snapshot().drops_tx_ring_full, 6);
    }

    #[test]
    fn frames_are_recycled_and_clamped() {
        let pool = FramePool::new(64, 2);
        let mut f = pool.get();
        assert_eq!(f.prepare(1000).len(), 64);
        f.set_len(10);
        assert_eq!(f.as_slice().len(), 10);
        let ptr = f.buffer_mut().as_ptr();
        pool.put(f);
        let g = pool.get();
        assert_eq!((g.buf.as_ptr(), g.as_slice().len()), (ptr, 0));
        assert_eq!(pool.frame_bytes(), 64);
    }
}
