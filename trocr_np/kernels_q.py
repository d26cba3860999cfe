"""x @ w.T for 8- and 16-bit weights (trocr_np.quant.PackedWeight): a NumPy reference and a Numba kernel.

The reference dequantises the whole matrix and multiplies in BLAS. The kernel never builds the
float32 matrix: it walks the weight rows in order (one at a time for one input row, in blocks of 16
for several), converts each stored weight to float32 in registers inside the dot products, and lets
several input rows share every converted weight (register tiles, below); all sums are float32, and
the int8 scale multiplies each finished sum (it is one per row). So the weights travel from memory
in their stored bits (2 or 1 byte each) as *one sequential stream* per worker, which the hardware
prefetcher follows. That is what pays: the first
version took four weight rows at a time (each row read once for all input rows, like
`kernels.matmul_wt`), i.e. four interleaved streams of only 1-2 KB each, restarted every four rows;
the prefetcher never got ahead and the core waited on memory and computed in turn, 8-12 GB/s.
Row by row, one 50265 x 1024 bfloat16 matrix, 1 row, 1 core: 14.8 -> 4.9 ms (int8 10.6 -> 2.3 ms),
i.e. ~21 GB/s, the bandwidth OpenBLAS's float32 sgemv gets (benchmarks/bench_trocr.py has the
whole-model ratios). On that AMD VM software prefetch did not help further.

On an Intel Xeon VM (Sapphire Rapids class, 2026-12-02, shared: load 2-4) it does: there one core's
demand misses alone streamed a packed matrix at only ~6-8 GB/s (OpenBLAS's 1-thread sgemv: ~15),
so each row was read with the row 16 KB further on prefetched (`prefetcht2`, kernels.prefetch;
now spread over the loop, below), 1 thread, 4096 x 1024 out of cache: bf16 6.4 -> 9.5 GB/s, int8 5.6 -> 7.8;
whole decode steps of the base model, 1 thread: bf16/f32 per token 0.84 -> 0.61, int8 0.66 -> 0.40.
The loops vectorise to conversions and FMAs with LLVM's four accumulators per sum; on AMD they are
16-lane AVX-512, but on this Intel CPU LLVM prefers 256-bit vectors (its tuning for the CPU), so
they are 8-lane ymm although the CPU has AVX-512. That costs: the same kernels compiled for zmm
(NUMBA_CPU_FEATURES = the host's features + ",-prefer-256-bit", a process-wide setting we do not
make) ran 4096 x 1024 out of cache, 1 thread, 1 row: bf16 9.3-9.8 -> 11.7-11.9 GB/s, int8 7.1-7.6
-> 9.8-10.2; 4 rows: bf16 5.1-5.7 -> 8.5, int8 5.0-5.8 -> 5.3-5.6. With four input rows the kernel
is bound by its FMAs (4 per weight, as float32's), not by memory.
So one input row (a greedy step of one line) has its own kernel, `_matvec_packed`, whose dot
product is written in LLVM IR with explicit 16-lane vectors (`_dot_v16`); every matrix of a base
decoder token, 1 row, alternating in one process on that Intel VM: bf16 34.2 -> 31.1 ms at 2 threads
(48.8 -> 42.7 at 1), int8 31.9 -> 26.8 (30.6 -> 27.3), i.e. 9-16% less; 13-15 GB/s bf16, 8.5 int8,
where the 72 hand-offs of the small 1024 x 1024 matrices weigh most. Its int8 loop is what one
would write by hand (checked with inspect_asm: vpmovsxbd, vcvtdq2ps, vfmadd on zmm, 2 x 4 blocks of
16 lanes a step); the prefetch distance hardly matters (same VM, 2026-12-02, load 1.4, the matrices
of a base token from the converted folder, 1 thread, 2 / 4 / 8 / 16 KB ahead: bf16 10.5 / 10.8 / 11.0
/ 10.9 GB/s, int8 9.4 / 10.1 / 10.2 / 10.0; 2 threads 17.1 / 16.6 / 18.2 / 18.9 and 15.6 / 16.2 /
16.4 / 15.6; none at all: 11.6 and 8.5 GB/s at 2 threads, against 15.1 and 13.0 at 16 KB).

With 2 to 64 input rows (beams, a batch of lines) the old row-by-row kernels (four input rows
sharing each converted weight, LLVM's 8-lane loops; x 512 columns at a time for K = 4096) were bound
by their FMAs: 4-row bf16 ~5-6 GB/s, and at 16 rows 8-21 GMAC/s against a peak of ~88 (a plain zmm
FMA loop here: 5.5 FMAs/ns). `_matmul_tiles_packed` is their replacement: register tiles written in
LLVM IR (`_tile_v16`) of up to 4 input rows x 4 weight rows (8 x 2 from 5 rows on), 16 zmm
accumulators, so each converted weight vector serves 4-8 rows and each x vector 2-4 weight rows;
blocks of TILE_RB (16) weight rows, x TILE_KC (1024) columns at a time. In L1 the tile loop runs at
51-59 GMAC/s (~65% of peak: the conversions share the two FMA ports). Several weight rows read at
once are interleaved streams again (see above), and prefetching the next block's rows in a burst per
block did not help (16384 x 1024 bf16, 4 rows, 1 thread: 4.5 ms with or without it, one run); a
prefetch beside every weight load, ~PREFETCH_BYTES on, does (another run: 6.4 ms without, 3.7 with,
4-32 rows ahead alike), as fast as the one-row kernel on one row of the same matrix (3.9 ms). Every
matrix of a base decoder step (the step's 76 calls, no attention), old vs new alternating in one
process, Intel Xeon VM (Emerald Rapids, 2 cores, shared with other jobs, load 0-1.5), ms per step: 4
rows bf16 34.7 -> 26.7 at 2 threads (75.7 -> 48.1 at 1), int8 29.3 -> 19.9 (75.0 -> 43.0); 16 rows
bf16 110 -> 55 (311 -> 152), int8 140 -> 59 (220 -> 104); 20 rows (a 20-line page, greedy) 2
threads, load ~3.4: bf16 402 -> 194, int8 407 -> 195. In bench_page's 'ours' run (20 lines, 16
tokens, 2 threads, load 3.6-4, old and new kernels swapped in one process) the packed matmuls of <=
64 rows took bf16 6.5 -> 3.2 s, int8 6.7 -> 2.7 s of the recognition (30-40 s at that load, mostly
the encoder). benchmarks/bench_trocr.py --configs base --dtype bfloat16 int8 --no-torch (same VM,
two runs, load 1-4.7): 4-row step bf16/f32 0.50 and 0.47, int8/f32 0.42 and 0.43 (were 0.70-0.80 and
0.54-0.62); beam 4 / greedy, which moved most with the load: bf16 1.80, 1.67, int8 1.41, 1.19
(float32's own 0.65, 1.88). Without AVX-512 (16 vector registers) the tiles are 8 lanes and half as
many weight rows (TILE_LANES, TILE_COLS; checked for equality under NUMBA_CPU_NAME=haswell, not
timed).

That is for decode steps (1 to 64 rows, SMALL_ROWS: a batch of lines times their beams); with more
rows (the one-off cross-attention K/V, 577 rows, a long prompt) the matrix is used often enough that
dequantising it for one BLAS GEMM is cheaper. Measured on one core, the old row kernel against that:
4096 x 1024 and 1024 x 4096, M = 16: 3-8 vs 24-33 ms; M = 64: 27-30 vs 36-39 ms; 50265 x 1024, M =
64: 237-251 vs 331-397 ms. The tile kernel (Intel VM, load ~3.7): M = 16: 1.3-5.6 vs 7.5-20 ms; M =
64: 6.5-6.8 vs 10-24 ms, so the switch could move above 64 rows (not measured further).
The output columns are split over the worker threads (ocr_base.threads), also for one row: here
there is no OpenBLAS sgemv to leave it to. The hand-off is a native task (ocr_base.threads.run_native:
the worker never takes the GIL), several matrices of one input in one hand-off (`matmul_packed_many`:
a layer's q/k/v; a decode step makes ~75 calls per token), the rows in chunks of CHUNK_BYTES (whole
tile blocks) that the caller and the workers claim in turn (`_packed_block`, an atomic counter): a
worker whose core another process holds leaves its share to the others instead of keeping the
caller waiting, and every output is the same float32 whoever computes it. (Where a matrix does not
fit that layout, one contiguous slice per worker, the first on the calling thread: `run_parts`.)
The matrices of a base token alone, 1 row, 2 threads, alternating in one process (Intel VM, load
1.5): bf16 25.2 -> 23.2 ms (18.0 -> 19.6 GB/s), int8 14.5 -> 13.3 (15.7 -> 17.2); chunks of 128 or
512 KB the same then. Whole decode steps, base, 1 row, 2 threads, the old hand-offs
(ThreadPoolExecutor, static halves) against these, alternating in one process: per token (minimum
of 36-45 steps) bf16 35.5 -> 33.9 ms, int8 26.2 -> 23.2 (load 0.1-0.5; float32 43.2), and bf16 33.5
-> 33.1, int8 23.5 -> 20.8 (load 1.5; float32 39.9); ocr_base/threads.py has the hand-offs alone
and under load.

2026-12-03 (Intel VM, family 6 model 167, load < 1), the same 97 matrices:
the one-row kernel's prefetch moved from a burst per row (each row's 16-32 lines at once, 16 KB
ahead) into the dot loop, one `prefetcht2` beside each 64-byte line's load, PREFETCH_BYTES (6 KB)
on, as the tile kernel does: bf16 21.6 -> 18.9 ms at 16 KB ahead, 17.0-18.0 at 4-6 KB (32 KB: 20.0;
prefetcht0 instead: 20.6-20.9; prefetchnta: 43), int8 11.2 -> 9.6; with that, chunks of 512
KB instead of 128 pay (a worker's stream restarts less often): bf16 16.8 -> 15.9, int8 8.6 -> 7.9
(256 KB between; 1 MB bf16 the same, int8 9.6; 2 MB both worse). So one row reads ~29 GB/s,
float32 sgemv's bandwidth (its 910 MB in 31 ms). The 2+ row calls went from `run_parts` to the
same native chunks: 4 rows bf16 27.0 -> 24.3 ms, int8 18.6 -> 15.4; 16 rows 57.9 -> 55.5 and 48.4
-> 44.6.

Conversions (exact):
  bfloat16  the bits are the top half of a float32: f32 bits = b << 16
  float16   Numba has no float16 type, so an LLVM intrinsic reads the bits as `half` and widens them
            (the CPU's own conversion, vcvtph2ps).
  int8      float32(q), the dot product then times scale[n], the row's scale
"""
from __future__ import annotations

