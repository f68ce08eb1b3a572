"""C source of the permutohedral lattice kernels (``lat_*``), appended to the window kernels'
source by :mod:`denseloss.losses._native_src` (it uses that file's includes and ``FTZ_ON``).

A permutohedral lattice (Adams, Baek & Davis 2010) whose splat / blur / slice structures are built
once per image (``lat_points`` in parallel, then ``lat_index``) and then applied to all C channels
at once; the arithmetic mirrors :class:`denseloss.losses._lattice.PermutohedralLattice` step by
step. Kept in its own module only for length; compiled as one unit with the window kernels.
"""

LATTICE = r"""
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
