"""x @ w.T for 8- and 16-bit weights (trocr_np.quant.PackedWeight): a NumPy reference and a Numba kernel.

The reference dequantises the whole matrix and multiplies in BLAS. The kernel never builds the
float32 matrix: it walks the weight rows in order, one row at a time, converts each stored weight to
float32 in registers inside the dot products, and lets four input rows at a time share every
converted weight; all sums are float32, and the int8 scale multiplies each finished sum (it is one
per row). So the weights travel from memory in their stored bits (2 or 1 byte each) as *one
sequential stream* per worker, which the hardware prefetcher follows. That is what pays: the first
version took four weight rows at a time (each row read once for all input rows, like
`kernels.matmul_wt`), i.e. four interleaved streams of only 1-2 KB each, restarted every four rows;
the prefetcher never got ahead and the core waited on memory and computed in turn, 8-12 GB/s.
Row by row, one 50265 x 1024 bfloat16 matrix, 1 row, 1 core: 14.8 -> 4.9 ms (int8 10.6 -> 2.3 ms),
i.e. ~21 GB/s, the bandwidth OpenBLAS's float32 sgemv gets (benchmarks/bench_trocr.py has the
whole-model ratios). On that AMD VM software prefetch did not help further.

On an Intel Xeon VM (Sapphire Rapids class, 2026-12-02, shared: load 2-4) it does: there one core's
demand misses alone streamed a packed matrix at only ~6-8 GB/s (OpenBLAS's 1-thread sgemv: ~15),
so each row is read with the row PREFETCH_BYTES (16 KB) further on prefetched (`prefetcht2`,
kernels.prefetch), 1 thread, 4096 x 1024 out of cache: bf16 6.4 -> 9.5 GB/s, int8 5.6 -> 7.8;
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

With 2+ input rows and long weight rows (K > BLOCK_COLS: fc2, K = 4096), four input rows are 64 KB,
more than L1, and the row kernel re-read x from L2 for every weight row; `_matmul_blocks_packed`
takes BLOCK_ROWS (8) weight rows at a time, x 512 columns at a time, so that slice of x stays in L1
(4 rows, 1 thread, in a decode step: bf16 fc2 26 -> 16 ms a step, now what fc1 takes).

That is for decode steps (1 to 64 rows, SMALL_ROWS: a batch of lines times their beams); with more
rows (the one-off cross-attention K/V, 577 rows, a long prompt) the matrix is used often enough that
dequantising it for one BLAS GEMM is cheaper. Measured on one core, the kernel against that: 4096 x
1024 and 1024 x 4096, M = 16: 3-8 vs 24-33 ms; M = 64: 27-30 vs 36-39 ms; 50265 x 1024, M = 64:
237-251 vs 331-397 ms.
The output columns are split over the worker threads (ocr_base.threads), also for one row: here
there is no OpenBLAS sgemv to leave it to. With 2+ rows, one contiguous slice per worker, the first
on the calling thread (`run_parts`; one hand-off fewer), several matrices of one input in one
hand-off (`matmul_packed_many`: a layer's q/k/v); a decode step makes ~75 calls per token. With one
row the hand-off is a native task (ocr_base.threads.run_native: the worker never takes the GIL) and
the rows go in chunks of CHUNK_BYTES that the caller and the workers claim in turn (`_matvec_block`,
an atomic counter): a worker whose core another process holds leaves its share to the others
instead of keeping the caller waiting, and every output is the same float32 whoever computes it.
The matrices of a base token alone, 1 row, 2 threads, alternating in one process (Intel VM, load
1.5): bf16 25.2 -> 23.2 ms (18.0 -> 19.6 GB/s), int8 14.5 -> 13.3 (15.7 -> 17.2); chunks of 128 or
512 KB the same. Whole decode steps, base, 1 row, 2 threads, the old hand-offs (ThreadPoolExecutor,
static halves) against these, alternating in one process: per token (minimum of 36-45 steps) bf16
35.5 -> 33.9 ms, int8 26.2 -> 23.2 (load 0.1-0.5; float32 43.2), and bf16 33.5 -> 33.1, int8 23.5 ->
20.8 (load 1.5; float32 39.9); ocr_base/threads.py has the hand-offs alone and under load.

Conversions (exact):
  bfloat16  the bits are the top half of a float32: f32 bits = b << 16
  float16   Numba has no float16 type, so an LLVM intrinsic reads the bits as `half` and widens them
            (the CPU's own conversion, vcvtph2ps).
  int8      float32(q), the dot product then times scale[n], the row's scale
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ocr_base.threads import _void_ptr, n_workers, run_native, run_parts, split

from .kernels import _REDUCE_FM, _int32_bits_as_float32, prefetch_row
from .quant import dequantize

SMALL_ROWS = 64               # up to this many input rows the kernel streams the packed weights
PARALLEL_MIN_BYTES = 1 << 20  # packed bytes above which the output columns are split over the workers
PREFETCH_BYTES = 16 << 10     # how far ahead of the row being read the kernel prefetches (0: not at all)
BLOCK_COLS, BLOCK_ROWS = 512, 8  # with 2+ input rows and K > BLOCK_COLS: x taken 512 columns at a time
ONE_ROW_NATIVE = True         # one input row: hand the slices off as native tasks (ocr_base.threads.run_native)
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


@numba.njit(cache=True, inline="always")
def _dot4(x0, x1, x2, x3, w, kind):
    """(x0 . w, x1 . w, x2 . w, x3 . w) in float32, each stored weight converted once for all four
    input rows (inlined: the caller's fastmath lets LLVM vectorise the sums)."""
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for k in range(w.shape[0]):
        wk = _weight(w, k, kind)
        s0 += x0[k] * wk
        s1 += x1[k] * wk
        s2 += x2[k] * wk
        s3 += x3[k] * wk
    return s0, s1, s2, s3


@numba.njit(cache=True, inline="always")
def _dot1(x0, w, kind):
    """x0 . w in float32 (the rows left over after the fours)."""
    s = np.float32(0.0)
    for k in range(w.shape[0]):
        s += x0[k] * _weight(w, k, kind)
    return s


@numba.njit(cache=True, fastmath=_REDUCE_FM, nogil=True)
def _matmul_rows_packed(x, data, scale, kind, out, n0, n1, ahead):
    """out[:, n0:n1] = x @ dequantize(data[n0:n1]).T, one weight row at a time: rows n0 .. n1-1
    are read as one sequential stream, each converted in registers (from L1 after the first
    input row) while four input rows at a time share every converted weight; float32 sums, the
    int8 scale times each finished sum. ahead > 0: row n + ahead is prefetched while row n is used."""
    M, K = x.shape
    for n in range(n0, n1):
        w = data[n]
        if ahead > 0 and n + ahead < n1:
            prefetch_row(data[n + ahead])
        sc = scale[n] if kind == 2 else np.float32(1.0)
        m = 0
        while m + 4 <= M:
            s0, s1, s2, s3 = _dot4(x[m], x[m + 1], x[m + 2], x[m + 3], w, kind)
            out[m, n], out[m + 1, n], out[m + 2, n], out[m + 3, n] = s0 * sc, s1 * sc, s2 * sc, s3 * sc
            m += 4
        for r in range(m, M):
            out[r, n] = _dot1(x[r], w, kind) * sc


V = 16  # lanes of the one-row kernel's vectors (512 bits of float32), 4 of them per step


def _dot_v16(kind):
    """An intrinsic dot(x_addr, w_addr, n) -> float32: sum over the first 64 n elements of x (float32)
    times a stored weight row (bfloat16 bits / float16 / int8, before the int8 scale), written in
    LLVM IR with explicit 16-lane vectors: LLVM's own vectoriser picks 8 lanes on Intel server CPUs
    (module docstring), and one row is all conversion and FMA. Four accumulators hide the FMA
    latency; the lanes are summed pairwise at the end. Generic IR: a CPU without AVX-512 gets it
    as 8-lane halves."""
    @intrinsic
    def dot(typingctx, x_addr, w_addr, n):
        sig = types.float32(types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            xa, wa, nb = args
            intp, i32, f32 = xa.type, ir.IntType(32), ir.FloatType()
            vf = ir.VectorType(f32, V)
            stored = {"bfloat16": ir.IntType(16), "float16": ir.HalfType(), "int8": ir.IntType(8)}[kind]
            vw = ir.VectorType(stored, V)
            width = {"bfloat16": 2, "float16": 2, "int8": 1}[kind]
            name = f"llvm.fma.v{V}f32"
            fma = builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(vf, [vf] * 3), name)
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
                wv = builder.load(builder.inttoptr(builder.add(wa, builder.mul(k, const(width))), vw.as_pointer()),
                                  align=1)
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
    """_matmul_rows_packed for one input row: out[0, n0:n1] = x[0] @ dequantize(data[n0:n1]).T, each
    weight row by `_dot_v16`'s 16-lane kernel (the first 64 * (K // 64) weights), the rest here."""
    K = x.shape[1]
    nb, tail = K // (4 * V), K // (4 * V) * (4 * V)
    xa = x.ctypes.data
    for n in range(n0, n1):
        w = data[n]
        if ahead > 0 and n + ahead < data.shape[0]:  # also past n1: the next chunk (a dynamic split)
            prefetch_row(data[n + ahead])
        s = np.float32(0.0)
        if nb > 0:
            if kind == 0:
                s = _dot_bf16(xa, w.ctypes.data, nb)
            elif kind == 1:
                s = _dot_f16(xa, w.ctypes.data, nb)
            else:
                s = _dot_i8(xa, w.ctypes.data, nb)
        for k in range(tail, K):
            s += x[0, k] * _weight(w, k, kind)
        out[0, n] = s * (scale[n] if kind == 2 else np.float32(1.0))


@numba.njit(cache=True, fastmath=_REDUCE_FM, nogil=True)
def _matmul_blocks_packed(x, data, scale, kind, out, n0, n1, kc, rb, pf):
    """_matmul_rows_packed for several input rows and long weight rows (fc2: K = 4096, where four
    input rows are 64 KB, more than L1): blocks of `rb` weight rows, each taken kc columns at a
    time, so the kc-wide slice of x stays in L1 while every row of the block uses it. Partial sums
    per slice are added up in float32; pf: the next block's slice is prefetched meanwhile."""
    M, K = x.shape
    acc = np.zeros((rb, M), np.float32)
    for nb in range(n0, n1, rb):
        nr = min(rb, n1 - nb)
        acc[:] = 0
        for c0 in range(0, K, kc):
            c1 = min(K, c0 + kc)
            for i in range(nr):
                if pf and nb + rb + i < n1:
                    prefetch_row(data[nb + rb + i, c0:c1])
                w = data[nb + i, c0:c1]
                m = 0
                while m + 4 <= M:
                    s0, s1, s2, s3 = _dot4(x[m, c0:c1], x[m + 1, c0:c1], x[m + 2, c0:c1], x[m + 3, c0:c1], w, kind)
                    acc[i, m] += s0
                    acc[i, m + 1] += s1
                    acc[i, m + 2] += s2
                    acc[i, m + 3] += s3
                    m += 4
                for r in range(m, M):
                    acc[i, r] += _dot1(x[r, c0:c1], w, kind)
        for i in range(nr):
            sc = scale[nb + i] if kind == 2 else np.float32(1.0)
            for m in range(M):
                out[m, nb + i] = acc[i, m] * sc


_FIELDS = 11  # a one-row chunk: kind, x, K, data, N, scale, len(scale), out, n0, n1, ahead
CHUNK_BYTES = 128 << 10  # one row: the workers take the weight rows this many packed bytes at a time


@intrinsic
def _claim(typingctx, addr):
    """Atomically add 1 to the int64 at addr; returns the value before (the chunk claimed)."""
    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.atomic_rmw("add", ptr, ir.Constant(ir.IntType(64), 1), "seq_cst")
    return types.int64(types.intp), codegen


@numba.njit(cache=True, nogil=True)
def _matvec_block(job):
    """`_matvec_packed` over the chunks of a one-row call, described by addresses: job = [claimed,
    count, (kind, x, K, data, N, scale, len(scale), out, n0, n1, ahead) * count], int64 (x (1, K)
    float32, data (N, K) uint16 or int8, out (1, N) float32, all C-contiguous). Every thread that
    runs it takes the next unclaimed chunk until none is left, so a worker that starts late (its
    core taken by another process) leaves its share to the others instead of holding them up."""
    while True:
        j = _claim(job.ctypes.data)
        if j >= job[1]:
            return
        f = job[2 + j * _FIELDS:2 + (j + 1) * _FIELDS]
        kind, K, N = f[0], f[2], f[4]
        x = numba.carray(_void_ptr(f[1]), (1, K), np.float32)
        scale = numba.carray(_void_ptr(f[5]), (f[6],), np.float32)
        out = numba.carray(_void_ptr(f[7]), (1, N), np.float32)
        if kind == 2:
            _matvec_packed(x, numba.carray(_void_ptr(f[3]), (N, K), np.int8), scale, kind, out, f[8], f[9], f[10])
        else:
            _matvec_packed(x, numba.carray(_void_ptr(f[3]), (N, K), np.uint16), scale, kind, out, f[8], f[9], f[10])


@numba.cfunc(types.void(types.intp), cache=True)
def _matvec_task(addr):
    """_matvec_block of the job at addr, as a C function: what a worker runs without the GIL
    (ocr_base.threads.run_native)."""
    n = numba.carray(_void_ptr(addr), (2,), np.int64)[1]
    _matvec_block(numba.carray(_void_ptr(addr), (2 + n * _FIELDS,), np.int64))


def _matvec_job(x, ws, outs):
    """The job array of `_matvec_block` for x (1, K) times every matrix of ws, each matrix's
    output columns cut into chunks of ~CHUNK_BYTES; None where a matrix does not fit the layout."""
    rows = []
    K = x.shape[1]
    for w, out in zip(ws, outs):
        data = w.data.view(np.uint16) if w.kind == "float16" else w.data
        if not (data.flags.c_contiguous and data.dtype in (np.uint16, np.int8)):
            return None
        scale = w.scale if w.scale is not None else _NO_SCALE
        ahead = -(-PREFETCH_BYTES // (K * data.itemsize)) if PREFETCH_BYTES and K else 0
        N = w.shape[0]
        step = max(1, CHUNK_BYTES // max(1, K * data.itemsize))
        n0 = np.arange(0, N, step, dtype=np.int64)
        f = np.empty((len(n0), _FIELDS), np.int64)
        f[:] = (_KIND[w.kind], x.ctypes.data, K, data.ctypes.data, N, scale.ctypes.data, len(scale),
                out.ctypes.data, 0, 0, ahead)
        f[:, 8], f[:, 9] = n0, np.minimum(n0 + step, N)
        rows.append(f)
    f = np.concatenate(rows)
    return np.concatenate([np.array([0, len(f)], np.int64), f.ravel()])


def _rows_task(x, w, out):
    """fn(r0, r1): out[:, r0:r1] = x @ dequantize(w[r0:r1]).T, for one packed matrix and x (M, K)."""
    M, K = x.shape
    data = w.data.view(np.uint16) if w.kind == "float16" else w.data
    scale = w.scale if w.scale is not None else _NO_SCALE
    kind = _KIND[w.kind]
    if M >= 2 and K > BLOCK_COLS:
        return lambda r0, r1: _matmul_blocks_packed(x, data, scale, kind, out, r0, r1, BLOCK_COLS, BLOCK_ROWS,
                                                    PREFETCH_BYTES > 0)
    ahead = -(-PREFETCH_BYTES // (K * data.itemsize)) if PREFETCH_BYTES and K else 0
    if M == 1:
        return lambda r0, r1: _matvec_packed(x, data, scale, kind, out, r0, r1, ahead)
    return lambda r0, r1: _matmul_rows_packed(x, data, scale, kind, out, r0, r1, ahead)


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
    if M == 1 and parts > 1 and ONE_ROW_NATIVE:
        job = _matvec_job(x, ws, outs)
        if job is not None:  # the workers take chunks in native code, without the GIL
            run_native(_matvec_task.address, _matvec_block, [job] * parts)
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