import weakref

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ocr_base.threads import _void_ptr, n_workers, run_native, run_parts, split

from .kernels import _int32_bits_as_float32
from .quant import dequantize

SMALL_ROWS = 64               # up to this many input rows the kernel streams the packed weights
PARALLEL_MIN_BYTES = 1 << 20  # packed bytes above which the output columns are split over the workers
PREFETCH_BYTES = 6 << 10      # how far ahead of the row being read the kernel prefetches (0: not at all)
TILE_KC, TILE_RB = 1024, 16  # 2+ input rows: blocks of 16 weight rows, taken 1024 columns at a time
NATIVE = True                 # hand the chunks off as native tasks (ocr_base.threads.run_native)
TILE_AHEAD = 4                # 2+ rows, K in one slice: prefetch at least this many weight rows ahead
_KIND = {"bfloat16": 0, "float16": 1, "int8": 2}
_NO_SCALE = np.ones(1, np.float32)


def matmul_packed_ref(x, w):
    """x (M, K) float32 @ dequantize(w).T -> (M, N) float32."""
    return np.asarray(x, np.float32) @ dequantize(w).T


@intrinsic
def _f16_bits_to_f32(typingctx, h):
    """float16 bits (uint16) -> float32, exact: an LLVM bitcast to half and fpext, which is one
    vcvtph2ps (F16C / AVX-512) per vector of 8 or 16 where the CPU has it."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    return sig, codegen


@numba.njit(cache=True, inline="always")
def _weight(row, k, kind):
    """float32 value of stored weight row[k] (before the int8 scale). `kind` is the same for the
    whole call, so LLVM moves the branch out of the loops and vectorises each case on its own."""
    if kind == 0:
        return _int32_bits_as_float32(np.int32(row[k]) << 16)
    if kind == 1:
        return _f16_bits_to_f32(np.uint16(row[k]))
    return np.float32(row[k])


V = 16  # lanes of the one-row kernel's vectors (512 bits of float32), 4 of them per step


def _ir_vectors(builder, kind, lanes):
    """For the IR kernels: (<lanes x float>, <lanes x stored weight>, bytes per weight, llvm.fma)."""
    vf = ir.VectorType(ir.FloatType(), lanes)
    stored = {"bfloat16": ir.IntType(16), "float16": ir.HalfType(), "int8": ir.IntType(8)}[kind]
    name = f"llvm.fma.v{lanes}f32"
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vf, [vf] * 3), name)
    return vf, ir.VectorType(stored, lanes), {"bfloat16": 2, "float16": 2, "int8": 1}[kind], fma


def _dot_v16(kind):
    """An intrinsic dot(x_addr, w_addr, n, pf_off) -> float32: sum over the first 64 n elements of x
    (float32) times a stored weight row (bfloat16 bits / float16 / int8, before the int8 scale),
    each 64-byte line of weights loaded beside a prefetch pf_off bytes further on (0: that line
    itself, a no-op), written in LLVM IR with explicit 16-lane vectors: LLVM's own vectoriser picks
    8 lanes on Intel server CPUs (module docstring), and one row is all conversion and FMA. Four
    accumulators hide the FMA latency; the lanes are summed pairwise at the end. Generic IR: a CPU
    without AVX-512 gets it as 8-lane halves."""
    @intrinsic
    def dot(typingctx, x_addr, w_addr, n, pf_off):
        sig = types.float32(types.intp, types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            xa, wa, nb, pf = args
            intp, i8p, i32, f32 = xa.type, ir.IntType(8).as_pointer(), ir.IntType(32), ir.FloatType()
            vf, vw, width, fma = _ir_vectors(builder, kind, V)
            pfn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(),
                                                                                           [i8p, i32, i32, i32]))
            const = lambda v: ir.Constant(intp, v)  # noqa: E731
            entry, loop, done = builder.block, builder.append_basic_block("dot.k"), builder.append_basic_block("dot.end")
            builder.branch(loop)  # n >= 1
            builder.position_at_end(loop)
            b = builder.phi(intp)
            b.add_incoming(const(0), entry)
            acc = [builder.phi(vf) for _ in range(4)]
            for a in acc:
                a.add_incoming(ir.Constant(vf, None), entry)
            new = []
            for j in range(4):
                k = builder.add(builder.mul(b, const(4 * V)), const(j * V))
                xv = builder.load(builder.inttoptr(builder.add(xa, builder.mul(k, const(4))), vf.as_pointer()), align=4)
                wad = builder.add(wa, builder.mul(k, const(width)))
                if j * V * width % 64 == 0:  # one prefetch per 64-byte line: read, locality 1 (prefetcht2), data
                    hint = [ir.Constant(i32, v) for v in (0, 1, 1)]
                    builder.call(pfn, [builder.inttoptr(builder.add(wad, pf), i8p)] + hint)
                wv = builder.load(builder.inttoptr(wad, vw.as_pointer()), align=1)
                if kind == "bfloat16":   # the bits are a float32's top half
                    v32 = ir.VectorType(i32, V)
                    wf = builder.bitcast(builder.shl(builder.zext(wv, v32), ir.Constant(v32, [16] * V)), vf)
                elif kind == "float16":
                    wf = builder.fpext(wv, vf)
                else:
                    wf = builder.sitofp(wv, vf)
                new.append(builder.call(fma, [xv, wf, acc[j]]))
            b_next = builder.add(b, const(1))
            b.add_incoming(b_next, loop)
            for a, v in zip(acc, new):
                a.add_incoming(v, loop)
            builder.cbranch(builder.icmp_signed("<", b_next, nb), loop, done)
            builder.position_at_end(done)
            v, w = builder.fadd(builder.fadd(new[0], new[1]), builder.fadd(new[2], new[3])), V
            while w > 1:  # pairwise: lanes 0..w/2-1 plus lanes w/2..w-1
                h = w // 2
                lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), list(range(h))))
                hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), list(range(h, w))))
                v, w = builder.fadd(lo, hi), h
            return builder.extract_element(v, ir.Constant(i32, 0))
        return sig, codegen
    return dot


_dot_bf16, _dot_f16, _dot_i8 = _dot_v16("bfloat16"), _dot_v16("float16"), _dot_v16("int8")


@numba.njit(cache=True, nogil=True)
def _matvec_packed(x, data, scale, kind, out, n0, n1, ahead):
    """One input row (`_matmul_tiles_packed` takes 2+): out[0, n0:n1] = x[0] @ dequantize(data[n0:n1]).T,
    each weight row by `_dot_v16`'s 16-lane kernel (the first 64 * (K // 64) weights), the rest here."""
    K = x.shape[1]
    nb, tail = K // (4 * V), K // (4 * V) * (4 * V)
    xa = x.ctypes.data
    for n in range(n0, n1):
        w = data[n]
        # the weights `ahead` rows on (also past n1: the next chunk of a dynamic split), 0: the same line
        pf = ahead * K * data.itemsize if ahead > 0 and n + ahead < data.shape[0] else 0
        s = np.float32(0.0)
        if nb > 0:
            if kind == 0:
                s = _dot_bf16(xa, w.ctypes.data, nb, pf)
            elif kind == 1:
                s = _dot_f16(xa, w.ctypes.data, nb, pf)
            else:
                s = _dot_i8(xa, w.ctypes.data, nb, pf)
        for k in range(tail, K):
            s += x[0, k] * _weight(w, k, kind)
        out[0, n] = s * (scale[n] if kind == 2 else np.float32(1.0))


