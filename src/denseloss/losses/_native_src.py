"""C source of the optional compiled kernels (see :mod:`denseloss.losses._native`).

Kept as a Python string so that it ships inside the package like any module (no package-data
entry, no build step at install time); :mod:`~denseloss.losses._native` compiles it once per
machine with the system C compiler and loads it with ``ctypes``.

Two kernels, each instantiated for float and double by the ``DEFINE_*`` macros:

- ``window_<T>``: the Potts energy of the local-window losses (Gated CRF, DFR) over one band of
  rows — for every unordered pair {i, j = i + (dy, dx)} of the half window, the Gaussian kernel
  K_ij (all kernels, all modalities, fused with its exp), the pair weight w = K_ij (m_i + m_j),
  and G_i += w p_j, G_j += w p_i over all C channels. A modality whose map is not at the
  probabilities' size is resampled (bilinear, ``align_corners=False``) and optionally
  L2-normalised *for the band only*, so DFR's deep map never exists at full resolution. When
  that map is much coarser than the probabilities (DFR's 1/8-resolution deep features), its
  squared distances come from coarse Gram entries instead (``gram_*``): the upsampled vector is
  u = Σ_p a_p v[p] over two coarse columns p (v = the vertical pass of a coarse row), so
  u_i·u_j = Σ_{p,q} a_p b_q (v_i[p]·v_j[q]) and, normalised, f̂_i·f̂_j = u_i·u_j / (|u_i||u_j|).
  Per pair of rows only the (2δ + 1)·w' coarse dot products of length F are computed (δ = the
  largest coarse column offset in the window, 2 at 8× and r = 5), then each pixel and shift
  costs a 2×2 form — the same value as the direct band up to rounding, about 5× fewer flops.
- ``lat_*``: a permutohedral lattice (Adams, Baek & Davis 2010) whose splat / blur / slice
  structures are built once per image (``lat_points`` in parallel, then ``lat_index``) and then
  applied to all C channels at once; the arithmetic mirrors
  :class:`denseloss.losses._lattice.PermutohedralLattice` step by step. Its source is in
  :mod:`denseloss.losses._native_lattice_src` (appended here: one compilation unit).

The file is compiled without ``-ffast-math`` (which, linked into a shared object, would switch
flush-to-zero on for the whole process); loops that may be reordered say so with
``#pragma omp simd``. Denormals are flushed only inside each call (MXCSR saved and restored).
"""

from denseloss.losses._native_lattice_src import LATTICE

_WINDOW = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define FTZ_ON  unsigned int csr_saved__ = _mm_getcsr(); _mm_setcsr(csr_saved__ | 0x8040u);
#define FTZ_OFF _mm_setcsr(csr_saved__);
#else
#define FTZ_ON
#define FTZ_OFF
#endif

/* exp(x) for x <= 0 by range reduction x = k ln2 + r, |r| <= ln2/2, a Taylor polynomial and
 * 2^k built from the exponent bits: vectorisable (no libm call), error below 2 ulp; x below the
 * smallest normal's log gives 0 (no denormal kernel weights). */
static inline float exp_neg_f(float x) {
    if (x < -87.0f) x = -104.0f;
    float k = nearbyintf(x * 1.44269504088896341f);
    float r = x - k * 0.693145751953125f - k * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f; p = p * r + 1.0f / 120.0f; p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f; p = p * r + 0.5f; p = p * r + 1.0f; p = p * r + 1.0f;
    int32_t e = (int32_t)k + 127;
    e = e < 0 ? 0 : e;
    union { int32_t i; float f; } u; u.i = e << 23;
    return p * u.f;
}
static inline double exp_neg_d(double x) {
    if (x < -708.0) x = -1000.0;
    double k = nearbyint(x * 1.4426950408889634);
    double r = x - k * 0.6931471803691238 - k * 1.9082149292705877e-10;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0; p = p * r + 1.0 / 39916800.0; p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0; p = p * r + 1.0 / 40320.0; p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0; p = p * r + 1.0 / 120.0; p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0; p = p * r + 0.5; p = p * r + 1.0; p = p * r + 1.0;
    int64_t e = (int64_t)k + 1023;
    e = e < 0 ? 0 : e;
    union { int64_t i; double f; } u; u.i = e << 52;
    return p * u.f;
}

