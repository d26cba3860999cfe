"""int8 x int8 matrix products for the encoder side: activations quantised per row at run time.

The encoder is compute-bound (a page of 20 lines is 20 ViT passes of 577-row GEMMs), so 8-bit
*weights* alone buy it nothing: BLAS wants float32. What pays is 8-bit *arithmetic*: AVX-512 VNNI's
`vpdpbusd` does 64 byte multiply-adds per instruction into 16 int32 sums, where a float32 FMA does
16. So an int8 encoder matrix (quant.PackedWeight, kind "int8", from `convert --dtype int8
--quantize-encoder`), and in such a folder the decoder's cross-attention K/V projections too (they
read the encoder's 577 rows once per image: quant.int8_encoder), is applied as ONNX Runtime's
dynamic quantisation does (ONNX's
DynamicQuantizeLinear: unsigned 8-bit, asymmetric), but per input row rather than per tensor:

    lo[m] = min(0, min_k x[m, k]),  hi[m] = max(0, max_k x[m, k])
    s_x[m] = (hi[m] - lo[m]) / 255                     (an all-zero row: s_x = 1)
    z[m] = round(-lo[m] / s_x[m])                      (the zero point, in [0, 255]: 0.0 is exact)
    u[m, k] = clip(round(x[m, k] / s_x[m]) + z[m], 0, 255)   (float32 division, ties to even)
    y[m, n] = (sum_k (u[m, k] - z[m]) q_w[n, k]) * s_x[m] * s_w[n]  (+ bias)

i.e. y = fake_quant(x) @ dequantize(w).T: the reference `matmul_i8_ref` computes exactly that in
float32 BLAS, and a torch model with the same quantise-dequantise on each encoder Linear's input is
the parity reference (tests/test_kernels_i8.py, tests/test_quantized.py). Asymmetric, because on
the bundled model symmetric max-abs rows (s = max|x| / 127) agreed with float32 on 72% of greedy
token positions and moved CER by +0.87 points, asymmetric ones on 81% and -0.26 (200 held-out
lines; int8 weights with float32 activations: 90%, +0.19): the GELU outputs that fc2 reads are
nearly all >= -0.17, so half of a symmetric range goes unused. The integer sums are exact (|sum| <
2^31 for K < 66,000), so the kernel differs from the reference only by float32 rounding of the
final product. Machines without AVX-512 VNNI run the reference itself: same numbers, float32 speed.

The kernel (`_gemm_rows`): the weights are repacked per layer, just before it runs, into panels of
NR = 32 output columns, each panel `(K/4, 32, 4)`: for every 4 consecutive k, the 32 columns' 4
bytes side by side, one 128-byte line = two zmm registers, the layout vpdpbusd reads (unsigned
activation bytes times signed weight bytes); the zero point's share, z[m] * sum_k q_w[n, k], is
subtracted once per output. A tile of MR = 8 rows x 32 columns keeps its
16 accumulators in registers for the whole K loop (`_tile_vnni`, written in LLVM IR since Numba has
no vector types): per 4 k, two 64-byte weight loads, 8 broadcasts of 4 activation bytes, 16
vpdpbusd. Row blocks of MB = 96 rows keep their activations in L2 while every panel passes.
Measured on one core of a Xeon (Emerald Rapids), M = 2400, K = 768, N = 3072, quantisation and
epilogue included: 210-250 GMAC/s, against 52-77 for OpenBLAS's float32 sgemm on the same core;
tiles of 12 x 32, 8 x 48, 6 x 64 and blocks of 48 or 192 rows measured within 2% of this one (16 x 16:
15% slower).

Where the CPU has AMX (Intel Sapphire Rapids and later: amx-tile, amx-int8) and Linux grants the
process its tile registers (`amx_ready`), `_tile_amx` runs instead: eight tile registers of 16 rows
x 64 bytes, and tdpbusd multiplies a 16 x 64 block of unsigned activation bytes by a 64 x 16 block
of signed weights into 16 x 16 int32 sums, 16384 multiply-adds per instruction (vpdpbusd: 64). Two
activation tiles (32 rows) x two weight tiles (the panel's two halves) make four sum tiles, 32 x
NR, per 64 k; the same panels serve both kernels (a panel line holds 16 columns x 4 bytes twice:
a tile row stride of 128 bytes), with K zero-padded to 64. Same integer sums, same epilogue: the
two kernels agree bit for bit (tests/test_kernels_i8.py). Measured, one core of that Xeon, M = 2308
(4 crops): without the epilogue 560-990 GMAC/s; whole products (quantisation and epilogue
included) 1.5-2.2x the VNNI tile (benchmarks/bench_int8_gemm.py). ONNX Runtime 1.32's MLAS int8
GEMM (AMX as well, on this CPU) was still 1.4-2x faster in that run on a loaded machine; the
difference is outside the tile: our per-row quantisation (0.5-0.7 ns a value, ~10-25% of a
product) and the epilogue, which was then still scalar (below; not re-measured with AMX since).

fc1 is applied as the encoder needs it (matmul_i8's act= and quantized=): bias and GELU in the
epilogue while the tile is in L1 (kernels.gelu32 / relu32, so bias_act_'s numbers), and each finished
block of rows quantised for fc2 while it is in L2, instead of three more passes over a (M, 3072)
float32 array in memory: fc1 alone 18.4 ms, with a separate bias + GELU + quantisation 33.5 ms,
fused 27.7 ms (one core, M = 2308). The epilogue is one branch-free loop per case (`_epilogue`): as
a loop with the activation called on each tile row's slice it stayed scalar, and on an AMD EPYC VM
(Zen 4: VNNI, no AMX; one core, M = 2308, 2026-12-02) it cost more than the products' own tail:
768 -> 768 9.5 -> 7.4 ms (143 -> 184 GMAC/s; ONNX Runtime's MLAS 7.8 ms), fc1 with GELU and fc2's
quantisation 63.7 -> 36.7 ms (MLAS, without the GELU: 29.3); the whole int8 encoder, 16 crops, 2
threads: 5.2 -> 4.2 s, with the GELU's Horner steps as FMAs (kernels.fma64).
"""
from __future__ import annotations