def _avx512():
    """Whether Numba compiles for a CPU with AVX-512 (32 vector registers of 16 float32): the host's
    features, or NUMBA_CPU_FEATURES where set; another NUMBA_CPU_NAME counts as without."""
    if numba.config.CPU_FEATURES:
        return "+avx512f" in numba.config.CPU_FEATURES
    if numba.config.CPU_NAME and numba.config.CPU_NAME != "host":
        return False
    from llvmlite import binding
    return bool(binding.get_host_cpu_features().get("avx512f", False))


# The multi-row kernel's register tile: up to TILE_ROWS input rows x (4 if r <= 4 else 2) weight rows
# of TILE_LANES-lane accumulators, 16 zmm. Without AVX-512 (16 ymm registers) 8 lanes and half as many
# weight rows, so that the 8 accumulators, weights and x stay in registers.
TILE_ROWS = 8
TILE_LANES, TILE_COLS = (16, 4) if _avx512() else (8, 2)


def _tile_cols(r):
    """weight rows of the register tile for r input rows."""
    return TILE_COLS if r <= 4 else TILE_COLS // 2


def _tile_v16(kind):
    """An intrinsic tile(r, x_addr, x_stride, w_addr, w_stride, nc, nb, acc_addr, acc_stride, pf_off,
    sum_addr) for the r (1..TILE_ROWS) input rows at x_addr (float32, x_stride bytes apart) and the
    C = _tile_cols(r) weight rows at w_addr (stored bits, w_stride bytes apart; rows nc.. alias row
    nc-1, their sums are garbage), over their first L nb columns (L = TILE_LANES): acc[i, c, :]
    (float32 (., acc_stride, L), the L lanes of each sum so far) plus this slice's lanes; stored back
    in acc, or with sum_addr != 0 (the last slice) their lanes added pairwise into sums[i, c] (float32
    (., acc_stride)). LLVM IR with explicit L-lane vectors (LLVM's own vectoriser picks 8 lanes on
    this Intel CPU, module docstring) and r x C accumulators, 16 zmm at 4 x 4 or 8 x 2 with AVX-512
    (8 ymm at 4 x 2 or 8 x 1 without): each converted weight vector serves r input rows and each
    loaded x vector C weight rows. Each weight load comes with a prefetch pf_off bytes further on
    (pf_off = 0: the line just loaded, a no-op), spread over the loop rather than a burst per row.
    Each sum is one L-lane accumulator over k in order: the same float32 for
    any r, nc, tile position or split (on one machine: L depends on it)."""
    @intrinsic
    def tile(typingctx, r, x_addr, x_stride, w_addr, w_stride, nc, nb, acc_addr, acc_stride, pf_off, sum_addr):
        sig = types.void(*[types.intp] * 11)

        def codegen(context, builder, signature, args):
            rv, xa, xs, wa, ws, ncv, nb, aa, ast, pf, sa = args
            intp, i8p, i32, f32 = xa.type, ir.IntType(8).as_pointer(), ir.IntType(32), ir.FloatType()
            L = TILE_LANES
            vf, vw, width, fma = _ir_vectors(builder, kind, L)
            pfn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(),
                                                                                           [i8p, i32, i32, i32]))
            const = lambda v: ir.Constant(intp, v)  # noqa: E731
            at = lambda addr, ty: builder.inttoptr(addr, ty.as_pointer())  # noqa: E731
            done = builder.append_basic_block("tile.end")
            switch = builder.switch(rv, done)
            for R in range(1, TILE_ROWS + 1):
                C = _tile_cols(R)
                start = builder.append_basic_block(f"tile.r{R}")
                switch.add_case(ir.Constant(intp, R), start)
                builder.position_at_end(start)
                last = builder.sub(ncv, const(1))
                wrow = []
                for c in range(C):  # rows past nc-1 read row nc-1 again
                    pick = builder.select(builder.icmp_signed("<", const(c), ncv), const(c), last)
                    wrow.append(builder.add(wa, builder.mul(pick, ws)))
                xrow = [builder.add(xa, builder.mul(const(i), xs)) for i in range(R)]
                loop, fin = builder.append_basic_block(f"tile.r{R}.k"), builder.append_basic_block(f"tile.r{R}.sum")
                builder.cbranch(builder.icmp_signed(">", nb, const(0)), loop, fin)
                builder.position_at_end(loop)
                b = builder.phi(intp)
                b.add_incoming(const(0), start)
                acc = [[builder.phi(vf) for _ in range(C)] for _ in range(R)]
                for row in acc:
                    for a in row:
                        a.add_incoming(ir.Constant(vf, None), start)
                k = builder.mul(b, const(L))
                wf = []
                for c in range(C):
                    wad = builder.add(wrow[c], builder.mul(k, const(width)))
                    hint = [ir.Constant(i32, v) for v in (0, 1, 1)]  # read, locality 1 (prefetcht2), data
                    builder.call(pfn, [builder.inttoptr(builder.add(wad, pf), i8p)] + hint)
                    wv = builder.load(at(wad, vw), align=1)
                    if kind == "bfloat16":   # the bits are a float32's top half
                        v32 = ir.VectorType(i32, L)
                        wf.append(builder.bitcast(builder.shl(builder.zext(wv, v32), ir.Constant(v32, [16] * L)), vf))
                    elif kind == "float16":
                        wf.append(builder.fpext(wv, vf))
                    else:
                        wf.append(builder.sitofp(wv, vf))
                new = []
                for i in range(R):
                    xv = builder.load(at(builder.add(xrow[i], builder.mul(k, const(4))), vf), align=4)
                    new.append([builder.call(fma, [xv, wf[c], acc[i][c]]) for c in range(C)])
                b_next = builder.add(b, const(1))
                b.add_incoming(b_next, loop)
                for i in range(R):
                    for c in range(C):
                        acc[i][c].add_incoming(new[i][c], loop)
                builder.cbranch(builder.icmp_signed("<", b_next, nb), loop, fin)
                builder.position_at_end(fin)
                sums = [[builder.phi(vf) for _ in range(C)] for _ in range(R)]  # zero if nb = 0
                for i in range(R):
                    for c in range(C):
                        sums[i][c].add_incoming(ir.Constant(vf, None), start)
                        sums[i][c].add_incoming(new[i][c], loop)
                keep, add_up = (builder.append_basic_block(f"tile.r{R}.{s}") for s in ("keep", "add"))
                vsum = []
                for i in range(R):
                    for c in range(C):  # the lanes so far: acc[i, c, :] + this slice's
                        ptr = at(builder.add(aa, builder.mul(builder.add(builder.mul(const(i), ast), const(c)),
                                                             const(4 * L))), vf)
                        vsum.append((i, c, ptr, builder.fadd(builder.load(ptr, align=4), sums[i][c])))
                builder.cbranch(builder.icmp_signed("==", sa, const(0)), keep, add_up)
                builder.position_at_end(keep)
                for i, c, ptr, v in vsum:
                    builder.store(v, ptr, align=4)
                builder.branch(done)
                builder.position_at_end(add_up)
                for i, c, ptr, v in vsum:
                    w = L
                    while w > 1:  # pairwise: lanes 0..w/2-1 plus lanes w/2..w-1
                        h = w // 2
                        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), list(range(h))))
                        hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), list(range(h, w))))
                        v, w = builder.fadd(lo, hi), h
                    j = builder.add(builder.mul(const(i), ast), const(c))
                    sp = at(builder.add(sa, builder.mul(j, const(4))), f32)
                    builder.store(builder.extract_element(v, ir.Constant(i32, 0)), sp, align=4)
                builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()
        return sig, codegen
    return tile


