//! Lease handles. A delivery tag is only meaningful on the channel that
//! received the delivery, so [`hookline_core::queue::Leased::lease`] carries
//! the generation of that channel in its high 16 bits and the delivery tag in
//! the low 48 bits. A lease of another generation is never acknowledged on
//! the current channel.

/// Largest delivery tag a lease can carry. The broker numbers deliveries
/// from 1 on each channel, so a channel reaches it only after 2^48
/// deliveries.
pub(crate) const MAX_DELIVERY_TAG: u64 = (1 << 48) - 1;

/// Packs a channel generation and a delivery tag of at most
/// [`MAX_DELIVERY_TAG`] into a lease handle.
pub(crate) fn encode(generation: u16, delivery_tag: u64) -> u64 {
    debug_assert!(delivery_tag <= MAX_DELIVERY_TAG);
    (u64::from(generation) << 48) | (delivery_tag & MAX_DELIVERY_TAG)
}

/// Splits a lease handle into its channel generation and delivery tag.
pub(crate) fn decode(lease: u64) -> (u16, u64) {
    let generation = u16::try_from(lease >> 48).unwrap_or(u16::MAX);
    (generation, lease & MAX_DELIVERY_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_generation_and_tag() {
        let cases = [(0, 1), (1, 42), (u16::MAX, MAX_DELIVERY_TAG), (7, 1 << 40)];
        for (generation, tag) in cases {
            assert_eq!(decode(encode(generation, tag)), (generation, tag));
        }
    }

    #[test]
    fn generations_do_not_collide() {
        assert_ne!(encode(1, 5), encode(2, 5));
    }
}