import ctypes
import functools
import platform
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ocr_base.threads import n_workers, run_parts, split

from .kernels import ACT_CODE, _int32_bits_as_float32, bias_act_, gelu32, prefer_512, relu32

MR, NR = 8, 32   # tile: rows x output columns (NR = 2 zmm of 16 int32)
MB = 96          # rows per block: MB * K activation bytes stay in L2 while all panels pass
KALIGN = 64      # K is zero-padded to this (AMX reads 64 bytes of k per tile row; VNNI needs 4)
AMX_ROWS = 32    # an AMX block: 2 x 2 tiles of 16 rows x 16 int32 = 32 rows x NR columns


def _host_has_vnni() -> bool:
    """Whether the code Numba generates here may use AVX-512 VNNI (the CPU it targets has it)."""
    from numba.core import config
    if config.CPU_NAME:  # NUMBA_CPU_NAME set (e.g. "generic" for portable caches): its features only
        return "+avx512vnni" in (config.CPU_FEATURES or "")
    import llvmlite.binding as llvm
    f = llvm.get_host_cpu_features()
    return bool(f.get("avx512vnni") and f.get("avx512bw") and f.get("avx512f"))


HAVE_VNNI = _host_has_vnni()


def _host_has_amx() -> bool:
    """Whether the code Numba generates here may use AMX's int8 tiles (amx-tile + amx-int8)."""
    from numba.core import config
    if config.CPU_NAME:
        return "+amx-int8" in (config.CPU_FEATURES or "") and "+amx-tile" in (config.CPU_FEATURES or "")
    import llvmlite.binding as llvm
    f = llvm.get_host_cpu_features()
    return bool(HAVE_VNNI and f.get("amx-tile") and f.get("amx-int8"))


HAVE_AMX = _host_has_amx()


@functools.cache
def amx_ready() -> bool:
    """AMX is compiled in and Linux lets this process use it. The tile registers (8 KB of state) are
    off until a process asks for them: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), once,
    for all its threads (Linux >= 5.16). Refused or unavailable: the VNNI kernel runs instead."""
    if not HAVE_AMX or platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18
        return libc.syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


# --------------------------------------------------------------------------- the numbers (references)