_tile_bf16, _tile_f16, _tile_i8 = _tile_v16("bfloat16"), _tile_v16("float16"), _tile_v16("int8")


@numba.njit(cache=True, nogil=True)
def _matmul_tiles_packed(x, data, scale, kind, out, n0, n1, kc, rb, ahead, gmax):
    """out[:, n0:n1] = x @ dequantize(data[n0:n1]).T for 2+ input rows (M <= SMALL_ROWS), by
    `_tile_v16`'s register tiles: groups of up to gmax (<= TILE_ROWS) input rows, 5 rows or more as
    one group x 2 weight rows, up to 4 x 4. Blocks of rb weight rows, each taken kc columns at a
    time; in a block and column slice each group of input rows goes over the block's tiles, so the
    group's x slice and the block's weight slice stay in L1 (M = 16: x is 64 KB at K = 1024).
    The columns past the last TILE_LANES of K are added here in order; float32 sums throughout, the int8
    scale times each finished sum. ahead > 0: the first group prefetches the weights `ahead` rows on
    (the other groups find them in L1). rb: a multiple of 4, so that the garbage sums of a tile cut
    short (nc < 4) land in the block's unused columns."""
    assert rb % 4 == 0
    M, K = x.shape
    acc = np.zeros((M, rb, TILE_LANES), np.float32)
    tot = np.zeros((M, rb), np.float32)
    isz = data.itemsize
    xa, xs, ws, aa, da, ta = x.ctypes.data, K * 4, K * isz, acc.ctypes.data, data.ctypes.data, tot.ctypes.data
    for nb0 in range(n0, n1, rb):
        nr = min(rb, n1 - nb0)
        acc[:] = 0
        tot[:] = 0
        for c0 in range(0, K, kc):
            c1 = min(K, c0 + kc)
            nv = (c1 - c0) // TILE_LANES
            last = c0 + kc >= K
            m = 0
            while m < M:
                r = min(gmax, M - m) if M - m > 4 else M - m
                pf = ahead * ws if m == 0 else 0
                cols = TILE_COLS if r <= 4 else TILE_COLS // 2  # _tile_cols(r)
                for t in range(0, nr, cols):
                    args = (r, xa + (m * K + c0) * 4, xs, da + ((nb0 + t) * K + c0) * isz, ws, min(cols, nr - t), nv,
                            aa + (m * rb + t) * 4 * TILE_LANES, rb, pf, ta + (m * rb + t) * 4 if last else 0)
                    if kind == 0:
                        _tile_bf16(*args)
                    elif kind == 1:
                        _tile_f16(*args)
                    else:
                        _tile_i8(*args)
                m += r
            for k in range(c0 + nv * TILE_LANES, c1):
                for i in range(nr):
                    wk = _weight(data[nb0 + i], k, kind)
                    for m in range(M):
                        tot[m, i] += x[m, k] * wk
        for i in range(nr):
            sc = scale[nb0 + i] if kind == 2 else np.float32(1.0)
            for m in range(M):
                out[m, nb0 + i] = tot[m, i] * sc


