//! `limits.max_body` as a request body streams: a cap on the whole body for
//! ordinary requests, and on each message for gRPC, whose client-streaming
//! and bidirectional calls are long-lived and may carry any number of
//! small messages.

use super::error::BodyTooLarge;

/// gRPC frames each message with a 1-byte flag and a 4-byte big-endian length.
const GRPC_PREFIX: usize = 5;

/// Counts body bytes against the configured limit.
#[derive(Debug, Clone)]
pub enum BodyLimit {
    /// At most `max` bytes in the whole body.
    Total {
        /// The limit.
        max: u64,
        /// Bytes seen so far.
        seen: u64,
    },
    /// At most `max` bytes in each gRPC message.
    PerGrpcMessage {
        /// The limit.
        max: u64,
        /// The prefix of the next message, as far as it has arrived.
        prefix: [u8; GRPC_PREFIX],
        /// Bytes of `prefix` filled.
        filled: usize,
        /// Bytes of the current message still to come.
        remaining: u64,
    },
}

impl BodyLimit {
    /// The limit for a request, by whether it is gRPC.
    pub fn new(max: u64, grpc: bool) -> Self {
        if grpc {
            BodyLimit::PerGrpcMessage {
                max,
                prefix: [0; GRPC_PREFIX],
                filled: 0,
                remaining: 0,
            }
        } else {
            BodyLimit::Total { max, seen: 0 }
        }
    }

    /// Accounts for one data frame; errors as soon as the limit is crossed.
    pub fn check(&mut self, mut data: &[u8]) -> Result<(), BodyTooLarge> {
        match self {
            BodyLimit::Total { max, seen } => {
                *seen += data.len() as u64;
                if *seen > *max {
                    return Err(BodyTooLarge { limit: *max });
                }
            }
            BodyLimit::PerGrpcMessage {
                max,
                prefix,
                filled,
                remaining,
            } => {
                while !data.is_empty() {
                    if *remaining > 0 {
                        let skip = data
                            .len()
                            .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                        *remaining -= skip as u64;
                        data = &data[skip..];
                        continue;
                    }
                    let take = (GRPC_PREFIX - *filled).min(data.len());
                    prefix[*filled..*filled + take].copy_from_slice(&data[..take]);
                    *filled += take;
                    data = &data[take..];
                    if *filled == GRPC_PREFIX {
                        *filled = 0;
                        let length =
                            u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
                        if u64::from(length) > *max {
                            return Err(BodyTooLarge { limit: *max });
                        }
                        *remaining = u64::from(length);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend(std::iter::repeat_n(7u8, len));
        out
    }

    #[test]
    fn total_limit_counts_every_byte() {
        let mut limit = BodyLimit::new(10, false);
        assert!(limit.check(&[0; 6]).is_ok());
        assert!(limit.check(&[0; 4]).is_ok());
        assert!(limit.check(&[0; 1]).is_err());
    }

    #[test]
    fn grpc_limit_applies_to_each_message_not_the_stream() {
        let mut limit = BodyLimit::new(100, true);
        for _ in 0..1000 {
            assert!(limit.check(&message(100)).is_ok());
        }
        assert!(limit.check(&message(101)).is_err());
    }

    #[test]
    fn grpc_prefixes_split_across_frames_are_read() {
        let mut limit = BodyLimit::new(100, true);
        let stream = [message(50), message(100), message(3)].concat();
        for byte in &stream {
            assert!(limit.check(std::slice::from_ref(byte)).is_ok());
        }
        let big = message(1000);
        assert!(limit.check(&big[..3]).is_ok(), "prefix incomplete");
        assert!(limit.check(&big[3..5]).is_err(), "length known");
    }
}
