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
  L2-normalised *for the band only*, so DFR's deep map never exists at full resolution.
- ``lat_*``: a permutohedral lattice (Adams, Baek & Davis 2010) whose splat / blur / slice
  structures are built once per image (``lat_points`` in parallel, then ``lat_index``) and then
  applied to all C channels at once; the arithmetic mirrors
  :class:`denseloss.losses._lattice.PermutohedralLattice` step by step.

The file is compiled without ``-ffast-math`` (which, linked into a shared object, would switch
flush-to-zero on for the whole process); loops that may be reordered say so with
``#pragma omp simd``. Denormals are flushed only inside each call (MXCSR saved and restored).
"""

SOURCE = r"""
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
        T s = ((T)x + (T)0.5) * sx - (T)0.5; if (s < 0) s = 0;                                  \
        int64_t i = (int64_t)s; if (i > sw - 1) i = sw - 1;                                     \
        x0[x] = i; x1[x] = i + 1 < sw ? i + 1 : sw - 1; lx[x] = s - (T)i;                       \
    }                                                                                           \
    for (int64_t y = r0; y < r1; y++) {                                                         \
        int64_t ya = y, yb = y; T ly = 0;                                                       \
        if (sh != H) {                                                                          \
            T s = ((T)y + (T)0.5) * sy - (T)0.5; if (s < 0) s = 0;                              \
            ya = (int64_t)s; if (ya > sh - 1) ya = sh - 1;                                      \
            yb = ya + 1 < sh ? ya + 1 : sh - 1; ly = s - (T)ya;                                 \
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
    T* cursor = work;                                                                           \
    for (int m = 0; m < M; m++) {                                                               \
        const modality* md = &mods[m];                                                          \
        band_##T(md, H, W, y0, r1, cursor, cursor + md->channels * rows * W);                   \
        fb[m] = cursor; sqb[m] = cursor + md->channels * rows * W;                              \
        cursor += (md->channels + 1) * rows * W;                                                \
    }                                                                                           \
    T* dist = cursor;                                                                           \
    T* kern = dist + M * W;                                                                     \
    T* tmp = kern + W;                                                                          \
    double wsum = 0;                                                                            \
    for (int64_t y = y0; y < y1; y++) {                                                         \
        for (int dy = 0; dy <= radius; dy++) {                                                  \
            int64_t yj = y + dy;                                                                \
            if (yj >= H) break;                                                                 \
            for (int dx = -radius; dx <= radius; dx++) {                                        \
                if (dy == 0 && dx <= 0) continue;                                               \
                int64_t xlo = dx < 0 ? -dx : 0, xhi = dx > 0 ? W - dx : W, n = xhi - xlo;       \
                if (n <= 0) continue;                                                           \
                for (int m = 0; m < M; m++) {                                                   \
                    const modality* md = &mods[m];                                              \
                    T* dm = dist + m * W;                                                       \
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
    FTZ_OFF                                                                                     \
    return wsum;                                                                                \
}

DEFINE_WINDOW(float, exp_neg_f)
DEFINE_WINDOW(double, exp_neg_d)

/* ------------------------------------------------------------------------------------------ */
/* Permutohedral lattice.                                                                     */

#define MAXD 16
typedef struct {
    int d;
    int64_t n, M, cap;
    int32_t* vid;    /* (n, d+1): vertex of each point's k-th simplex corner */
    double* bary;    /* (n, d+1): barycentric weights */
    int32_t* nbr;    /* (M, d+1, 2): blur neighbours, M = absent (reads a zero row) */
    int32_t* keys;   /* (M, d) vertex coordinates (first d of d+1) */
    int32_t* table;  /* open addressing, -1 = empty */
} lattice;

static inline uint64_t hash_key(const int32_t* k, int d) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < d; i++) { h ^= (uint32_t)k[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

static int lat_grow(lattice* L) {
    int64_t cap = L->cap * 2;
    int32_t* t = (int32_t*)malloc(sizeof(int32_t) * cap);
    if (!t) return -1;
    memset(t, 0xff, sizeof(int32_t) * cap);
    for (int64_t v = 0; v < L->M; v++) {
        uint64_t h = hash_key(L->keys + v * L->d, L->d) & (uint64_t)(cap - 1);
        while (t[h] >= 0) h = (h + 1) & (uint64_t)(cap - 1);
        t[h] = (int32_t)v;
    }
    free(L->table); L->table = t; L->cap = cap;
    int32_t* k = (int32_t*)realloc(L->keys, sizeof(int32_t) * L->d * (cap / 2 + 1));
    if (!k) return -1;
    L->keys = k;
    return 0;
}

/* Vertex id of key, inserting it when insert != 0; -1 when absent (or out of memory). */
static int64_t lat_find(lattice* L, const int32_t* key, int insert) {
    int d = L->d;
    uint64_t mask = (uint64_t)(L->cap - 1), h = hash_key(key, d) & mask;
    for (;;) {
        int32_t v = L->table[h];
        if (v < 0) break;
        if (memcmp(L->keys + (int64_t)v * d, key, sizeof(int32_t) * d) == 0) return v;
        h = (h + 1) & mask;
    }
    if (!insert) return -1;
    if (2 * (L->M + 1) > L->cap) {
        if (lat_grow(L)) return -1;
        return lat_find(L, key, insert);
    }
    memcpy(L->keys + L->M * d, key, sizeof(int32_t) * d);
    L->table[h] = (int32_t)L->M;
    return L->M++;
}

void lat_free(lattice* L) {
    if (!L) return;
    free(L->nbr); free(L->keys); free(L->table); free(L);
}

/* Bytes this file allocated for L (the caller owns vid and bary). */
int64_t lat_bytes(const lattice* L) {
    return (int64_t)sizeof(int32_t) * (L->cap + L->d * (L->cap / 2 + 1) + L->M * (L->d + 1) * 2);
}

/* Elevation of one point fi (d doubles, already divided by sigma): (fi + offset) * scale
 * lifted to d+1 coordinates, its enclosing simplex (rem0, rank) and barycentric weights b. */
static void point_simplex(const double* fi, int d, const double* scale, const double* offset,
                          double* b, int32_t* key0, int8_t* rank_out) {
    double el[MAXD + 1], rem0[MAXD + 1], dp1 = (double)(d + 1);
    int rank[MAXD + 1];
    double sm = 0;
    for (int j = d; j >= 1; j--) {
        double cf = (fi[j - 1] + offset[j - 1]) * scale[j - 1];
        el[j] = sm - (double)j * cf;
        sm += cf;
    }
    el[0] = sm;
    double sum = 0;
    for (int j = 0; j <= d; j++) {
        double up = ceil(el[j] / dp1) * dp1, down = floor(el[j] / dp1) * dp1;
        rem0[j] = (up - el[j] < el[j] - down) ? up : down;
        sum += rem0[j];
        rank[j] = 0;
    }
    int s = (int)nearbyint(sum / dp1);
    for (int j = 0; j < d; j++)
        for (int k = j + 1; k <= d; k++) {
            if (el[j] - rem0[j] < el[k] - rem0[k]) rank[j]++; else rank[k]++;
        }
    for (int j = 0; j <= d; j++) {
        if (s > 0 && rank[j] >= d + 1 - s) { rank[j] -= d + 1; rem0[j] -= dp1; }
        else if (s < 0 && rank[j] < -s) { rank[j] += d + 1; rem0[j] += dp1; }
        rank[j] += s;
    }
    double bb[MAXD + 2];
    for (int j = 0; j <= d + 1; j++) bb[j] = 0;
    for (int j = 0; j <= d; j++) {
        double v = (el[j] - rem0[j]) / dp1;
        bb[d - rank[j]] += v;
        bb[d + 1 - rank[j]] -= v;
    }
    bb[0] += 1.0 + bb[d + 1];
    for (int k = 0; k <= d; k++) b[k] = bb[k];
    for (int j = 0; j < d; j++) { key0[j] = (int32_t)rem0[j]; rank_out[j] = (int8_t)rank[j]; }
}

/* Phase 1 of a build, for points [i0, i1) (threads run disjoint ranges): the features come from
 * f (n, d) doubles, or, when f is NULL, from the planar (3, H, W) image img of T as
 * (x / sxy, y / sxy, rgb / srgb), computed in T as the PyTorch path does. Writes bary (n, d+1)
 * and each point's simplex: key0 (n, d) = rem0 of the first d coordinates, rank8 (n, d). */
#define DEFINE_POINTS(T)                                                                        \
void lat_points_##T(const double* f, const T* img, int64_t H, int64_t W, double sxy,           \
                    double srgb, int64_t i0, int64_t i1, int d, const double* scale,           \
                    const double* offset, double* bary, int32_t* key0, int8_t* rank8) {        \
    FTZ_ON                                                                                      \
    double fi[MAXD];                                                                            \
    for (int64_t i = i0; i < i1; i++) {                                                         \
        const double* src = f ? f + i * d : fi;                                                 \
        if (!f) {                                                                               \
            fi[0] = (double)((T)(i % W) / (T)sxy);                                              \
            fi[1] = (double)((T)(i / W) / (T)sxy);                                              \
            for (int c = 0; c < 3; c++) fi[2 + c] = (double)(img[c * H * W + i] / (T)srgb);     \
        }                                                                                       \
        point_simplex(src, d, scale, offset, bary + i * (d + 1), key0 + i * d, rank8 + i * d); \
    }                                                                                           \
    FTZ_OFF                                                                                     \
}
DEFINE_POINTS(float)
DEFINE_POINTS(double)

/* Phase 2 (sequential): hash the simplices' vertices (a point in the same simplex as the previous
 * one reuses its vertices), fill vid (n, d+1), then find the blur neighbours. bary must stay
 * alive as long as the lattice. Returns NULL when out of memory or d is out of range. */
lattice* lat_index(int64_t n, int d, const int32_t* key0, const int8_t* rank8, double* bary,
                   int32_t* vid) {
    if (d < 1 || d > MAXD) return NULL;
    FTZ_ON
    lattice* L = (lattice*)calloc(1, sizeof(lattice));
    L->d = d; L->n = n; L->cap = 1024;
    while (L->cap < n) L->cap *= 2;
    L->table = (int32_t*)malloc(sizeof(int32_t) * L->cap);
    memset(L->table, 0xff, sizeof(int32_t) * L->cap);
    L->keys = (int32_t*)malloc(sizeof(int32_t) * d * (L->cap / 2 + 1));
    L->vid = vid;
    L->bary = bary;
    int32_t key[MAXD];
    for (int64_t i = 0; i < n; i++) {
        const int32_t* r0 = key0 + i * d;
        const int8_t* rk = rank8 + i * d;
        if (i > 0 && memcmp(r0, r0 - d, sizeof(int32_t) * d) == 0 && memcmp(rk, rk - d, d) == 0) {
            memcpy(vid + i * (d + 1), vid + (i - 1) * (d + 1), sizeof(int32_t) * (d + 1));
            continue;
        }
        for (int k = 0; k <= d; k++) {
            for (int j = 0; j < d; j++) key[j] = r0[j] + (rk[j] <= d - k ? k : k - (d + 1));
            int64_t v = lat_find(L, key, 1);
            if (v < 0) { lat_free(L); FTZ_OFF return NULL; }
            vid[i * (d + 1) + k] = (int32_t)v;
        }
    }
    int64_t M = L->M;
    L->nbr = (int32_t*)malloc(sizeof(int32_t) * (M > 0 ? M : 1) * (d + 1) * 2);
    for (int64_t v = 0; v < M; v++) {
        const int32_t* kv = L->keys + v * d;
        for (int j = 0; j <= d; j++)
            for (int side = 0; side < 2; side++) {
                int sign = side ? 1 : -1;
                for (int q = 0; q < d; q++) key[q] = kv[q] + sign;
                if (j < d) key[j] -= sign * (d + 1);
                int64_t u = lat_find(L, key, 0);
                L->nbr[(v * (d + 1) + j) * 2 + side] = (int32_t)(u < 0 ? M : u);
            }
    }
    FTZ_OFF
    return L;
}

int64_t lat_vertices(const lattice* L) { return L->M; }

#define DEFINE_LATTICE(T)                                                                       \
/* lat (M + 1, C) += splat of points [i0, i1) of values (n, C); row M stays zero. */           \
void lat_splat_##T(const lattice* L, const T* values, int64_t C, int64_t i0, int64_t i1,       \
                   T* lat) {                                                                    \
    FTZ_ON                                                                                      \
    int d1 = L->d + 1;                                                                          \
    for (int64_t i = i0; i < i1; i++) {                                                         \
        const T* vi = values + i * C;                                                           \
        for (int k = 0; k < d1; k++) {                                                          \
            T w = (T)L->bary[i * d1 + k];                                                       \
            T* dst = lat + (int64_t)L->vid[i * d1 + k] * C;                                     \
            _Pragma("omp simd")                                                                 \
            for (int64_t c = 0; c < C; c++) dst[c] += w * vi[c];                                \
        }                                                                                       \
    }                                                                                           \
    FTZ_OFF                                                                                     \
}                                                                                               \
/* out[v] = 0.5 in[v] + 0.25 (in[n1] + in[n2]) along direction j, for vertices [v0, v1). */    \
void lat_blur_##T(const lattice* L, const T* in, T* out, int64_t C, int j, int64_t v0,         \
                  int64_t v1) {                                                                 \
    FTZ_ON                                                                                      \
    int d1 = L->d + 1;                                                                          \
    for (int64_t v = v0; v < v1; v++) {                                                         \
        const T* a = in + (int64_t)L->nbr[(v * d1 + j) * 2] * C;                                \
        const T* b = in + (int64_t)L->nbr[(v * d1 + j) * 2 + 1] * C;                            \
        const T* m = in + v * C;                                                                \
        T* o = out + v * C;                                                                     \
        _Pragma("omp simd")                                                                     \
        for (int64_t c = 0; c < C; c++) o[c] = (T)0.5 * m[c] + (T)0.25 * (a[c] + b[c]);         \
    }                                                                                           \
    FTZ_OFF                                                                                     \
}                                                                                               \
/* Both blur orders (directions 0..d, then d..0) of lat (M + 1, C), averaged into out:       \
 * out = (B_d...B_0 + B_0...B_d) lat / 2 (the caller's slice gain carries no 1/2 then).       \
 * a, b: scratch (M + 1, C); all rows M are zero. One call: no barrier per direction. */      \
void lat_blur_all_##T(const lattice* L, const T* lat, T* a, T* b, T* out, int64_t C) {         \
    int64_t M = L->M, sz = (M + 1) * C;                                                         \
    for (int pass = 0; pass < 2; pass++) {                                                      \
        const T* cur = lat;                                                                     \
        T* bufs[2] = {a, b};                                                                    \
        for (int step = 0; step <= L->d; step++) {                                              \
            int j = pass == 0 ? step : L->d - step;                                             \
            T* nxt = bufs[step % 2];                                                            \
            lat_blur_##T(L, cur, nxt, C, j, 0, M);                                              \
            for (int64_t c = 0; c < C; c++) nxt[M * C + c] = 0;                                 \
            cur = nxt;                                                                          \
        }                                                                                       \
        if (pass == 0) { for (int64_t q = 0; q < sz; q++) out[q] = cur[q]; }                    \
        else { for (int64_t q = 0; q < sz; q++) out[q] = (T)0.5 * (out[q] + cur[q]); }          \
    }                                                                                           \
}                                                                                               \
/* out[i] = gain * sum_k bary_ik lat[vid_ik] for points [i0, i1). */                           \
void lat_slice_##T(const lattice* L, const T* lat, int64_t C, double gain, int64_t i0,         \
                   int64_t i1, T* out) {                                                        \
    FTZ_ON                                                                                      \
    int d1 = L->d + 1;                                                                          \
    for (int64_t i = i0; i < i1; i++) {                                                         \
        T* o = out + i * C;                                                                     \
        for (int64_t c = 0; c < C; c++) o[c] = 0;                                               \
        for (int k = 0; k < d1; k++) {                                                          \
            T w = (T)L->bary[i * d1 + k];                                                       \
            const T* src = lat + (int64_t)L->vid[i * d1 + k] * C;                               \
            _Pragma("omp simd")                                                                 \
            for (int64_t c = 0; c < C; c++) o[c] += w * src[c];                                 \
        }                                                                                       \
        for (int64_t c = 0; c < C; c++) o[c] *= (T)gain;                                        \
    }                                                                                           \
    FTZ_OFF                                                                                     \
}

DEFINE_LATTICE(float)
DEFINE_LATTICE(double)
"""
