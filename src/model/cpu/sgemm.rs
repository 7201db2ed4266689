//! Single-precision products `x · wᵀ` for the encoder's dense layers on the CPU, with the
//! weight `w` packed once, at load time, into the panels the micro-kernels stream (the
//! BLIS scheme: the packed weight block stays in L2, the packed input panel in L1, and a
//! register tile of MR rows × NR columns accumulates in vector registers). AVX-512 and
//! AVX2+FMA micro-kernels, picked at run time; the work is split over the cores in blocks
//! of rows × columns, and an optional epilogue (bias, gelu) runs on each block while it is
//! still in cache.
//!
//! Every output value is a sum over k in the same order whatever the thread count, so the
//! result does not depend on how many cores ran it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::pool::Shared;

/// The vector instruction set of a packed weight's micro-kernel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Isa {
    /// 512-bit vectors (AVX-512F): tiles of 14 rows × 32 columns.
    Avx512,
    /// 256-bit vectors with FMA (AVX2): tiles of 6 rows × 16 columns.
    Avx2,
}

impl Isa {
    /// Whether this CPU can run the micro-kernel (the instruction sets of the other kernels).
    pub fn supported(self) -> bool {
        super::kernels::supported(match self {
            Isa::Avx512 => super::kernels::Simd::Avx512,
            Isa::Avx2 => super::kernels::Simd::Avx2,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
        }
    }

    /// Rows of the register tile.
    fn mr(self) -> usize {
        match self {
            Isa::Avx512 => MR_512,
            Isa::Avx2 => MR_256,
        }
    }

    /// Columns of the register tile (two vectors).
    fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 => 16,
        }
    }
}

const MR_512: usize = 14;
const MR_256: usize = 6;
/// Depth of one pass over k: a packed input panel (MR × KC) stays in L1.
const KC: usize = 512;
/// Columns of one block of work: the packed weight block (NC × KC) stays in L2.
const NC: usize = 128;
/// Register tiles (of MR rows) in one block of work.
const MC_TILES: usize = 24;

/// 64-byte aligned f32 storage (so that every vector load of a packed panel is aligned to a
/// cache line).
#[derive(Clone)]
#[repr(C, align(64))]
struct Line([f32; 16]);

struct Aligned {
    lines: Vec<Line>,
    len: usize,
}