_FIELDS = 12  # a chunk of a job: kind, x, K, data, N, scale, len(scale), out, n0, n1, ahead, M
CHUNK_BYTES = 512 << 10  # the workers take the weight rows this many packed bytes at a time


@intrinsic
def _claim(typingctx, addr):
    """Atomically add 1 to the int64 at addr; returns the value before (the chunk claimed)."""
    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.atomic_rmw("add", ptr, ir.Constant(ir.IntType(64), 1), "seq_cst")
    return types.int64(types.intp), codegen


@numba.njit(cache=True, nogil=True)
def _rows_kernel(x, data, scale, kind, out, n0, n1, ahead):
    """out[:, n0:n1] for x (M, K), M <= SMALL_ROWS: the one-row kernel or the register tiles."""
    if x.shape[0] == 1:
        _matvec_packed(x, data, scale, kind, out, n0, n1, ahead)
    else:  # prefetch at least the next block where K is taken in slices
        ahead = max(ahead, TILE_RB if x.shape[1] > TILE_KC else TILE_AHEAD) if ahead > 0 else 0
        _matmul_tiles_packed(x, data, scale, kind, out, n0, n1, TILE_KC, TILE_RB, ahead, TILE_ROWS)


@numba.njit(cache=True, nogil=True)
def _packed_block(job):
    """`_rows_kernel` over the chunks of a call, described by addresses: job = [claimed, count,
    (kind, x, K, data, N, scale, len(scale), out, n0, n1, ahead, M) * count], int64 (x (M, K)
    float32, data (N, K) uint16 or int8, out (M, N) float32, all C-contiguous). Every thread that
    runs it takes the next unclaimed chunk until none is left, so a worker that starts late (its
    core taken by another process) leaves its share to the others instead of holding them up."""
    while True:
        j = _claim(job.ctypes.data)
        if j >= job[1]:
            return
        f = job[2 + j * _FIELDS:2 + (j + 1) * _FIELDS]
        kind, K, N, M = f[0], f[2], f[4], f[11]
        x = numba.carray(_void_ptr(f[1]), (M, K), np.float32)
        scale = numba.carray(_void_ptr(f[5]), (f[6],), np.float32)
        out = numba.carray(_void_ptr(f[7]), (M, N), np.float32)
        if kind == 2:
            _rows_kernel(x, numba.carray(_void_ptr(f[3]), (N, K), np.int8), scale, kind, out, f[8], f[9], f[10])
        else:
            _rows_kernel(x, numba.carray(_void_ptr(f[3]), (N, K), np.uint16), scale, kind, out, f[8], f[9], f[10])