/* One feature modality of the window kernel, as handed in by Python. */
typedef struct {
    const void* data;   /* (F, sh, sw) planes of this image */
    int64_t channels, sh, sw;
    int normalize;      /* L2-normalise over channels after resampling */
    int use_dot;        /* ||a-b||^2 = |a|^2 + |b|^2 - 2 a.b (wide maps) instead of sum (a-b)^2 */
} modality;

/* Bilinear source taps of output index pos along an axis of n source cells (align_corners=False,
 * as F.interpolate; scale = n / output size): lower and upper tap and the upper tap's weight. */
#define SRC_TAPS(T, pos, scale, n, i0, i1, frac) do {                                           \
    T s_ = ((T)(pos) + (T)0.5) * (scale) - (T)0.5; if (s_ < 0) s_ = 0;                          \
    int64_t i_ = (int64_t)s_; if (i_ > (n) - 1) i_ = (n) - 1;                                   \
    (i0) = i_; (i1) = i_ + 1 < (n) ? i_ + 1 : (n) - 1; (frac) = s_ - (T)i_;                     \
} while (0)

#define DEFINE_WINDOW(T, EXP)                                                                   \
/* Resample rows [r0, r1) of a modality to (H, W) (bilinear, align_corners=False, as            \
 * F.interpolate: vertical pass into a coarse row, then a horizontal gather), normalise if      \
 * asked; out: (F, r1 - r0, W); sq: (r1 - r0, W) squared norms. */                              \
