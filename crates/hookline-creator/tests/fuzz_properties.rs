//! The fuzz targets of `fuzz/` run over random inputs with proptest, so
//! that stable Rust and CI exercise them too. `cargo +nightly fuzz run
//! <target>` in `fuzz/` explores the same bodies with coverage guidance.

#[path = "../../../fuzz/src/targets.rs"]
#[allow(dead_code, unreachable_pub)]
mod targets;

use proptest::prelude::*;

/// Inputs that reach the interesting branches quickly, run before the
/// random ones.
const SEEDS: &[&[u8]] = &[
    b"",
    b"\x00",
    b"\xc0application/json\x00key-1\x00{\"order\":1}",
    b"\xc1application/xml\x00k\x00<a x=\"1\">&amp;</a>",
    b"\xc1text/xml\x00k\x00<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>",
    b"\x82\x00\x00\x02\x02a\x02\x00\x00\x00\x00NEW\x00",
    b"msg_1\x00v1,AAAA v1,!!! v2,x\x00{}",
    b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx",
    b"https://[::ffff:127.0.0.1]/hook",
    b"https://0x7f.1/",
    b"https://user:pw@hooks.example.com/",
    b"https://hooks.example.com:443/a/../b?c#d",
    b"\x00\x00\x00\x00\x01\xff\xff\xff\xff\x0f",
    // Found by cargo fuzz: `<!DOCTYPE` in an element name and in a
    // processing instruction, neither of which declares a DTD.
    b"<z<!DOCTYPEA/>\r",
    b"<?\t <!DOCTYPE</><?x?><a/>",
];

#[test]
fn seeds_pass_every_target() {
    for seed in SEEDS {
        targets::all(seed);
    }
}

/// Bytes that are mostly printable ASCII, with the separators and
/// prefixes the targets look for.
fn near_text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => proptest::collection::vec(32u8..127, 0..12),
        1 => Just(b"\x00".to_vec()),
        1 => Just(b"whsec_".to_vec()),
        1 => Just(b"https://".to_vec()),
        1 => Just(b"v1,".to_vec()),
        1 => Just(b"<a>".to_vec()),
        1 => Just(b"</a>".to_vec()),
        1 => Just(b"[::1]".to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn targets_hold_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        targets::all(&data);
    }

    #[test]
    fn targets_hold_on_near_text(data in near_text()) {
        targets::all(&data);
    }
}