@numba.cfunc(types.void(types.intp), cache=True)
def _packed_task(addr):
    """_packed_block of the job at addr, as a C function: what a worker runs without the GIL
    (ocr_base.threads.run_native)."""
    n = numba.carray(_void_ptr(addr), (2,), np.int64)[1]
    _packed_block(numba.carray(_void_ptr(addr), (2 + n * _FIELDS,), np.int64))


def _operands(w, K):
    """What the kernels read of a packed matrix w (N, K): (stored bits (float16 as uint16, which
    Numba can index), int8 scales or _NO_SCALE, _KIND code, rows to prefetch ahead)."""
    data = w.data.view(np.uint16) if w.kind == "float16" else w.data
    scale = w.scale if w.scale is not None else _NO_SCALE
    ahead = -(-PREFETCH_BYTES // (K * data.itemsize)) if PREFETCH_BYTES and K else 0
    return data, scale, _KIND[w.kind], ahead


_CHUNKS = {}  # id(w) -> (weakref to w, (K, CHUNK_BYTES, PREFETCH_BYTES), w's chunk table)


def _chunk_table(w, K):
    """The rows of `_packed_block`'s job for one matrix w (N, K), the output columns cut into chunks
    of ~CHUNK_BYTES (whole tile blocks), with x's and out's addresses and M (fields 1, 7, 11) left 0;
    None where w does not fit the layout. Made once per matrix (and setting) and kept while w lives:
    a decode step makes ~75 calls per token, and building the table each time cost as much as a
    hand-off."""
    hit, setting = _CHUNKS.get(id(w)), (K, CHUNK_BYTES, PREFETCH_BYTES)
    if hit is not None and hit[0]() is w and hit[1] == setting:
        return hit[2]
    data, scale, kind, ahead = _operands(w, K)
    if not (data.flags.c_contiguous and data.dtype in (np.uint16, np.int8)):
        return None
    N = w.shape[0]
    step = -(-max(1, CHUNK_BYTES // max(1, K * data.itemsize)) // TILE_RB) * TILE_RB
    n0 = np.arange(0, N, step, dtype=np.int64)
    f = np.empty((len(n0), _FIELDS), np.int64)
    f[:] = (kind, 0, K, data.ctypes.data, N, scale.ctypes.data, len(scale), 0, 0, 0, ahead, 0)
    f[:, 8], f[:, 9] = n0, np.minimum(n0 + step, N)
    key = id(w)  # the table holds w's addresses (its data and scales): it goes when w does
    _CHUNKS[key] = (weakref.ref(w, lambda _, key=key: _CHUNKS.pop(key, None)), setting, f)
    return f


def _packed_job(x, ws, outs):
    """The job array of `_packed_block` for x (M, K) times every matrix of ws (into outs), from
    their chunk tables; None where a matrix does not fit the layout."""
    tables = [_chunk_table(w, x.shape[1]) for w in ws]
    if any(t is None for t in tables):
        return None
    n = sum(len(t) for t in tables)
    job = np.empty(2 + n * _FIELDS, np.int64)
    job[:2] = 0, n
    rows, i = job[2:].reshape(-1, _FIELDS), 0
    for t, out in zip(tables, outs):
        r = rows[i:i + len(t)]
        r[:] = t
        r[:, 1], r[:, 7], r[:, 11] = x.ctypes.data, out.ctypes.data, x.shape[0]
        i += len(t)
    return job


def _rows_task(x, w, out):
    """fn(r0, r1): out[:, r0:r1] = x @ dequantize(w[r0:r1]).T, for one packed matrix and x (M, K)."""
    data, scale, kind, ahead = _operands(w, x.shape[1])
    return lambda r0, r1: _rows_kernel(x, data, scale, kind, out, r0, r1, ahead)


def matmul_packed_many(x, ws):
    """[matmul_packed(x, w) for w in ws] for matrices of the same K (a layer's q/k/v projections),
    in one hand-off to the workers: worker i takes the i-th slice of every matrix's output columns.
    x (M, K), ws: PackedWeight (N_j, K) -> [(M, N_j) float32]"""
    M = x.shape[0]
    if M > SMALL_ROWS:
        return [matmul_packed_ref(x, w) for w in ws]
    x = np.ascontiguousarray(x, np.float32)
    outs = [np.empty((M, w.shape[0]), np.float32) for w in ws]
    parts = n_workers() if sum(w.nbytes for w in ws) >= PARALLEL_MIN_BYTES else 1  # one part: run here
    if parts > 1 and NATIVE:
        job = _packed_job(x, ws, outs)
        if job is not None:  # the workers take chunks in native code, without the GIL
            run_native(_packed_task.address, _packed_block, [job] * parts)
            return outs
    tasks = [(_rows_task(x, w, out), split(w.shape[0], parts)) for w, out in zip(ws, outs)]

    def part(i):
        for fn, cuts in tasks:
            if i < len(cuts):  # a matrix of fewer rows than parts has fewer slices
                fn(*cuts[i])
    run_parts(part, list(range(parts)))
    return outs


def matmul_packed(x, w):
    """Fast matmul_packed_ref: x (M, K) @ dequantize(w).T -> (M, N) float32 (module docstring)."""
    return matmul_packed_many(x, [w])[0]
