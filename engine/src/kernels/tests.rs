//! Every available tier against the scalar specification, bit for bit: odd shapes and tails
//! (k across 0, 1, 3, 4, 5, …, 3072; m across 1..=9; n across 1..=49), misaligned slices, and
//! extreme values (all 255 × −128, all 255 × 127, alternating, random). A tier this CPU lacks is
//! reported as skipped, not failed.

use super::scalar::gemm_i8::gemm_u8i8_i32_ref;
use super::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[derive(Clone, Copy, Debug)]
enum Fill {
    Random,
    MaxNeg,
    MaxPos,
    Alternating,
}

fn fill(fill: Fill, m: usize, n: usize, k: usize, rng: &mut Rng) -> (Vec<u8>, Vec<i8>) {
    match fill {
        Fill::Random => (
            (0..m * k).map(|_| rng.next() as u8).collect(),
            (0..n * k).map(|_| rng.next() as i8).collect(),
        ),
        Fill::MaxNeg => (vec![255; m * k], vec![-128; n * k]),
        Fill::MaxPos => (vec![255; m * k], vec![127; n * k]),
        Fill::Alternating => (
            (0..m * k).map(|i| if i % 2 == 0 { 255 } else { 0 }).collect(),
            (0..n * k).map(|i| if i % 3 == 0 { -128 } else { 127 }).collect(),
        ),
    }
}

const KS: [usize; 17] = [0, 1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 255, 256, 384, 768, 1536, 3072];
const NS: [usize; 8] = [1, 3, 15, 16, 17, 32, 33, 49];

#[test]
fn packing_round_trips() {
    let mut rng = Rng(1);
    for &(n, k) in &[(1, 1), (17, 5), (16, 4), (33, 65)] {
        let b: Vec<i8> = (0..n * k).map(|_| rng.next() as i8).collect();
        let p = PackedB::pack(&b, n, k);
        for j in 0..n {
            for l in 0..k {
                assert_eq!(p.get(j, l), b[j * k + l]);
            }
        }
        assert_eq!(p.data().len(), n.div_ceil(16) * k.div_ceil(4) * 64);
    }
}

#[test]
fn every_tier_equals_the_specification() {
    let tiers = Kernels::all_available();
    for isa in [Isa::Neon, Isa::Avx2, Isa::Avx512Vnni] {
        if !tiers.iter().any(|t| t.isa() == isa) {
            eprintln!("skipped: this CPU lacks {}", isa.name());
        }
    }
    let mut rng = Rng(7);
    let mut cases = 0;
    for t in &tiers {
        for &k in &KS {
            for m in [1, 2, 3, 4, 5, 8, 9] {
                for &n in &NS {
                    // The large shapes only with random values, to keep the sweep quick.
                    let fills: &[Fill] = if k >= 768 && n > 17 {
                        &[Fill::Random]
                    } else {
                        &[Fill::Random, Fill::MaxNeg, Fill::MaxPos, Fill::Alternating]
                    };
                    for &f in fills {
                        let (a, b) = fill(f, m, n, k, &mut rng);
                        let mut want = vec![0i32; m * n];
                        gemm_u8i8_i32_ref(&a, m, k, &b, n, &mut want);
                        let pb = PackedB::pack(&b, n, k);
                        // Misaligned A: copy into a buffer at offsets 1..=3.
                        for off in [0usize, 1, 3] {
                            let mut buf = vec![0u8; off + a.len()];
                            buf[off..].copy_from_slice(&a);
                            let mut got = vec![i32::MIN; m * n];
                            t.gemm_u8i8_i32(&buf[off..], m, k, &pb, &mut got);
                            assert_eq!(
                                got,
                                want,
                                "{} m={m} n={n} k={k} {f:?} offset {off}",
                                t.isa().name()
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("{cases} cases over {:?}", tiers.iter().map(|t| t.isa().name()).collect::<Vec<_>>());
}

#[test]
fn writes_stay_inside_the_output() {
    // The n tail is stored with a mask: elements past m·n must be untouched.
    for t in Kernels::all_available() {
        let (m, n, k) = (3, 17, 9);
        let a = vec![1u8; m * k];
        let b = vec![1i8; n * k];
        let pb = PackedB::pack(&b, n, k);
        let mut c = vec![-7i32; m * n + 40];
        t.gemm_u8i8_i32(&a, m, k, &pb, &mut c);
        assert!(c[..m * n].iter().all(|&x| x == 9), "{}", t.isa().name());
        assert!(c[m * n..].iter().all(|&x| x == -7), "{} wrote past the output", t.isa().name());
    }
}

#[test]
fn extreme_k_does_not_overflow() {
    let k = MAX_K;
    let a = vec![255u8; k];
    let b = vec![-128i8; k];
    let pb = PackedB::pack(&b, 1, k);
    for t in Kernels::all_available() {
        let mut c = [0i32; 1];
        t.gemm_u8i8_i32(&a, 1, k, &pb, &mut c);
        assert_eq!(c[0] as i64, -(255 * 128 * k as i64), "{}", t.isa().name());
    }
}

#[test]
fn isa_names_parse_and_unknown_tiers_are_refused() {
    assert_eq!(Isa::parse("scalar"), Some(Isa::Scalar));
    assert_eq!(Isa::parse("x86_64/avx512vnni"), Some(Isa::Avx512Vnni));
    assert_eq!(Isa::parse("avx2"), Some(Isa::Avx2));
    assert_eq!(Isa::parse("sse9"), None);
    assert!(Kernels::for_isa(Isa::Scalar).is_some());
}