def quantize_rows_ref(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, K) float32 -> (u (M, K) uint8, s_x (M,) float32, z (M,) int32): asymmetric per row
    (module docstring); x ~ (u - z) * s_x."""
    x = np.asarray(x, np.float32)
    zeros = np.zeros(len(x), np.float32)
    lo = np.minimum(x.min(axis=1), 0) if x.shape[1] else zeros
    hi = np.maximum(x.max(axis=1), 0) if x.shape[1] else zeros
    s = np.where(hi > lo, (hi - lo) / np.float32(255), np.float32(1)).astype(np.float32)
    z = np.rint(-lo / s).astype(np.float32)
    u = np.clip(np.rint(x / s[:, None]) + z[:, None], 0, 255)
    return u.astype(np.uint8), s, z.astype(np.int32)


def matmul_i8_ref(x: np.ndarray, q_w: np.ndarray, s_w: np.ndarray) -> np.ndarray:
    """x (M, K) float32, q_w (N, K) int8, s_w (N,) -> (M, N) float32 = fake_quant(x) @ (q_w * s_w).T"""
    u, s, z = quantize_rows_ref(x)
    x_dq = (u.astype(np.float32) - z[:, None].astype(np.float32)) * s[:, None]
    return x_dq @ (q_w.astype(np.float32) * np.asarray(s_w, np.float32)[:, None]).T


# --------------------------------------------------------------------------- packed weights

@dataclass(frozen=True)
class I8Panels:
    """An int8 (N, K) matrix q_w with its scales s_w, and its copy in the kernel's layout for one
    layer's run (None where the CPU has no VNNI: the reference route reads q_w itself).

    q: (N, K) int8;  scale: (N,) float32;  panels: (ceil(N/NR), K4, NR, 4) int8, K4 = Kp / 4
    (Kp: K rounded up to KALIGN), zero-padded;  wsum: (NP * NR,) int32, sum_k q_w[n, k] (times z[m]:
    the zero point's share)."""
    q: np.ndarray
    scale: np.ndarray
    panels: np.ndarray | None
    wsum: np.ndarray | None

    @property
    def shape(self):
        return self.q.shape


def pack_i8(q_w: np.ndarray, s_w: np.ndarray) -> I8Panels:
    """(N, K) int8 + (N,) scales -> I8Panels (the layout `_tile_vnni` reads)."""
    s_w = np.asarray(s_w, np.float32)
    if not HAVE_VNNI:
        return I8Panels(q_w, s_w, None, None)
    N, K = q_w.shape
    panels = np.empty((-(-N // NR), -(-K // KALIGN) * KALIGN // 4, NR, 4), np.int8)
    wsum = np.empty(panels.shape[0] * NR, np.int32)
    _pack_panels(q_w, panels, wsum)
    return I8Panels(q_w, s_w, panels, wsum)


def pack_i8_ref(q_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What `_pack_panels` makes, in NumPy: (panels, wsum) of the zero-padded matrix."""
    N, K = q_w.shape
    Np, Kp = -(-N // NR) * NR, -(-K // KALIGN) * KALIGN
    w = np.zeros((Np, Kp), np.int8)
    w[:N, :K] = q_w
    panels = np.ascontiguousarray(w.reshape(Np // NR, NR, Kp // 4, 4).transpose(0, 2, 1, 3))
    return panels, w.sum(axis=1, dtype=np.int32)


@numba.njit(cache=True, nogil=True)
def _pack_panels(q_w, panels, wsum):
    """pack_i8_ref into preallocated arrays, in one pass (NumPy's 4-d transpose copy took ~4 ns a byte)."""
    N, K = q_w.shape
    NP, K4 = panels.shape[0], panels.shape[1]
    for jp in range(NP):
        for c in range(NR):
            n = jp * NR + c
            total = 0
            for k4 in range(K4):
                for t in range(4):
                    k = 4 * k4 + t
                    v = q_w[n, k] if n < N and k < K else np.int8(0)
                    panels[jp, k4, c, t] = v
                    total += np.int32(v)
            wsum[n] = total


# --------------------------------------------------------------------------- the kernel

@intrinsic
def _tile_vnni(typingctx, c_addr, a_addr, lda, b_addr, k4):
    """c (MR, NR) int32 <- sum over k4 groups of 4 bytes: a rows (unsigned, row stride lda bytes)
    times one panel (k4, NR, 4) signed bytes, with vpdpbusd; k4 >= 1. Addresses are plain integers.
    Where the CPU lacks VNNI this compiles to nothing (the caller never takes that branch)."""
    sig = types.void(types.intp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        if not HAVE_VNNI:
            return context.get_dummy_value()
        c_addr, a_addr, lda, b_addr, k4 = args
        intp, i32 = c_addr.type, ir.IntType(32)
        v16 = ir.VectorType(i32, 16)
        nv = NR // 16
        name = "llvm.x86.avx512.vpdpbusd.512"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v16, [v16] * 3), name)
        const = lambda v: ir.Constant(intp, v)  # noqa: E731
        entry, loop, done = builder.block, builder.append_basic_block("tile.k"), builder.append_basic_block("tile.end")
        builder.branch(loop)
        builder.position_at_end(loop)
        k = builder.phi(intp)
        k.add_incoming(const(0), entry)
        acc = [[builder.phi(v16) for _ in range(nv)] for _ in range(MR)]
        for row in acc:
            for p in row:
                p.add_incoming(ir.Constant(v16, None), entry)
        b = builder.inttoptr(builder.add(b_addr, builder.mul(k, const(NR * 4))), v16.as_pointer())
        bv = [builder.load(builder.gep(b, [const(j)]), align=1) for j in range(nv)]
        a_k = builder.add(a_addr, builder.mul(k, const(4)))
        new = []
        for r in range(MR):  # broadcast row r's 4 bytes at k to all 16 lanes
            a32 = builder.load(builder.inttoptr(builder.add(a_k, builder.mul(const(r), lda)), i32.as_pointer()), align=1)
            av = builder.shuffle_vector(builder.insert_element(ir.Constant(v16, ir.Undefined), a32, ir.Constant(i32, 0)),
                                        ir.Constant(v16, ir.Undefined), ir.Constant(v16, None))
            new.append([builder.call(fn, [acc[r][j], av, bv[j]]) for j in range(nv)])
        k_next = builder.add(k, const(1))
        k.add_incoming(k_next, loop)
        for r in range(MR):
            for j in range(nv):
                acc[r][j].add_incoming(new[r][j], loop)
        builder.cbranch(builder.icmp_signed("<", k_next, k4), loop, done)
        builder.position_at_end(done)
        c = builder.inttoptr(c_addr, v16.as_pointer())
        for r in range(MR):
            for j in range(nv):
                builder.store(new[r][j], builder.gep(c, [const(r * nv + j)]), align=1)
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _quantize_rows(x, x_bits, u, s, z):
    """x (M, K) float32 (x_bits: the same memory as int32) -> u (M, Kp) uint8 (padding columns 0),
    s (M,) float32, z (M,) int32: quantize_rows_ref's numbers, the same float32 division and rounding.
    lo and hi come from integer maxima of the bits, which vectorise (a float min/max does not: NaN
    order): as signed int32, the largest bits are the largest positive float (or 0: hi = max(0, ...));
    as unsigned, every negative float (sign bit set) is above every positive one, and the largest is
    the most negative float (lo = min(0, ...)). Both maxima stay 32-bit: Numba widens int32
    arithmetic to int64, which halved the lanes of an earlier xor-key version."""
    prefer_512()
    M, K = x.shape
    for m in range(M):
        row, bits, out = x[m], x_bits[m], u[m]
        kmax = np.int32(0)     # the bits of 0.0: hi >= 0
        umax = np.uint32(0)
        for k in range(K):
            kmax = max(kmax, bits[k])
            umax = max(umax, np.uint32(bits[k]))
        hi = _int32_bits_as_float32(kmax)
        lo = _int32_bits_as_float32(np.int32(umax)) if umax >= np.uint32(0x80000000) else np.float32(0.0)
        sm = (hi - lo) / np.float32(255.0) if hi > lo else np.float32(1.0)
        zm = np.rint(-lo / sm)
        s[m], z[m] = sm, np.int32(zm)
        for k in range(K):
            q = np.rint(row[k] / sm) + zm
            out[k] = np.uint8(min(max(q, np.float32(0.0)), np.float32(255.0)))
        for k in range(K, out.shape[0]):
            out[k] = np.uint8(0)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _epilogue(tile, out, m, rows, n0, nn, s_x, z, wsum, s_w, bias, act):
    """out[m:m+rows, n0:n0+nn] = act((tile - z * wsum) * s_x * s_w + bias): the integer sums of one
    tile, (rows, NR) int32, made float32 (module docstring's last line), then the activation while
    they are in L1: the numbers bias_act_ would make (no bias: zeros). One loop per activation, with
    no branch or call inside, so that LLVM vectorises it: with the activation applied afterwards to
    each tile row's slice (kernels.act_row_) it stayed scalar, 3.6 ns an output for fc1's GELU on
    the AMD VM (module docstring)."""
    for r in range(rows):
        i, sr, zr = m + r, s_x[m + r], z[m + r]
        if act == 1:
            for c in range(nn):
                out[i, n0 + c] = gelu32(_dq(tile[r, c], zr, wsum[n0 + c], sr, s_w[n0 + c]) + bias[n0 + c])
        elif act == 2:
            for c in range(nn):
                out[i, n0 + c] = relu32(_dq(tile[r, c], zr, wsum[n0 + c], sr, s_w[n0 + c]) + bias[n0 + c])
        else:
            for c in range(nn):
                out[i, n0 + c] = _dq(tile[r, c], zr, wsum[n0 + c], sr, s_w[n0 + c]) + bias[n0 + c]


@numba.njit(cache=True, inline="always")
def _dq(t, zr, ws, sr, sw):
    """One output's float32 value from its integer sum t: (t - z * wsum) * (s_x * s_w)."""
    return np.float32(t - zr * ws) * (sr * sw)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gemm_rows(u, s_x, z, panels, wsum, s_w, bias, act, out, requant, bits, u2, s2, z2):
    """out (M, N) float32 = act(((u - z[:, None]) @ q_w.T) * s_x[:, None] * s_w + bias), with
    `_tile_vnni`. u (M, Kp) uint8, panels (NP, K4, NR, 4) int8 (I8Panels). requant: also quantise
    each finished block of rows (bits: out as int32) into u2, s2, z2 (_quantize_rows) while it is in L2."""
    M, Kp = u.shape
    N = out.shape[1]
    k4 = Kp // 4
    tile = np.empty((MR, NR), np.int32)
    pad = np.zeros((MR, Kp), np.uint8)         # the last rows' tile when M is not a multiple of MR
    for m0 in range(0, M, MB):
        m1 = min(M, m0 + MB)
        for jp in range(panels.shape[0]):
            n0 = jp * NR
            nn = min(NR, N - n0)
            for m in range(m0, m1, MR):
                rows = min(MR, m1 - m)
                if rows == MR:
                    _tile_vnni(tile.ctypes.data, u[m:].ctypes.data, Kp, panels[jp].ctypes.data, k4)
                else:
                    pad[:rows] = u[m:m + rows]
                    _tile_vnni(tile.ctypes.data, pad.ctypes.data, Kp, panels[jp].ctypes.data, k4)
                _epilogue(tile, out, m, rows, n0, nn, s_x, z, wsum, s_w, bias, act)
        if requant:
            _quantize_rows(out[m0:m1], bits[m0:m1], u2[m0:m1], s2[m0:m1], z2[m0:m1])


# --------------------------------------------------------------------------- the AMX kernel

def _amx_fn(builder, name, args):
    """The void AMX intrinsic `name` taking `args`, declared in the module being built."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), args), name)


@intrinsic
def _amx_config(typingctx, cfg_addr):
    """ldtilecfg: load the 64-byte tile configuration (`_amx_tile_config`) on this thread."""
    def codegen(context, builder, signature, args):
        if HAVE_AMX:
            i8p = ir.IntType(8).as_pointer()
            builder.call(_amx_fn(builder, "llvm.x86.ldtilecfg", [i8p]), [builder.inttoptr(args[0], i8p)])
        return context.get_dummy_value()
    return types.void(types.intp), codegen


@intrinsic
def _amx_release(typingctx):
    """tilerelease: back to the init state, so the next context switch saves no tile data."""
    def codegen(context, builder, signature, args):
        if HAVE_AMX:
            builder.call(_amx_fn(builder, "llvm.x86.tilerelease", []), [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _tile_amx(typingctx, c_addr, a_addr, lda, b_addr, k64):
    """c (32, NR) int32 (row stride NR * 4 bytes) <- 32 unsigned activation rows (stride lda bytes)
    times one panel (16 * k64, NR, 4) signed bytes, k64 >= 1 steps of 64 k. Tiles tmm0..3 hold the
    2 x 2 blocks of 16 x 16 int32 sums, tmm4/5 two 16-row x 64-byte slices of the activations, tmm6/7
    the panel's two halves (16 columns x 4 bytes of each 128-byte panel line: stride 128), and
    tdpbusd adds their products. Tile numbers are immediates, so the four blocks are spelt out."""
    sig = types.void(types.intp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        if not HAVE_AMX:
            return context.get_dummy_value()
        c_addr, a_addr, lda, b_addr, k64 = args
        intp, i8 = c_addr.type, ir.IntType(8)
        i8p = i8.as_pointer()
        const = lambda v: ir.Constant(intp, v)    # noqa: E731
        tmm = lambda v: ir.Constant(i8, v)        # noqa: E731
        ptr = lambda a: builder.inttoptr(a, i8p)  # noqa: E731
        zero = _amx_fn(builder, "llvm.x86.tilezero", [i8])
        load = _amx_fn(builder, "llvm.x86.tileloadd64", [i8, i8p, intp])
        store = _amx_fn(builder, "llvm.x86.tilestored64", [i8, i8p, intp])
        dot = _amx_fn(builder, "llvm.x86.tdpbusd", [i8, i8, i8])
        for t in range(4):
            builder.call(zero, [tmm(t)])
        entry, loop, done = builder.block, builder.append_basic_block("amx.k"), builder.append_basic_block("amx.end")
        builder.branch(loop)
        builder.position_at_end(loop)
        k = builder.phi(intp)
        k.add_incoming(const(0), entry)
        a = builder.add(a_addr, builder.mul(k, const(64)))
        b = builder.add(b_addr, builder.mul(k, const(16 * NR * 4)))
        builder.call(load, [tmm(4), ptr(a), lda])                                            # rows 0-15
        builder.call(load, [tmm(5), ptr(builder.add(a, builder.mul(lda, const(16)))), lda])  # rows 16-31
        builder.call(load, [tmm(6), ptr(b), const(NR * 4)])                                  # columns 0-15
        builder.call(load, [tmm(7), ptr(builder.add(b, const(64))), const(NR * 4)])          # columns 16-31
        for t, (ta, tb) in enumerate([(4, 6), (4, 7), (5, 6), (5, 7)]):
            builder.call(dot, [tmm(t), tmm(ta), tmm(tb)])
        k_next = builder.add(k, const(1))
        k.add_incoming(k_next, loop)
        builder.cbranch(builder.icmp_signed("<", k_next, k64), loop, done)
        builder.position_at_end(done)
        for t, off in enumerate([0, 64, 16 * NR * 4, 16 * NR * 4 + 64]):
            builder.call(store, [tmm(t), ptr(builder.add(c_addr, const(off))), const(NR * 4)])
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(cache=True)
def _amx_tile_config():
    """The 64-byte ldtilecfg operand: palette 1; all 8 tiles 16 rows x 64 bytes."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1
    for t in range(8):
        cfg[16 + 2 * t] = 64   # colsb[t], a little-endian uint16
        cfg[48 + t] = 16       # rows[t]
    return cfg


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gemm_rows_amx(u, s_x, z, panels, wsum, s_w, bias, act, out, requant, bits, u2, s2, z2):
    """`_gemm_rows` with `_tile_amx`: blocks of 32 rows (their 32 x Kp activation bytes stay in L1
    while every panel passes) x one panel. Kp a multiple of 64 (KALIGN)."""
    M, Kp = u.shape
    N = out.shape[1]
    k64 = Kp // 64
    tile = np.empty((AMX_ROWS, NR), np.int32)
    pad = np.zeros((AMX_ROWS, Kp), np.uint8)   # the last rows when M is not a multiple of 32
    cfg = _amx_tile_config()
    _amx_config(cfg.ctypes.data)
    for m in range(0, M, AMX_ROWS):
        rows = min(AMX_ROWS, M - m)
        if rows < AMX_ROWS:
            pad[:rows] = u[m:m + rows]
        a = u[m:] if rows == AMX_ROWS else pad
        for jp in range(panels.shape[0]):
            n0 = jp * NR
            _tile_amx(tile.ctypes.data, a.ctypes.data, Kp, panels[jp].ctypes.data, k64)
            _epilogue(tile, out, m, rows, n0, min(NR, N - n0), s_x, z, wsum, s_w, bias, act)
        if requant:
            _quantize_rows(out[m:m + rows], bits[m:m + rows], u2[m:m + rows], s2[m:m + rows], z2[m:m + rows])
    _amx_release()


_NO_QUANT = (np.zeros((0, 0), np.int32), np.zeros((0, 0), np.uint8), np.zeros(0, np.float32), np.zeros(0, np.int32))


@dataclass(frozen=True)
class QuantizedRows:
    """Activations quantised once for several matrices (the encoder's q, k and v share one input).
    x: (M, K) float32 as given;  u: (M, Kp) uint8, Kp = K rounded up to KALIGN;  s: (M,) s_x;  z: (M,) int32."""
    x: np.ndarray
    u: np.ndarray
    s: np.ndarray
    z: np.ndarray

    @property
    def shape(self):
        return self.x.shape


def quantize_rows(x: np.ndarray) -> QuantizedRows:
    """Fast quantize_rows_ref, in the kernel's form (unsigned, padded). x (M, K) float32."""
    x = np.ascontiguousarray(x, np.float32)
    u = np.empty((x.shape[0], -(-x.shape[1] // KALIGN) * KALIGN), np.uint8)
    s = np.empty(x.shape[0], np.float32)
    z = np.empty(x.shape[0], np.int32)
    _quantize_rows(x, x.view(np.int32), u, s, z)
    return QuantizedRows(x, u, s, z)


def best_kernel() -> str:
    """What matmul_i8 runs here by default: "amx", "vnni" or "ref" (the float32 reference)."""
    return "amx" if amx_ready() else "vnni" if HAVE_VNNI else "ref"


def matmul_i8(x, w: I8Panels, bias=None, out=None, kernel: str | None = None, act: str | None = None,
              quantized: bool = False):
    """Fast matmul_i8_ref (+ bias): x (M, K) float32, or QuantizedRows of it, -> (M, N) float32, into
    `out` if given (it may be a row slice of a bigger array). The rows are split over the calling
    thread and the workers (ocr_base.threads.run_parts: the kernel calls no BLAS); on a worker thread
    (the encoder's row slices) it runs there, serially.
    kernel: None (the best this machine has: best_kernel()), "amx", "vnni" or "ref" (the reference's
    float32 route, what a CPU without VNNI runs); one this machine lacks is a ValueError. "amx" and
    "vnni" make the same integer sums, so the same numbers; "ref" differs by float32 rounding.
    act ("gelu", "relu"): applied to each output as kernels.bias_act_ would, in the same pass.
    quantized: return QuantizedRows of the result (quantize_rows' numbers), for the next int8
    matrix; the kernels quantise each block of rows as it is finished (out must be C-contiguous)."""
    N, K = w.shape
    kernel = kernel or best_kernel()
    if kernel not in ("amx", "vnni", "ref"):
        raise ValueError(f"kernel must be 'amx', 'vnni' or 'ref', not {kernel!r}")
    if (kernel == "amx" and not amx_ready()) or (kernel != "ref" and w.panels is None):
        raise ValueError(f"this machine cannot run the {kernel!r} int8 kernel (best here: {best_kernel()!r})")
    xq = x if isinstance(x, QuantizedRows) else None
    x = xq.x if xq is not None else np.ascontiguousarray(x, np.float32)
    M = x.shape[0]
    if out is None:
        out = np.empty((M, N), np.float32)
    b = np.zeros(N, np.float32) if bias is None else np.asarray(bias, np.float32)  # both routes add it
    if kernel == "ref" or M == 0 or K == 0:
        out[...] = matmul_i8_ref(x, w.q, w.scale)
        if bias is not None or act is not None:
            bias_act_(out, b, act)
        return quantize_rows(out) if quantized else out
    xq = xq or quantize_rows(x)
    if quantized:
        if not out.flags.c_contiguous:
            raise ValueError("quantized=True needs a C-contiguous out")
        nq = QuantizedRows(out, np.empty((M, -(-N // KALIGN) * KALIGN), np.uint8), np.empty(M, np.float32),
                           np.empty(M, np.int32))
        q_args = (True, out.view(np.int32), nq.u, nq.s, nq.z)
    else:
        nq, q_args = None, (False,) + _NO_QUANT
    gemm = _gemm_rows_amx if kernel == "amx" else _gemm_rows
    code = ACT_CODE[act]

    def rows(r):
        a, e = r
        q_part = q_args if not quantized else (True,) + tuple(v[a:e] for v in q_args[1:])
        gemm(xq.u[a:e], xq.s[a:e], xq.z[a:e], w.panels, w.wsum, w.scale, b, code, out[a:e], *q_part)
    run_parts(rows, split(M, n_workers()) if M >= 2 * MB else [(0, M)])
    return nq if quantized else out