impl Aligned {
    fn zeros(len: usize) -> Self {
        let n = len.div_ceil(16);
        let mut lines: Vec<Line> = Vec::with_capacity(n);
        advise_huge_pages(lines.as_mut_ptr().cast(), n * std::mem::size_of::<Line>());
        lines.resize(n, Line([0.0; 16]));
        Aligned { lines, len }
    }
    fn as_slice(&self) -> &[f32] {
        // SAFETY: `lines` holds `lines.len() * 16 ≥ len` contiguous, initialised f32 values
        // (`Line` is `repr(C)` around `[f32; 16]`, so it has no padding).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }
    fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

/// Asks Linux to back the 2 MiB-aligned part of a large, not yet touched allocation with huge
/// pages (with transparent huge pages in `madvise` mode, the common default, it would
/// otherwise get 4 KiB pages): the weights stream through the micro-kernels, and with 4 KiB
/// pages every few panels cost a TLB miss. Only a hint; where it is refused nothing changes.
fn advise_huge_pages(p: *mut u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    #[cfg(target_os = "linux")]
    if bytes >= 2 * HUGE {
        let (start, end) = (
            (p as usize).next_multiple_of(HUGE),
            (p as usize + bytes) / HUGE * HUGE,
        );
        if end > start {
            // SAFETY: the range lies inside one live allocation; MADV_HUGEPAGE does not change
            // its contents or validity.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, bytes, HUGE);
}

/// What the product starts from: zero, or a bias row added to every row.
#[derive(Clone, Copy)]
pub enum Init<'a> {
    Zero,
    Bias(&'a [f32]),
}

/// A weight `[n, k]` (as checkpoints store dense layers) packed for `x · wᵀ`: panels of NR
/// output columns, each `[k][NR]`, the last one padded with zeros.
pub struct PackedWeight {
    isa: Isa,
    n: usize,
    k: usize,
    data: Aligned,
}

impl PackedWeight {
    /// Packs row-major `w` (`n` rows of `k`) for `isa`; `None` when this CPU lacks `isa` or
    /// `w` does not hold `n * k` values.
    pub fn new(w: &[f32], n: usize, k: usize, isa: Isa) -> Option<Self> {
        if !isa.supported() || n.checked_mul(k)? != w.len() {
            return None;
        }
        let nr = isa.nr();
        let mut data = Aligned::zeros(n.div_ceil(nr) * nr * k);
        // Panel j holds rows j*nr.. of `w`, transposed; panels are packed in parallel.
        let pack = |first: usize, part: &mut [f32]| {
            for (pi, panel) in part.chunks_exact_mut((k * nr).max(1)).enumerate() {
                let j0 = (first + pi) * nr;
                for c in 0..nr.min(n - j0) {
                    let row = &w[(j0 + c) * k..(j0 + c + 1) * k];
                    for (p, &v) in row.iter().enumerate() {
                        panel[p * nr + c] = v;
                    }
                }
            }
        };
        let panels = n.div_ceil(nr);
        let threads = super::pool::cores();
        let per = panels.div_ceil(threads).max(1);
        if threads > 1 && panels > 1 && n * k >= 1 << 16 {
            super::pool::for_each_chunk_mut(data.as_mut_slice(), per * k * nr, &|i, part| {
                pack(i * per, part)
            });
        } else if k > 0 {
            pack(0, data.as_mut_slice());
        }
        Some(PackedWeight { isa, n, k, data })
    }

    /// `[n, k]`.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// `x · wᵀ` (+ `init`) for row-major `x` of `m` rows of `k`, as `m` rows of `n`; then
    /// `post` on every run of finished output values (pieces of rows), if given, while they
    /// are in cache. Split over `threads` threads.
    pub fn matmul(
        &self,
        x: &[f32],
        m: usize,
        init: Init,
        post: Option<&(dyn Fn(&mut [f32]) + Sync)>,
        threads: usize,
    ) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k, "sgemm: input is not [{m}, {k}]");
        if let Init::Bias(b) = init {
            assert_eq!(b.len(), n, "sgemm: bias is not [{n}]");
        }
        if m == 0 || n == 0 || k == 0 {
            let mut c = vec![0f32; m * n];
            if let Init::Bias(b) = init {
                c.chunks_exact_mut(n.max(1))
                    .for_each(|r| r.copy_from_slice(b));
            }
            if let Some(post) = post {
                c.chunks_exact_mut(n.max(1)).for_each(|r| post(r));
            }
            return c;
        }
        PACKED_INPUT.with(|buf| {
            let mut buf = buf.borrow_mut();
            let len = m.div_ceil(self.isa.mr()) * k * self.isa.mr();
            if buf.len < len {
                *buf = Aligned::zeros(len);
            }
            self.run(x, m, &mut buf.as_mut_slice()[..len], init, post, threads)
        })
    }

    /// [`PackedWeight::matmul`] for `m, n, k ≥ 1`, packing `x` into `xp`: the threads first
    /// pack panels of `x`, then, once all are packed, compute blocks of the output.
    fn run(
        &self,
        x: &[f32],
        m: usize,
        xp: &mut [f32],
        init: Init,
        post: Option<&(dyn Fn(&mut [f32]) + Sync)>,
        threads: usize,
    ) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let (mr, nr) = (self.isa.mr(), self.isa.nr());
        let panels = m.div_ceil(mr);
        let mc = mr * MC_TILES;
        let (row_blocks, col_blocks) = (m.div_ceil(mc), n.div_ceil(NC));
        let tasks = row_blocks * col_blocks;
        // Every value of `c` is written by the first pass over k of its block (see `block`)
        // before anything reads it; the length is set once all are.
        let mut c: Vec<f32> = Vec::with_capacity(m * n);
        let out = Shared(c.as_mut_ptr());
        let packed = Shared(xp.as_mut_ptr());
        let (next_panel, next_task) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let threads = threads.max(1);
        // First every panel of `x` is packed, then the blocks of output are computed: two
        // rounds of parts on the kernel threads, each taking work off a shared counter.
        super::pool::run_parts(threads.min(panels), &|_| {
            loop {
                let p = next_panel.fetch_add(1, Ordering::Relaxed);
                if p >= panels {
                    break;
                }
                // SAFETY: panel p is the `k * mr` values from `p * k * mr` of `xp`, which
                // holds `panels * k * mr`; each panel is packed by the one part taking it.
                let panel =
                    unsafe { std::slice::from_raw_parts_mut(packed.ptr().add(p * k * mr), k * mr) };
                pack_panel(x, m, k, mr, p, panel);
            }
        });
        // SAFETY: all panels are written (the round above has returned), and nobody writes
        // `xp` again.
        let xp = unsafe { std::slice::from_raw_parts(packed.ptr(), panels * k * mr) };
        super::pool::run_parts(threads.min(tasks), &|_| {
            loop {
                let t = next_task.fetch_add(1, Ordering::Relaxed);
                if t >= tasks {
                    break;
                }
                let (rb, cb) = (t / col_blocks, t % col_blocks);
                let rows = rb * mc..(rb * mc + mc).min(m);
                let cols = cb * NC..(cb * NC + NC).min(n);
                // SAFETY: tasks cover disjoint blocks of the m × n output, each written by
                // the task that took it only; `c` outlives the parts.
                unsafe { self.block(xp, &out, m, rows, cols, init, post, mr, nr) };
            }
        });
        // SAFETY: the tasks wrote all m * n values (see above).
        unsafe { c.set_len(m * n) };
        c
    }

    /// One block of output: `rows` × `cols` (`rows` starts on a register tile), every pass
    /// over k, then `post`.
    ///
    /// # Safety
    /// `out` points to `m * n` f32 values of which nobody else touches this block meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        xp: &[f32],
        out: &Shared<f32>,
        m: usize,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        init: Init,
        post: Option<&(dyn Fn(&mut [f32]) + Sync)>,
        mr: usize,
        nr: usize,
    ) {
        let (n, k) = (self.n, self.k);
        let w = self.data.as_slice();
        let mut edge = [0f32; MR_512 * 32];
        let mut pc = 0;
        while pc < k {
            let kc = KC.min(k - pc);
            for i0 in rows.clone().step_by(mr) {
                let a = xp[(i0 / mr) * k * mr + pc * mr..].as_ptr();
                let tile_rows = mr.min(m - i0);
                for j0 in cols.clone().step_by(nr) {
                    let b = w[(j0 / nr) * k * nr + pc * nr..].as_ptr();
                    let tile_cols = nr.min(n - j0);
                    let bias = match init {
                        Init::Bias(bias) if pc == 0 => Some(&bias[j0..j0 + tile_cols]),
                        _ => None,
                    };
                    let dst = out.ptr().add(i0 * n + j0);
                    if tile_rows == mr && tile_cols == nr {
                        let mode = match bias {
                            _ if pc > 0 => Start::Load,
                            Some(b) => Start::Bias(b.as_ptr()),
                            None => Start::Zero,
                        };
                        self.kernel(kc, a, b, dst, n, mode);
                    } else {
                        // A partial tile: computed whole in `edge`, then its valid part copied.
                        let mut padded_bias = [0f32; 32];
                        if pc > 0 {
                            for i in 0..tile_rows {
                                for j in 0..tile_cols {
                                    edge[i * nr + j] = *dst.add(i * n + j);
                                }
                            }
                        }
                        let mode = match bias {
                            _ if pc > 0 => Start::Load,
                            Some(b) => {
                                padded_bias[..tile_cols].copy_from_slice(b);
                                Start::Bias(padded_bias.as_ptr())
                            }
                            None => Start::Zero,
                        };
                        self.kernel(kc, a, b, edge.as_mut_ptr(), nr, mode);
                        for i in 0..tile_rows {
                            for j in 0..tile_cols {
                                *dst.add(i * n + j) = edge[i * nr + j];
                            }
                        }
                    }
                }
            }
            pc += kc;
        }
        if let Some(post) = post {
            for i in rows {
                post(std::slice::from_raw_parts_mut(
                    out.ptr().add(i * n + cols.start),
                    cols.len(),
                ));
            }
        }
    }