static void band_##T(const modality* md, int64_t H, int64_t W, int64_t r0, int64_t r1,        \
                     T* out, T* sq) {                                                           \
    const T* src = (const T*)md->data;                                                          \
    int64_t F = md->channels, sh = md->sh, sw = md->sw, rows = r1 - r0;                         \
    int64_t* x0 = (int64_t*)malloc(sizeof(int64_t) * 2 * W);                                   \
    int64_t* x1 = x0 + W;                                                                       \
    T* lx = (T*)malloc(sizeof(T) * (W + sw));                                                   \
    T* row = lx + W;                                                                            \
    T sy = (T)sh / (T)H, sx = (T)sw / (T)W;                                                     \
    for (int64_t x = 0; x < W; x++) {                                                           \
        if (sw == W) { x0[x] = x1[x] = x; lx[x] = 0; continue; }                                \
        SRC_TAPS(T, x, sx, sw, x0[x], x1[x], lx[x]);                                            \
    }                                                                                           \
    for (int64_t y = r0; y < r1; y++) {                                                         \
        int64_t ya = y, yb = y; T ly = 0;                                                       \
        if (sh != H) {                                                                          \
            SRC_TAPS(T, y, sy, sh, ya, yb, ly);                                                 \
        }                                                                                       \
        T* nrm = sq + (y - r0) * W;                                                             \
        for (int64_t x = 0; x < W; x++) nrm[x] = 0;                                             \
        for (int64_t c = 0; c < F; c++) {                                                       \
            const T* pa = src + (c * sh + ya) * sw;                                             \
            const T* pb = src + (c * sh + yb) * sw;                                             \
            T* o = out + (c * rows + (y - r0)) * W;                                             \
            if (sh == H && sw == W) {                                                           \
                for (int64_t x = 0; x < W; x++) o[x] = pa[x];                                   \
            } else {                                                                            \
                _Pragma("omp simd")                                                             \
                for (int64_t x = 0; x < sw; x++) row[x] = ((T)1 - ly) * pa[x] + ly * pb[x];    \
                _Pragma("omp simd")                                                             \
                for (int64_t x = 0; x < W; x++)                                                 \
                    o[x] = ((T)1 - lx[x]) * row[x0[x]] + lx[x] * row[x1[x]];                    \
            }                                                                                   \
            _Pragma("omp simd")                                                                 \
            for (int64_t x = 0; x < W; x++) nrm[x] += o[x] * o[x];                              \
        }                                                                                       \
        if (md->normalize) {                                                                    \
            /* F.normalize: x / max(||x||, 1e-12); then the squared norm of the result. */      \
            _Pragma("omp simd")                                                                 \
            for (int64_t x = 0; x < W; x++) {                                                   \
                T den = sqrt(nrm[x]); nrm[x] = den < (T)1e-12 ? (T)1e-12 : den;                 \
            }                                                                                   \
            for (int64_t c = 0; c < F; c++) {                                                   \
                T* o = out + (c * rows + (y - r0)) * W;                                         \
                _Pragma("omp simd")                                                             \
                for (int64_t x = 0; x < W; x++) o[x] /= nrm[x];                                 \
            }                                                                                   \
            for (int64_t x = 0; x < W; x++) nrm[x] = 0;                                         \
            for (int64_t c = 0; c < F; c++) {                                                   \
                const T* o = out + (c * rows + (y - r0)) * W;                                   \
                _Pragma("omp simd")                                                             \
                for (int64_t x = 0; x < W; x++) nrm[x] += o[x] * o[x];                          \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    free(x0); free(lx);                                                                         \
}                                                                                               \
                                                                                                \
/* DFR's deep map by coarse Gram entries. The resampled vector of pixel (y, x) is               \
 * u = (1 - lx) v_y[x0] + lx v_y[x1], v_y = (1 - ly) c[ya] + ly c[yb] the vertical pass (a      \
 * coarse row, as in band_), so u_i.u_j is a 2 x 2 bilinear form in R(p, q) = v_yi[p].v_yj[q]   \
 * over the coarse columns p of i and q of j: per row pair, (2 delta + 1) sw dot products of    \
 * length F, where the direct band needs one per pixel and shift (delta = the largest |q - p|   \
 * in the window: 2 for an 8x upsampling at r = 5). */                                          \
typedef struct {                                                                                \
    int on, normalize;                                                                          \
    int32_t delta, sw;                                                                          \
    int64_t F;                                                                                  \
    int32_t* x0; int32_t* x1;  /* (W) each pixel's coarse columns */                            \
    T* la; T* lb;              /* (W) their weights 1 - lx, lx */                               \
    T* rv;                     /* (rows, F, sw) vertical pass of every band row */              \
    T* inv; T* sq;             /* (rows, W) 1/max(|u|, 1e-12) (or 1), |u/max(..)|^2 */          \
    T* R;                      /* (2 delta + 1, sw): R(p, p + d) at [(d + delta) sw + p] */     \
} gram_##T;                                                                                     \
                                                                                                \
/* Set g up for band rows [r0, r1) when it is cheaper than the direct band and fits in the      \
 * modality's share of work (cap elements); returns g->on. */                                   \
static int gram_setup_##T(const modality* md, int64_t H, int64_t W, int64_t r0, int64_t r1,     \
                          int radius, T* buf, int64_t cap, gram_##T* g) {                       \
    int64_t F = md->channels, sh = md->sh, sw = md->sw, rows = r1 - r0;                         \
    g->on = 0;                                                                                  \
    if (!md->use_dot || (sh == H && sw == W) || F * rows * sw + 2 * rows * W > cap) return 0;   \
    int32_t* x0 = (int32_t*)malloc(sizeof(int32_t) * 2 * W);                                    \
    int32_t* x1 = x0 + W;                                                                       \
    T* la = (T*)malloc(sizeof(T) * 2 * W);                                                      \
    T* lb = la + W;                                                                             \
    T sx = (T)sw / (T)W;                                                                        \
    for (int64_t x = 0; x < W; x++) {  /* as band_ */                                           \
        if (sw == W) { x0[x] = x1[x] = (int32_t)x; lb[x] = 0; la[x] = 1; continue; }            \
        int64_t i0, i1;                                                                         \
        SRC_TAPS(T, x, sx, sw, i0, i1, lb[x]);                                                  \
        x0[x] = (int32_t)i0; x1[x] = (int32_t)i1; la[x] = (T)1 - lb[x];                         \
    }                                                                                           \
    int32_t delta = 0;                                                                          \
    for (int64_t x = 0; x < W; x++)                                                             \
        for (int64_t xj = x - radius; xj <= x + radius; xj++) {                                 \
            if (xj < 0 || xj >= W) continue;                                                    \
            int32_t d1 = abs(x1[xj] - x0[x]), d2 = abs(x0[xj] - x1[x]);                         \
            if (d1 > delta) delta = d1;                                                         \
            if (d2 > delta) delta = d2;                                                         \
        }                                                                                       \
    /* multiply-adds: R per row pair vs the direct dot per pixel and shift (plus ~8 flops       \
     * per pixel and shift for the 2 x 2 form) */                                               \
    double shifts = 2.0 * radius * radius + 2.0 * radius;                                       \
    double gram = (radius + 1.0) * (2.0 * delta + 1.0) * sw * F + shifts * W * 8.0;             \
    if (gram >= shifts * W * F) { free(x0); free(la); return 0; }                               \
    T* R = (T*)malloc(sizeof(T) * (2 * delta + 2) * sw);                                        \
    g->on = 1; g->normalize = md->normalize; g->delta = delta; g->sw = (int32_t)sw; g->F = F;   \
    g->x0 = x0; g->x1 = x1; g->la = la; g->lb = lb; g->R = R;                                   \
    g->rv = buf; g->inv = buf + F * rows * sw; g->sq = g->inv + rows * W;                       \
    const T* src = (const T*)md->data;                                                          \
    T sy = (T)sh / (T)H;                                                                        \
    for (int64_t y = r0; y < r1; y++) {                                                         \
        int64_t ya = y, yb = y; T ly = 0;                                                       \
        if (sh != H) {                                                                          \
            SRC_TAPS(T, y, sy, sh, ya, yb, ly);                                                 \
        }                                                                                       \
        T* v = g->rv + (y - r0) * F * sw;                                                       \
        T* S0 = R;                                                                              \
        T* S1 = R + sw;  /* S0[k] = v[k].v[k], S1[k] = v[k].v[k + 1] */                         \
        for (int64_t k = 0; k < 2 * sw; k++) R[k] = 0;                                          \
        for (int64_t c = 0; c < F; c++) {                                                       \
            const T* pa = src + (c * sh + ya) * sw;                                             \
            const T* pb = src + (c * sh + yb) * sw;                                             \
            T* vc = v + c * sw;                                                                 \
            _Pragma("omp simd")                                                                 \
            for (int64_t k = 0; k < sw; k++) vc[k] = ((T)1 - ly) * pa[k] + ly * pb[k];          \
            _Pragma("omp simd")                                                                 \
            for (int64_t k = 0; k < sw; k++) S0[k] += vc[k] * vc[k];                            \
            _Pragma("omp simd")                                                                 \
            for (int64_t k = 0; k < sw - 1; k++) S1[k] += vc[k] * vc[k + 1];                    \
        }                                                                                       \
        T* iv = g->inv + (y - r0) * W;                                                          \
        T* sq = g->sq + (y - r0) * W;                                                           \
        for (int64_t x = 0; x < W; x++) {                                                       \
            int32_t p0 = x0[x], p1 = x1[x];                                                     \
            T a = la[x], b = lb[x], cross = p1 == p0 ? S0[p0] : S1[p0];                         \
            T n2 = a * a * S0[p0] + (T)2 * a * b * cross + b * b * S0[p1];                      \
            n2 = n2 > 0 ? n2 : (T)0;                                                            \
            if (md->normalize) {                                                                \
                /* F.normalize: u / max(|u|, 1e-12) */                                          \
                T den = sqrt(n2); den = den < (T)1e-12 ? (T)1e-12 : den;                        \
                iv[x] = (T)1 / den; sq[x] = n2 * iv[x] * iv[x];                                 \
            } else {                                                                            \
                iv[x] = 1; sq[x] = n2;                                                          \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    return 1;                                                                                   \
}                                                                                               \
                                                                                                \
/* R(p, p + d) = v_ri[p].v_rj[p + d] for |d| <= delta (band rows ri, rj). */                    \
static void gram_rows_##T(gram_##T* g, int64_t ri, int64_t rj) {                                \
    int64_t F = g->F, sw = g->sw, dl = g->delta;                                                \
    const T* va = g->rv + ri * F * sw;                                                          \
    const T* vb = g->rv + rj * F * sw;                                                          \
    for (int64_t d = -dl; d <= dl; d++) {                                                       \
        T* Rd = g->R + (d + dl) * sw;                                                           \
        int64_t klo = d < 0 ? -d : 0, khi = d > 0 ? sw - d : sw, c = 0;                         \
        for (int64_t k = 0; k < sw; k++) Rd[k] = 0;                                             \
        for (; c + 4 <= F; c += 4) {                                                            \
            const T* a = va + c * sw;                                                           \
            const T* b = vb + c * sw + d;                                                       \
            _Pragma("omp simd")                                                                 \
            for (int64_t k = klo; k < khi; k++)                                                 \
                Rd[k] += a[k] * b[k] + a[k + sw] * b[k + sw] + a[k + 2 * sw] * b[k + 2 * sw]    \
                       + a[k + 3 * sw] * b[k + 3 * sw];                                         \
        }                                                                                       \
        for (; c < F; c++) {                                                                    \
            const T* a = va + c * sw;                                                           \
            const T* b = vb + c * sw + d;                                                       \
            _Pragma("omp simd")                                                                 \
            for (int64_t k = klo; k < khi; k++) Rd[k] += a[k] * b[k];                           \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* dm[x] = |f_i - f_j|^2 for i = (ri, xlo + x), j = (rj, xlo + x + dx), x < n. */               \
static void gram_dist_##T(const gram_##T* g, int64_t W, int64_t ri, int64_t rj, int64_t xlo,    \
                          int64_t n, int dx, T* dm) {                                           \
    const int32_t* pa = g->x0 + xlo; const int32_t* pb = g->x1 + xlo;                           \
    const int32_t* qa = pa + dx; const int32_t* qb = pb + dx;                                   \
    const T* wa = g->la + xlo; const T* wb = g->lb + xlo;                                       \
    const T* wc = wa + dx; const T* wd = wb + dx;                                               \
    const T* ia = g->inv + ri * W + xlo; const T* ib = g->inv + rj * W + xlo + dx;              \
    const T* sa = g->sq + ri * W + xlo; const T* sb = g->sq + rj * W + xlo + dx;                \
    const T* R = g->R + (int64_t)g->delta * g->sw;  /* R(p, q) = R[(q - p) sw + p] */           \
    int32_t sw = g->sw;                                                                         \
    _Pragma("omp simd")                                                                         \
    for (int64_t x = 0; x < n; x++) {                                                           \
        int32_t p0 = pa[x], p1 = pb[x], q0 = qa[x], q1 = qb[x];                                 \
        T d = wa[x] * (wc[x] * R[(q0 - p0) * sw + p0] + wd[x] * R[(q1 - p0) * sw + p0])         \
            + wb[x] * (wc[x] * R[(q0 - p1) * sw + p1] + wd[x] * R[(q1 - p1) * sw + p1]);        \
        T v = sa[x] + sb[x] - (T)2 * d * ia[x] * ib[x];                                         \
        dm[x] = v > 0 ? v : (T)0;                                                               \
    }                                                                                           \
}                                                                                               \
                                                                                                \
static void gram_free_##T(gram_##T* g) {                                                        \
    if (g->on) { free(g->x0); free(g->la); free(g->R); }                                        \
}                                                                                               \
                                                                                                \
/* Returns sum over the band's pairs of w = K_ij (m_i + m_j); accumulates G (C, H, W). */      \
double window_##T(const T* p, const T* valid, T* G, int64_t C, int64_t H, int64_t W,           \
                  int M, const modality* mods, int D, const double* kw, const double* kxy,     \
                  const double* kmod, int radius, int64_t y0, int64_t y1, T* work) {            \
    /* work: sum_m (F_m + 1) * rows * W + (M + 2) * W elements, rows = min(y1 + r, H) - y0   \
     * (allocated by the caller through PyTorch, so its memory is accounted there). */          \
    FTZ_ON                                                                                      \
    int64_t HW = H * W, r1 = y1 + radius < H ? y1 + radius : H, rows = r1 - y0;                 \
    const T* fb[64];                                                                            \
    const T* sqb[64];                                                                           \
    if (M > 64) { FTZ_OFF return NAN; }                                                         \
    gram_##T gs[64];                                                                            \
    T* cursor = work;                                                                           \
    for (int m = 0; m < M; m++) {                                                               \
        const modality* md = &mods[m];                                                          \
        int64_t cap = (md->channels + 1) * rows * W;                                            \
        if (!gram_setup_##T(md, H, W, y0, r1, radius, cursor, cap, &gs[m]))                     \
            band_##T(md, H, W, y0, r1, cursor, cursor + md->channels * rows * W);               \
        fb[m] = cursor; sqb[m] = cursor + md->channels * rows * W;                              \
        cursor += cap;                                                                          \
    }                                                                                           \
    T* dist = cursor;                                                                           \
    T* kern = dist + M * W;                                                                     \
    T* tmp = kern + W;                                                                          \
    double wsum = 0;                                                                            \
    for (int64_t y = y0; y < y1; y++) {                                                         \
        for (int dy = 0; dy <= radius; dy++) {                                                  \
            int64_t yj = y + dy;                                                                \
            if (yj >= H) break;                                                                 \
            for (int m = 0; m < M; m++)                                                         \
                if (gs[m].on) gram_rows_##T(&gs[m], y - y0, yj - y0);                           \
            for (int dx = -radius; dx <= radius; dx++) {                                        \
                if (dy == 0 && dx <= 0) continue;                                               \
                int64_t xlo = dx < 0 ? -dx : 0, xhi = dx > 0 ? W - dx : W, n = xhi - xlo;       \
                if (n <= 0) continue;                                                           \
                for (int m = 0; m < M; m++) {                                                   \
                    const modality* md = &mods[m];                                              \
                    T* dm = dist + m * W;                                                       \
                    if (gs[m].on) {                                                             \
                        gram_dist_##T(&gs[m], W, y - y0, yj - y0, xlo, n, dx, dm);              \
                        continue;                                                               \
                    }                                                                           \
                    const T* base = fb[m];                                                      \
                    int64_t F = md->channels;                                                   \
                    for (int64_t x = 0; x < n; x++) dm[x] = 0;                                  \
                    int64_t cs = rows * W, c = 0;                                               \
                    const T* a = base + (y - y0) * W + xlo;                                     \
                    const T* b = base + (yj - y0) * W + xlo + dx;                               \
                    if (md->use_dot) {                                                          \
                        /* four channels per pass: one load/store of dm per four products */    \
                        for (; c + 4 <= F; c += 4, a += 4 * cs, b += 4 * cs) {                  \
                            _Pragma("omp simd")                                                 \
                            for (int64_t x = 0; x < n; x++)                                     \
                                dm[x] += a[x] * b[x] + a[x + cs] * b[x + cs]                    \
                                       + a[x + 2 * cs] * b[x + 2 * cs]                          \
                                       + a[x + 3 * cs] * b[x + 3 * cs];                         \
                        }                                                                       \
                        for (; c < F; c++, a += cs, b += cs) {                                  \
                            _Pragma("omp simd")                                                 \
                            for (int64_t x = 0; x < n; x++) dm[x] += a[x] * b[x];               \
                        }                                                                       \
                    } else {                                                                    \
                        for (; c < F; c++, a += cs, b += cs) {                                  \
                            _Pragma("omp simd")                                                 \
                            for (int64_t x = 0; x < n; x++) { T t = a[x] - b[x]; dm[x] += t * t; } \
                        }                                                                       \
                    }                                                                           \
                    if (md->use_dot) {                                                          \
                        const T* sa = sqb[m] + (y - y0) * W + xlo;                              \
                        const T* sb = sqb[m] + (yj - y0) * W + xlo + dx;                        \
                        _Pragma("omp simd")                                                     \
                        for (int64_t x = 0; x < n; x++) {                                       \
                            T v = sa[x] + sb[x] - (T)2 * dm[x]; dm[x] = v > 0 ? v : (T)0;       \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
                for (int64_t x = 0; x < n; x++) kern[x] = 0;                                    \
                T r2 = (T)(dy * dy + dx * dx);                                                  \
                for (int d = 0; d < D; d++) {                                                   \
                    T c0 = (T)kxy[d] * r2, wd = (T)kw[d];                                       \
                    for (int64_t x = 0; x < n; x++) tmp[x] = c0;                                \
                    for (int m = 0; m < M; m++) {                                               \
                        T km = (T)kmod[d * M + m];                                              \
                        if (km == 0) continue;                                                  \
                        const T* dm = dist + m * W;                                             \
                        _Pragma("omp simd")                                                     \
                        for (int64_t x = 0; x < n; x++) tmp[x] += km * dm[x];                   \
                    }                                                                           \
                    _Pragma("omp simd")                                                         \
                    for (int64_t x = 0; x < n; x++) kern[x] += wd * EXP((T)-0.5 * tmp[x]);      \
                }                                                                               \
                double acc = 0;                                                                 \
                if (valid) {                                                                    \
                    const T* va = valid + y * W + xlo;                                          \
                    const T* vb = valid + yj * W + xlo + dx;                                    \
                    _Pragma("omp simd reduction(+:acc)")                                        \
                    for (int64_t x = 0; x < n; x++) { kern[x] *= va[x] + vb[x]; acc += kern[x]; } \
                } else {                                                                        \
                    _Pragma("omp simd reduction(+:acc)")                                        \
                    for (int64_t x = 0; x < n; x++) { kern[x] *= (T)2; acc += kern[x]; }        \
                }                                                                               \
                wsum += acc;                                                                    \
                for (int64_t c = 0; c < C; c++) {                                               \
                    T* gi = G + c * HW + y * W + xlo;                                           \
                    T* gj = G + c * HW + yj * W + xlo + dx;                                     \
                    const T* pi = p + c * HW + y * W + xlo;                                     \
                    const T* pj = p + c * HW + yj * W + xlo + dx;                               \
                    _Pragma("omp simd")                                                         \
                    for (int64_t x = 0; x < n; x++) { gi[x] += kern[x] * pj[x];                 \
                                                      gj[x] += kern[x] * pi[x]; }               \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    for (int m = 0; m < M; m++) gram_free_##T(&gs[m]);                                          \
    FTZ_OFF                                                                                     \
    return wsum;                                                                                \
}

DEFINE_WINDOW(float, exp_neg_f)
DEFINE_WINDOW(double, exp_neg_d)
"""

SOURCE = _WINDOW + LATTICE