    /// One register tile: `c[MR][NR]` (rows `ldc` apart) = start + Σ_p a[p][..] ⊗ b[p][..].
    #[inline]
    unsafe fn kernel(
        &self,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        start: Start,
    ) {
        #[cfg(target_arch = "x86_64")]
        match self.isa {
            Isa::Avx512 => x86::kernel_512(kc, a, b, c, ldc, start),
            Isa::Avx2 => x86::kernel_256(kc, a, b, c, ldc, start),
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (kc, a, b, c, ldc, start);
            unreachable!("packed weights exist only on x86-64")
        }
    }
}

/// Where a register tile starts: zero, a bias row, or the values already in the output.
#[derive(Clone, Copy)]
enum Start {
    Zero,
    Bias(*const f32),
    Load,
}

thread_local! {
    /// The packed input of the last product on this thread, kept for the next one (a fresh
    /// buffer would cost page faults on every product).
    static PACKED_INPUT: std::cell::RefCell<Aligned> = std::cell::RefCell::new(Aligned::zeros(0));
}

/// Panel `p` of row-major `x` (`m` rows of `k`): rows `p * mr..` as `[k][mr]`, rows past
/// `m` zero.
fn pack_panel(x: &[f32], m: usize, k: usize, mr: usize, p: usize, panel: &mut [f32]) {
    let r0 = p * mr;
    let rows = mr.min(m - r0);
    if rows == mr {
        // Written in order, read from mr rows at once.
        let src = &x[r0 * k..(r0 + mr) * k];
        for (q, out) in panel.chunks_exact_mut(mr).enumerate() {
            for (r, o) in out.iter_mut().enumerate() {
                *o = src[r * k + q];
            }
        }
    } else {
        panel.fill(0.0);
        for r in 0..rows {
            let row = &x[(r0 + r) * k..(r0 + r + 1) * k];
            for (q, &v) in row.iter().enumerate() {
                panel[q * mr + r] = v;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Start, MR_256, MR_512};
    use std::arch::x86_64::*;

    /// How many k steps ahead the micro-kernels prefetch their panels.
    const PREFETCH: usize = 16;

    /// Defines the micro-kernel `$name` for one vector width: a register tile of `$mr` rows ×
    /// two vectors of `$lanes` values, accumulated over `kc` steps.
    ///
    /// Safety of the kernel: the CPU has `$features`; `a` holds `kc * $mr` values, `b`
    /// `kc * 2 * $lanes` (aligned to the vector size), `c` a tile of `$mr` rows of
    /// `2 * $lanes` values `ldc` apart (and a bias start `2 * $lanes` values).
    macro_rules! micro_kernel {
        ($name:ident, $features:literal, $mr:expr, $lanes:expr,
         $zero:ident, $load:ident, $loadu:ident, $storeu:ident, $fma:ident, $splat:expr) => {
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(
                kc: usize,
                a: *const f32,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                start: Start,
            ) {
                const MR: usize = $mr;
                const L: usize = $lanes;
                let mut c0 = [$zero(); MR];
                let mut c1 = [$zero(); MR];
                match start {
                    Start::Zero => {}
                    Start::Bias(bias) => {
                        let (b0, b1) = ($loadu(bias), $loadu(bias.add(L)));
                        for i in 0..MR {
                            c0[i] = b0;
                            c1[i] = b1;
                        }
                    }
                    Start::Load => {
                        for i in 0..MR {
                            c0[i] = $loadu(c.add(i * ldc));
                            c1[i] = $loadu(c.add(i * ldc + L));
                        }
                    }
                }
                let (mut a, mut b) = (a, b);
                for _ in 0..kc {
                    // The panels stream in from L2 (the weights) and L1/L2 (the input): ask
                    // for the lines PREFETCH steps ahead (measured: +4-5 % on bert-base
                    // shapes). Prefetches never fault; `wrapping_add` keeps the address
                    // arithmetic defined past the end of a panel.
                    for line in 0..(2 * L * 4).div_ceil(64) {
                        _mm_prefetch::<_MM_HINT_T0>(
                            b.wrapping_add(PREFETCH * 2 * L + line * 16) as *const i8
                        );
                    }
                    _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(PREFETCH * MR) as *const i8);
                    let b0 = $load(b);
                    let b1 = $load(b.add(L));
                    for i in 0..MR {
                        let x = $splat(a.add(i));
                        c0[i] = $fma(x, b0, c0[i]);
                        c1[i] = $fma(x, b1, c1[i]);
                    }
                    a = a.add(MR);
                    b = b.add(2 * L);
                }
                for i in 0..MR {
                    $storeu(c.add(i * ldc), c0[i]);
                    $storeu(c.add(i * ldc + L), c1[i]);
                }
            }
        };
    }

    micro_kernel!(
        kernel_512,
        "avx512f",
        MR_512,
        16,
        _mm512_setzero_ps,
        _mm512_load_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_fmadd_ps,
        |p: *const f32| _mm512_set1_ps(*p)
    );
    micro_kernel!(
        kernel_256,
        "avx2,fma",
        MR_256,
        8,
        _mm256_setzero_ps,
        _mm256_load_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_fmadd_ps,
        |p: *const f32| _mm256_broadcast_ss(&*p)
    );
}

#[cfg(test)]
mod tests {
    use super::super::kernels::tests::noise;
    use super::*;

    /// One test per micro-kernel of `$check` (a `fn(Isa)`), named `…::path_avx512` and
    /// `…::path_avx2`. A kernel that the CPU which built the tests cannot run (see
    /// src/build_probe.rs) is reported as ignored, with the reason, not as passed.
    macro_rules! isa_paths {
        ($check:ident) => {
            mod $check {
                #[test]
                #[cfg_attr(
                    not(pelt_cpu_avx512),
                    ignore = "this CPU has no AVX-512F: the AVX-512 micro-kernel is not tested"
                )]
                fn path_avx512() {
                    super::on(super::Isa::Avx512, super::$check)
                }
                #[test]
                #[cfg_attr(
                    not(pelt_cpu_avx2),
                    ignore = "this CPU has no AVX2+FMA: the AVX2 micro-kernel is not tested"
                )]
                fn path_avx2() {
                    super::on(super::Isa::Avx2, super::$check)
                }
            }
        };
    }

    /// Runs `check` with `isa`, which the CPU must have (it had when the tests were built).
    fn on(isa: Isa, check: fn(Isa)) {
        assert!(
            isa.supported(),
            "{isa:?}: the CPU that built the tests has it, this one does not (rebuild here)"
        );
        check(isa);
    }

    isa_paths!(products_match_f64);
    fn products_match_f64(isa: Isa) {
        // Shapes around the tile and block sizes: partial tiles in both directions, k over
        // several passes (KC) and not a multiple of anything, one row, one column, k = 0.
        let shapes = [
            (1, 1, 1),
            (13, 37, 5),
            (29, 70, 2 * KC + 3),
            (MR_512 * MC_TILES + 1, NC + 17, 64),
            (100, 64, 777),
            (15, 33, 0),
        ];
        for &(m, n, k) in &shapes {
            let x = noise(m * k, 1);
            let w = noise(n * k, 2);
            let b = noise(n, 3);
            let p = PackedWeight::new(&w, n, k, isa).expect("supported");
            let double = |v: &mut [f32]| v.iter_mut().for_each(|x| *x *= 2.0);
            for (init, post) in [
                (Init::Zero, None),
                (Init::Bias(&b), None),
                (
                    Init::Bias(&b),
                    Some(&double as &(dyn Fn(&mut [f32]) + Sync)),
                ),
            ] {
                let got = p.matmul(&x, m, init, post, 3);
                let mut worst = 0f64;
                for i in 0..m {
                    for j in 0..n {
                        let mut s = match init {
                            Init::Zero => 0.0,
                            Init::Bias(b) => b[j] as f64,
                        };
                        for q in 0..k {
                            s += x[i * k + q] as f64 * w[j * k + q] as f64;
                        }
                        if post.is_some() {
                            s *= 2.0;
                        }
                        worst = worst.max((s - got[i * n + j] as f64).abs());
                    }
                }
                assert!(worst < 1e-4, "{isa:?} {m}x{n}x{k}: max |diff| {worst}");
            }
        }
    }

    isa_paths!(result_does_not_depend_on_the_thread_count);
    fn result_does_not_depend_on_the_thread_count(isa: Isa) {
        let (m, n, k) = (300, 200, 600);
        let x = noise(m * k, 4);
        let w = noise(n * k, 5);
        let p = PackedWeight::new(&w, n, k, isa).expect("supported");
        let one = p.matmul(&x, m, Init::Zero, None, 1);
        for t in [2, 3, 8] {
            assert!(
                one == p.matmul(&x, m, Init::Zero, None, t),
                "{isa:?}, {t} threads"
            );
        }
    }

    isa_paths!(wrong_sizes_are_refused);
    fn wrong_sizes_are_refused(isa: Isa) {
        assert!(PackedWeight::new(&[0.0; 5], 2, 3, isa).is_none());
    }
}
