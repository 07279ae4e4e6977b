/* Hamming-distance kernels for cmhash's indexes and metrics (faiss layout: n x nbytes uint8 codes).
 *
 * knn:      exact top-k by exhaustive scan, ties broken by row (insertion) order. One pass over the
 *           database per block of QB (scalar) or QBV (AVX-512 VPOPCNTDQ, chosen at run time)
 *           queries; each query keeps, per distance d, the first k rows found at d (rows arrive in
 *           ascending order, so the first k are the ones that rank), and a bound: a row at
 *           distance >= bound can no longer enter the top k and costs one compare. Every row is
 *           loaded once per query block and compared against the block's queries held in registers.
 * dists:    the full (nq, n) uint16 distance matrix (range search, tests).
 * substr:   substring keys for multi-index hashing.
 * mih_knn:  exact top-k by multi-index hashing (Norouzi, Punjani & Fleet, "Fast exact search in
 *           Hamming space with multi-index hashing", TPAMI 2014): the code is cut into m disjoint
 *           substrings, each indexed by a direct-address table; the search radius r grows one step
 *           at a time and step r = s*m + a probes substring a at substring distance exactly s (the
 *           pigeonhole bound of Prop. 1 in its incremental form), verifies every new candidate with
 *           its full distance, and stops once k candidates lie within r. A query whose probes and
 *           verifications exceed ``budget`` (in units of one code compared by the flat scan) stops
 *           and is reported with visits = -1; the caller scans it exhaustively, so a query far from
 *           every code costs at most about (1 + budget / n) flat scans.
 * ivf:      top-k over the probed lists of an inverted file (approximate search, exact distances).
 * rank:     AP, AP@k and distance histograms of Hamming rankings by counting sort (the metrics).
 *
 * Arrays are passed as addresses (numpy's .ctypes.data) and checked by the Python wrapper; the
 * GIL is released while a kernel runs, so Python threads split the queries.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_TARGET 1
#define POPCNT_TARGET __attribute__((target("popcnt")))
#else
#define HAVE_TARGET 0
#define POPCNT_TARGET
#endif
#if defined(__GNUC__)
#define POPC(x) __builtin_popcountll(x)
#define INLINE static inline __attribute__((always_inline))
#else
static inline int POPC(uint64_t x) { x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    return (int)((((x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL) * 0x0101010101010101ULL) >> 56); }
#define INLINE static inline
#endif

#define QB 8      /* queries per database pass, scalar path */
#define QBV 16    /* queries per database pass, AVX-512 path (rows held in one register, queries in 16) */
#define QBA 32    /* queries per database pass, AVX2 path (a transposed block of 32 rows serves 32 queries) */
#define QBMAX 32

INLINE uint64_t ld64(const uint8_t *p) { uint64_t x; memcpy(&x, p, 8); return x; }
INLINE uint64_t ldtail(const uint8_t *p, int nb) { uint64_t x = 0; memcpy(&x, p, (size_t)nb); return x; }

#if defined(_MSC_VER)
#define THREAD_LOCAL __declspec(thread)
#else
#define THREAD_LOCAL __thread
#endif
static THREAD_LOCAL void *scratch_mem = NULL;
static THREAD_LOCAL size_t scratch_cap = 0;

/* A per-thread buffer of at least ``bytes``, reused by the next call on this thread (the kernels run
 * on a fixed pool of threads; its size is what the largest search needed). */
static void *scratch(size_t bytes) {
    if (bytes > scratch_cap) {
        free(scratch_mem);
        scratch_mem = malloc(bytes);
        scratch_cap = scratch_mem ? bytes : 0;
    }
    return scratch_mem;
}

INLINE int dist_any(const uint8_t *a, const uint8_t *b, int nbytes) {
    int d = 0, i = 0;
    for (; i + 8 <= nbytes; i += 8) d += POPC(ld64(a + i) ^ ld64(b + i));
    if (i < nbytes) d += POPC(ldtail(a + i, nbytes - i) ^ ldtail(b + i, nbytes - i));
    return d;
}

/* The distance bound of one query: rows at distance >= bound are not looked at. Rows arrive in
 * ascending order, so once k rows lie at distance <= b - 1, a later row at b - 1 or beyond ranks
 * after all of them: the bound drops to b - 1 and the rows held at b are let go. ``total`` counts
 * the rows held (distance <= bound); cnt[d] the rows seen at d. */
INLINE void shrink(int64_t *cnt, int *bound, int64_t *total, int k, int K) {
    while (*bound > 0) {
        int64_t at = *bound <= K ? cnt[*bound] : 0;
        if (*total - at < k) break;
        *total -= at;
        if (*bound <= K) cnt[*bound] = 0;
        (*bound)--;
    }
}

/* Per-query top-k state: cnt[d] rows seen at distance d (all of them), bucket[d][0..k) the first k. */
typedef struct {
    int k, K;
    int64_t row0;     /* added to the rows a scan pushes (the scans number rows from their first) */
    int bound[QBMAX];
    int64_t total[QBMAX];
    int64_t *cnt;     /* QB x (K+1) */
    int64_t *bucket;  /* QB x (K+1) x k */
} coll_t;

INLINE void push(coll_t *c, int j, int d, int64_t row) {
    int64_t *cnt = c->cnt + (size_t)j * (c->K + 1);
    int64_t n = cnt[d];
    if (n < c->k) c->bucket[((size_t)j * (c->K + 1) + d) * c->k + n] = c->row0 + row;
    cnt[d] = n + 1;
    c->total[j]++;
    shrink(cnt, &c->bound[j], &c->total[j], c->k, c->K);
}

INLINE void scan_block(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int nq, coll_t *c) {
    int bnd[QBMAX];
    for (int j = 0; j < QB; j++) bnd[j] = j < nq ? c->bound[j] : 0;  /* padded queries never push */
    if (nbytes == 8) {
        uint64_t qv[QB];
        for (int j = 0; j < QB; j++) qv[j] = j < nq ? ld64(q + (size_t)j * 8) : 0;
        for (int64_t i = 0; i < n; i++) {
            uint64_t x = ld64(db + (size_t)i * 8);
            for (int j = 0; j < QB; j++) {
                int d = POPC(x ^ qv[j]);
                if (d < bnd[j]) { push(c, j, d, i); bnd[j] = c->bound[j]; }
            }
        }
    } else if (nbytes == 16) {
        uint64_t q0[QB], q1[QB];
        for (int j = 0; j < QB; j++) {
            q0[j] = j < nq ? ld64(q + (size_t)j * 16) : 0;
            q1[j] = j < nq ? ld64(q + (size_t)j * 16 + 8) : 0;
        }
        for (int64_t i = 0; i < n; i++) {
            uint64_t x0 = ld64(db + (size_t)i * 16), x1 = ld64(db + (size_t)i * 16 + 8);
            for (int j = 0; j < QB; j++) {
                int d = POPC(x0 ^ q0[j]) + POPC(x1 ^ q1[j]);
                if (d < bnd[j]) { push(c, j, d, i); bnd[j] = c->bound[j]; }
            }
        }
    } else if (nbytes == 4) {
        uint64_t qv[QB];
        for (int j = 0; j < QB; j++) qv[j] = j < nq ? ldtail(q + (size_t)j * 4, 4) : 0;
        for (int64_t i = 0; i < n; i++) {
            uint64_t x = ldtail(db + (size_t)i * 4, 4);
            for (int j = 0; j < QB; j++) {
                int d = POPC(x ^ qv[j]);
                if (d < bnd[j]) { push(c, j, d, i); bnd[j] = c->bound[j]; }
            }
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *x = db + (size_t)i * nbytes;
            for (int j = 0; j < nq; j++) {
                int d = dist_any(x, q + (size_t)j * nbytes, nbytes);
                if (d < bnd[j]) { push(c, j, d, i); bnd[j] = c->bound[j]; }
            }
        }
    }
}

#if HAVE_TARGET
#include <immintrin.h>
#define AVX512_TARGET __attribute__((target("avx512f,avx512vpopcntdq,popcnt")))

/* Rows of 64-bit words i..i+7 of 8 consecutive codes, word w of each (codes of W words). */
#define VEC_PUSH(dvec, lm)                                                                        \
    {                                                                                             \
        __mmask8 m = _mm512_mask_cmplt_epu64_mask((lm), (dvec), bv[j]);                         \
        if (m) {                                                                                  \
            int64_t dd[8];                                                                        \
            _mm512_storeu_si512((void *)dd, (dvec));                                              \
            while (m) {                                                                           \
                int t = __builtin_ctz(m); m &= (__mmask8)(m - 1);                                 \
                if (dd[t] < c->bound[j]) push(c, j, (int)dd[t], i + t);                           \
            }                                                                                     \
            bv[j] = _mm512_set1_epi64(c->bound[j]);                                               \
        }                                                                                         \
    }

/* The same pass as scan_block with AVX-512 VPOPCNTDQ: 8 rows per instruction against QBV queries
 * held in registers (64- and 128-bit codes; other multiples of 8 bytes gather word by word). Rows
 * within a group of 8 are pushed in ascending order, so the first-k-per-distance rule holds. */
AVX512_TARGET static void scan_block_v(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int nq,
                                       coll_t *c) {
    int W = nbytes / 8;
    __m512i bv[QBV];
    for (int j = 0; j < QBV; j++) bv[j] = _mm512_set1_epi64(j < nq ? c->bound[j] : 0);
    if (W == 1) {
        __m512i qv[QBV];
        for (int j = 0; j < QBV; j++) qv[j] = _mm512_set1_epi64(j < nq ? (long long)ld64(q + (size_t)j * 8) : 0);
        for (int64_t i = 0; i < n; i += 8) {
            __mmask8 lm = n - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (n - i)) - 1);
            __m512i x = _mm512_maskz_loadu_epi64(lm, db + (size_t)i * 8);
            if (nq == QBV) {  /* a full block: unrolled, the queries in registers */
                for (int j = 0; j < QBV; j++) {
                    __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[j]));
                    VEC_PUSH(d, lm)
                }
            } else {  /* the last, partial block (a single query: the service's case) */
                for (int j = 0; j < nq; j++) {
                    __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[j]));
                    VEC_PUSH(d, lm)
                }
            }
        }
    } else if (W == 2) {
        __m512i q0[QBV], q1[QBV];
        for (int j = 0; j < QBV; j++) {
            q0[j] = _mm512_set1_epi64(j < nq ? (long long)ld64(q + (size_t)j * 16) : 0);
            q1[j] = _mm512_set1_epi64(j < nq ? (long long)ld64(q + (size_t)j * 16 + 8) : 0);
        }
        const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
        for (int64_t i = 0; i < n; i += 8) {
            int64_t r = n - i >= 8 ? 8 : n - i;  /* rows in this group: 2r words */
            __mmask8 lm = (__mmask8)((1u << r) - 1);
            __mmask8 ma = (__mmask8)(r >= 4 ? 0xFF : (1u << (2 * r)) - 1), mb = (__mmask8)(r > 4 ? (1u << (2 * (r - 4))) - 1 : 0);
            __m512i a = _mm512_maskz_loadu_epi64(ma, db + (size_t)i * 16);
            __m512i b = _mm512_maskz_loadu_epi64(mb, db + (size_t)i * 16 + 64);
            __m512i x0 = _mm512_permutex2var_epi64(a, even, b), x1 = _mm512_permutex2var_epi64(a, odd, b);
            if (nq == QBV) {
                for (int j = 0; j < QBV; j++) {
                    __m512i d = _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(x0, q0[j])),
                                                 _mm512_popcnt_epi64(_mm512_xor_si512(x1, q1[j])));
                    VEC_PUSH(d, lm)
                }
            } else {
                for (int j = 0; j < nq; j++) {
                    __m512i d = _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(x0, q0[j])),
                                                 _mm512_popcnt_epi64(_mm512_xor_si512(x1, q1[j])));
                    VEC_PUSH(d, lm)
                }
            }
        }
    } else {
        const __m512i lane = _mm512_set_epi64(7 * W, 6 * W, 5 * W, 4 * W, 3 * W, 2 * W, W, 0);
        for (int64_t i = 0; i < n; i += 8) {
            __mmask8 lm = n - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (n - i)) - 1);
            __m512i acc[QBV];
            for (int j = 0; j < QBV; j++) acc[j] = _mm512_setzero_si512();
            for (int w = 0; w < W; w++) {
                __m512i x = _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), lm, lane,
                                                        (const void *)(db + (size_t)i * nbytes + 8 * w), 8);
                for (int j = 0; j < nq; j++)
                    acc[j] = _mm512_add_epi64(acc[j], _mm512_popcnt_epi64(_mm512_xor_si512(
                        x, _mm512_set1_epi64((long long)ld64(q + (size_t)j * nbytes + 8 * w)))));
            }
            for (int j = 0; j < nq; j++) VEC_PUSH(acc[j], lm)
        }
    }
}
#endif

#if HAVE_TARGET
#define AVX2_TARGET __attribute__((target("avx2,popcnt")))

/* AVX2 scan (no AVX-512): byte-sliced blocks and per-query nibble tables, the layout of faiss's
 * 4-bit "fast scan". A block of 32 codes is transposed once per database pass so that one register
 * holds byte p of all 32 codes, split into low and high nibbles. For query q, byte p of a code
 * contributes popcount(x_p ^ q_p) = T_lo[x_p & 15] + T_hi[x_p >> 4] with the 16-entry tables
 * T_lo[v] = popcount(v ^ (q_p & 15)), T_hi[v] = popcount(v ^ (q_p >> 4)): two vpshufb and two byte
 * adds give byte p's share for 32 codes at once, and distances accumulate in bytes (codes of up to
 * 16 bytes: at most 128, so uint8 holds them and the bound). The transposition is paid once per
 * block of 32 queries. Slots of a block are not in row order (the unpack network interleaves
 * them): a2_row[w][t] is the row of slot t, and hits are pushed in row order. */
static int8_t a2_row[2][32], a2_slot[2][32];  /* [width 8 or 16][slot] -> row, [row] -> slot */

/* 8 registers of 4 codes of 8 bytes (32 codes) -> 8 registers, register p = byte p of the 32 codes */
AVX2_TARGET INLINE void a2_t8(__m256i r[8], __m256i o[8]) {
    const __m256i sh = _mm256_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15,
                                        0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    for (int i = 0; i < 8; i++) r[i] = _mm256_shuffle_epi8(r[i], sh);  /* 16-bit unit p: byte p of 2 codes */
    __m256i a[8], b[8];
    for (int i = 0; i < 4; i++) {  /* 32-bit unit: byte p of 4 codes; a[2i] bytes 0-3, a[2i+1] bytes 4-7 */
        a[2 * i] = _mm256_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm256_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++)  /* 64-bit unit: byte p of 8 codes */
        for (int g = 0; g < 2; g++) {
            b[4 * h + 2 * g] = _mm256_unpacklo_epi32(a[4 * g + h], a[4 * g + 2 + h]);      /* bytes 4h+0, 4h+1 */
            b[4 * h + 2 * g + 1] = _mm256_unpackhi_epi32(a[4 * g + h], a[4 * g + 2 + h]);  /* bytes 4h+2, 4h+3 */
        }
    for (int h = 0; h < 2; h++)
        for (int u = 0; u < 2; u++) {  /* 128-bit lane: byte p of 16 codes */
            o[4 * h + 2 * u] = _mm256_unpacklo_epi64(b[4 * h + u], b[4 * h + 2 + u]);
            o[4 * h + 2 * u + 1] = _mm256_unpackhi_epi64(b[4 * h + u], b[4 * h + 2 + u]);
        }
}

/* 32 codes of W = 8 or 16 bytes (contiguous) -> lo[p], hi[p] nibble registers, p < W */
AVX2_TARGET INLINE void a2_block(const uint8_t *x, int W, __m256i *lo, __m256i *hi, __m256i *raw) {
    __m256i r[8], o[16];
    if (W == 8) {
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_si256((const __m256i *)(x + 32 * i));
        a2_t8(r, o);
    } else {
        __m256i s[8];
        for (int j = 0; j < 8; j++) {
            __m256i c0 = _mm256_loadu_si256((const __m256i *)(x + 64 * j));
            __m256i c1 = _mm256_loadu_si256((const __m256i *)(x + 64 * j + 32));
            r[j] = _mm256_unpacklo_epi64(c0, c1);  /* bytes 0-7 of 4 codes */
            s[j] = _mm256_unpackhi_epi64(c0, c1);  /* bytes 8-15 of the same 4 codes, same places */
        }
        a2_t8(r, o);
        a2_t8(s, o + 8);
    }
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int p = 0; p < W; p++) {
        if (raw) raw[p] = o[p];
        lo[p] = _mm256_and_si256(o[p], m4);
        hi[p] = _mm256_and_si256(_mm256_srli_epi16(o[p], 4), m4);
    }
}

/* The slot order of a2_block, read off a block whose code c holds bytes c (at module load). */
AVX2_TARGET static void a2_init(void) {
    uint8_t x[32 * 16];
    __m256i lo[16], hi[16], raw[16];
    for (int w = 0; w < 2; w++) {
        int W = w ? 16 : 8;
        for (int c = 0; c < 32; c++) memset(x + c * W, c, (size_t)W);
        a2_block(x, W, lo, hi, raw);
        uint8_t b[32];
        _mm256_storeu_si256((__m256i *)b, raw[0]);
        for (int t = 0; t < 32; t++) { a2_row[w][t] = (int8_t)b[t]; a2_slot[w][b[t]] = (int8_t)t; }
    }
}

/* Distances of the block (lo, hi) to one query's tables, NB bytes: 32 bytes. (Two blocks per
 * table load were measured slower: 34k vs 44k queries/s at 64 bits, 200k codes.) */
AVX2_TARGET INLINE __m256i a2_dist(const __m256i *lo, const __m256i *hi, const __m256i *tab, int NB) {
    __m256i acc = _mm256_setzero_si256();
    for (int p = 0; p < NB; p++) {
        acc = _mm256_add_epi8(acc, _mm256_add_epi8(_mm256_shuffle_epi8(tab[2 * p], lo[p]),
                                                   _mm256_shuffle_epi8(tab[2 * p + 1], hi[p])));
        /* one running sum: left free, the compiler sums a tree of 32 vectors and spills it */
        __asm__("" : "+x"(acc));
    }
    return acc;
}

/* Push the slots of m (d < bound) of a block of r rows starting at row i, in row order. */
INLINE void a2_push(coll_t *c, int j, __m256i d, uint32_t m, int w, int r, int64_t i) {
    uint8_t dd[32];
    memcpy(dd, &d, 32);
    for (int t = 0; t < r; t++) {
        int s = a2_slot[w][t];
        if (((m >> s) & 1) && dd[s] < c->bound[j]) push(c, j, dd[s], i + t);
    }
}

AVX2_TARGET INLINE void a2_scan(const uint8_t *db, int64_t n, const int nbytes, const uint8_t *q, int nq, coll_t *c) {
    const int W = nbytes <= 8 ? 8 : 16, w = W == 16;
    __m256i tab[QBA][32];  /* per query, per byte: the low- and high-nibble tables in both lanes */
    __m256i lo[16], hi[16], bb[QBA];
    const __m256i pc4 = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i iota = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                          0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int j = 0; j < nq; j++) {
        for (int p = 0; p < nbytes; p++) {
            int v = q[(size_t)j * nbytes + p];
            tab[j][2 * p] = _mm256_shuffle_epi8(pc4, _mm256_xor_si256(iota, _mm256_set1_epi8((char)(v & 15))));
            tab[j][2 * p + 1] = _mm256_shuffle_epi8(pc4, _mm256_xor_si256(iota, _mm256_set1_epi8((char)(v >> 4))));
        }
        bb[j] = _mm256_set1_epi8((char)c->bound[j]);
    }
    uint8_t pad[32 * 16];
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t i = 0; i < n; i += 32) {
        int r = n - i >= 32 ? 32 : (int)(n - i);
        uint32_t valid = 0xFFFFFFFFu;
        if (r == 32 && nbytes == W) {
            a2_block(db + (size_t)i * nbytes, W, lo, hi, NULL);
        } else {  /* the last block, or codes narrower than the register layout: zero-padded copy */
            memset(pad, 0, sizeof pad);
            for (int t = 0; t < r; t++) memcpy(pad + t * W, db + (size_t)(i + t) * nbytes, (size_t)nbytes);
            a2_block(pad, W, lo, hi, NULL);
            if (r < 32) { valid = 0; for (int t = 0; t < r; t++) valid |= 1u << a2_slot[w][t]; }
        }
        for (int j = 0; j < nq; j++) {
            __m256i d = a2_dist(lo, hi, tab[j], nbytes);
            uint32_t m = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_subs_epu8(bb[j], d), zero)) & valid;
            if (__builtin_expect(m != 0, 0)) {  /* d < bound in some slots: push them in row order */
                a2_push(c, j, d, m, w, r, i);
                bb[j] = _mm256_set1_epi8((char)c->bound[j]);
            }
        }
    }
}

/* constant widths for the common lengths (the byte loops unroll) */
AVX2_TARGET static void scan_block_a2(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int nq, coll_t *c) {
    if (nbytes == 8) a2_scan(db, n, 8, q, nq, c);
    else if (nbytes == 16) a2_scan(db, n, 16, q, nq, c);
    else if (nbytes == 4) a2_scan(db, n, 4, q, nq, c);
    else a2_scan(db, n, nbytes, q, nq, c);
}
#endif

/* Write the k best (distance, row) of query j in (distance, row) order; missing slots: -1. */
static void emit(const coll_t *c, int j, int32_t *od, int64_t *oi) {
    const int64_t *cnt = c->cnt + (size_t)j * (c->K + 1);
    int o = 0;
    for (int d = 0; d <= c->K && o < c->k; d++) {
        int64_t m = cnt[d] < c->k ? cnt[d] : c->k;
        const int64_t *b = c->bucket + ((size_t)j * (c->K + 1) + d) * c->k;
        for (int64_t t = 0; t < m && o < c->k; t++, o++) { od[o] = d; oi[o] = b[t]; }
    }
    for (; o < c->k; o++) { od[o] = -1; oi[o] = -1; }
}

#define KNN_BODY(QN, SCAN)                                                                        \
    coll_t c;                                                                                     \
    c.k = k; c.K = nbytes * 8; c.row0 = 0;                                                        \
    c.cnt = (int64_t *)scratch(sizeof(int64_t) * (size_t)QN * (c.K + 1) * (1 + (size_t)k));    \
    if (!c.cnt) return -1;                                                                        \
    c.bucket = c.cnt + QN * (c.K + 1);                                                            \
    for (int64_t s = 0; s < nq; s += QN) {                                                        \
        int nb = (int)(nq - s < QN ? nq - s : QN);                                                \
        memset(c.cnt, 0, sizeof(int64_t) * QN * (c.K + 1));                                      \
        for (int j = 0; j < QN; j++) { c.bound[j] = c.K + 1; c.total[j] = 0; }                    \
        SCAN(db, n, nbytes, q + (size_t)s * nbytes, nb, &c);                                      \
        for (int j = 0; j < nb; j++) emit(&c, j, od + (s + j) * k, oi + (s + j) * k);            \
    }                                                                                             \
    return 0;

static int knn_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k,
                     int32_t *od, int64_t *oi) { KNN_BODY(QB, scan_block) }
#if HAVE_TARGET
POPCNT_TARGET static int knn_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                    int k, int32_t *od, int64_t *oi) { KNN_BODY(QB, scan_block) }
AVX2_TARGET static int knn_avx2(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                int k, int32_t *od, int64_t *oi) { KNN_BODY(QBA, scan_block_a2) }
/* The AVX-512 scan holds 16 queries in registers, and one pass over a large database per 16
 * queries is bound by memory bandwidth (10M 64-bit codes: 80 MB a pass; measured 607 queries/s
 * against 1,273 for the AVX2 scan's 32 queries a pass). So the rows are taken in L2-sized chunks,
 * and each chunk is scanned by QSUP blocks of 16 queries in turn while it is in cache: the
 * database is read once per 64 queries. Rows still reach each query in ascending order. */
#define QSUP 4
#define CHUNK_BYTES (256 * 1024)
AVX512_TARGET static int knn_avx512(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                    int k, int32_t *od, int64_t *oi) {
    const int QS = QBV * QSUP, K = nbytes * 8;
    int64_t *mem = (int64_t *)scratch(sizeof(int64_t) * (size_t)QS * (K + 1) * (1 + (size_t)k));
    if (!mem) return -1;
    const int64_t chunk = CHUNK_BYTES / nbytes > 64 ? CHUNK_BYTES / nbytes : 64;
    coll_t sub[QSUP];
    for (int64_t s = 0; s < nq; s += QS) {
        int nb = (int)(nq - s < QS ? nq - s : QS), ns = (nb + QBV - 1) / QBV;
        for (int b = 0; b < ns; b++) {
            coll_t *c = &sub[b];
            c->k = k; c->K = K; c->row0 = 0;
            c->cnt = mem + (size_t)b * QBV * (K + 1);
            c->bucket = mem + (size_t)QS * (K + 1) + (size_t)b * QBV * (K + 1) * k;
            memset(c->cnt, 0, sizeof(int64_t) * QBV * (K + 1));
            for (int j = 0; j < QBV; j++) { c->bound[j] = K + 1; c->total[j] = 0; }
        }
        for (int64_t r0 = 0; r0 < n; r0 += chunk) {
            int64_t rn = n - r0 < chunk ? n - r0 : chunk;
            for (int b = 0; b < ns; b++) {
                int m = nb - b * QBV < QBV ? nb - b * QBV : QBV;
                sub[b].row0 = r0;
                scan_block_v(db + (size_t)r0 * nbytes, rn, nbytes, q + (size_t)(s + b * QBV) * nbytes, m, &sub[b]);
            }
        }
        for (int b = 0; b < ns; b++) {
            int m = nb - b * QBV < QBV ? nb - b * QBV : QBV;
            for (int j = 0; j < m; j++)
                emit(&sub[b], j, od + (s + b * QBV + j) * k, oi + (s + b * QBV + j) * k);
        }
    }
    return 0;
}
#endif

#define DISTS_BODY                                                                                \
    for (int64_t j = 0; j < nq; j++) {                                                            \
        const uint8_t *qq = q + (size_t)j * nbytes;                                               \
        uint16_t *o = out + (size_t)j * n;                                                        \
        if (nbytes == 8) { uint64_t qv = ld64(qq);                                                \
            for (int64_t i = 0; i < n; i++) o[i] = (uint16_t)POPC(ld64(db + (size_t)i * 8) ^ qv); } \
        else for (int64_t i = 0; i < n; i++) o[i] = (uint16_t)dist_any(db + (size_t)i * nbytes, qq, nbytes); \
    }

static void dists_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, uint16_t *out) {
    DISTS_BODY
}
#if HAVE_TARGET
POPCNT_TARGET static void dists_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                       uint16_t *out) { DISTS_BODY }
#endif

/* Bits [off, off+len) of a code, bit j being bit j%8 of byte j/8 (LSB first), len <= 32. */
INLINE uint32_t substr(const uint8_t *c, int off, int len) {
    int b0 = off >> 3, sh = off & 7, nb = (sh + len + 7) >> 3;
    uint64_t x = 0;
    for (int t = 0; t < nb; t++) x |= (uint64_t)c[b0 + t] << (8 * t);
    return (uint32_t)((x >> sh) & ((len >= 32) ? 0xffffffffULL : ((1ULL << len) - 1)));
}

typedef struct { int32_t d; int64_t id; } cand_t;

static int cand_cmp(const void *a, const void *b) {
    const cand_t *x = (const cand_t *)a, *y = (const cand_t *)b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Relative costs of one table probe and one candidate verification (random memory accesses)
 * against one code compared by the scalar flat scan (sequential, about 0.35 ns per code per core
 * here); the AVX-512 scan compares a code in about a quarter of that (0.07-0.15 ns measured), so
 * mih_knn's caller scales them by 4 there (``cost_scale``), and by A2_SCALE where the scan is the
 * AVX2 one (2.0-2.9x the scalar scan at 64 and 128 bits, bench_index.py --sections exact). */
#define PROBE_COST 40
#define VISIT_COST 25
#define A2_SCALE 2

#define MIH_BODY                                                                                  \
    int K = nbytes * 8;                                                                           \
    uint32_t *stamp = (uint32_t *)calloc((size_t)(n > 0 ? n : 1), sizeof(uint32_t));             \
    int64_t *cnt = (int64_t *)malloc(sizeof(int64_t) * (K + 1));                                  \
    size_t cap = 1024; cand_t *cand = (cand_t *)malloc(sizeof(cand_t) * cap);                     \
    if (!stamp || !cnt || !cand) { free(stamp); free(cnt); free(cand); return -1; }               \
    uint32_t cur = 0;                                                                             \
    for (int64_t qi = 0; qi < nq; qi++) {                                                         \
        const uint8_t *qq = q + (size_t)qi * nbytes;                                              \
        if (++cur == 0) { memset(stamp, 0, sizeof(uint32_t) * (size_t)n); cur = 1; }              \
        memset(cnt, 0, sizeof(int64_t) * (K + 1));                                                \
        size_t nc = 0; int64_t within = 0, visited = 0, cost = 0; int gave_up = 0;                 \
        uint32_t qs[64];                                                                          \
        for (int t = 0; t < m; t++) qs[t] = substr(qq, offs[t], lens[t]);                         \
        int r = 0;                                                                                \
        for (r = 0; r <= K; r++) {                                                                \
            int s = r / m, a = r % m, L = lens[a];                                                \
            if (s <= L) {                                                                         \
                const uint32_t *ptr = ptrs + ptr_base[a], *tid = ids + (size_t)a * n;             \
                uint64_t lim = 1ULL << L, mask = s ? ((1ULL << s) - 1) : 0;                       \
                while (mask < lim) {                                                              \
                    uint32_t key = qs[a] ^ (uint32_t)mask;                                        \
                    cost += PROBE_COST * cost_scale;                                              \
                    for (uint32_t p = ptr[key]; p < ptr[key + 1]; p++) {                          \
                        uint32_t id = tid[p];                                                     \
                        if (stamp[id] == cur) continue;                                           \
                        stamp[id] = cur; visited++; cost += VISIT_COST * cost_scale;              \
                        int d = dist_any(db + (size_t)id * nbytes, qq, nbytes);                   \
                        cnt[d]++;                                                                 \
                        if (nc == cap) { cap *= 2; cand_t *nw = (cand_t *)realloc(cand, sizeof(cand_t) * cap); \
                            if (!nw) { free(stamp); free(cnt); free(cand); return -1; } cand = nw; } \
                        cand[nc].d = d; cand[nc].id = id; nc++;                                   \
                    }                                                                             \
                    if (cost > budget) { gave_up = 1; break; }  /* the ring is unfinished */     \
                    if (s == 0) break;                                                            \
                    uint64_t lo = mask & (~mask + 1), rr = mask + lo;                             \
                    mask = (((rr ^ mask) >> 2) / lo) | rr;   /* Gosper: next mask with s bits */  \
                }                                                                                 \
            }                                                                                     \
            if (gave_up) break;                                                                   \
            within += cnt[r];                                                                     \
            if (within >= k) break;                                                               \
        }                                                                                         \
        if (gave_up) {                                                                            \
            for (int o = 0; o < k; o++) { od[qi * k + o] = -1; oi[qi * k + o] = -1; }             \
            if (visits) visits[qi] = -1;                                                          \
            continue;                                                                             \
        }                                                                                         \
        /* every row within r is in cand: keep distances up to the k-th one, sort by (d, row) */ \
        int64_t acc = 0; int t = 0;                                                               \
        for (t = 0; t <= K; t++) { acc += cnt[t]; if (acc >= k) break; }                          \
        size_t w = 0;                                                                             \
        for (size_t u = 0; u < nc; u++) if (cand[u].d <= t) cand[w++] = cand[u];                  \
        qsort(cand, w, sizeof(cand_t), cand_cmp);                                                 \
        int o = 0;                                                                                \
        for (; o < k && (size_t)o < w; o++) { od[qi * k + o] = cand[o].d; oi[qi * k + o] = cand[o].id; } \
        for (; o < k; o++) { od[qi * k + o] = -1; oi[qi * k + o] = -1; }                          \
        if (visits) visits[qi] = visited;                                                         \
    }                                                                                             \
    free(stamp); free(cnt); free(cand);                                                           \
    return 0;

static int mih_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k, int m,
                     const int32_t *offs, const int32_t *lens, const uint32_t *ptrs, const int64_t *ptr_base,
                     const uint32_t *ids, int32_t *od, int64_t *oi, int64_t *visits, int64_t budget,
                     int cost_scale) { MIH_BODY }
#if HAVE_TARGET
POPCNT_TARGET static int mih_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k,
                                    int m, const int32_t *offs, const int32_t *lens, const uint32_t *ptrs,
                                    const int64_t *ptr_base, const uint32_t *ids, int32_t *od, int64_t *oi,
                                    int64_t *visits, int64_t budget, int cost_scale) { MIH_BODY }
#endif

/* Inverted-file search over binary codes (approximate k-NN, exact distances). The database codes are
 * stored grouped by list (a coarse quantizer's cell), rows ascending inside a list. For a chunk of
 * queries, each with its nprobe lists (chosen by the caller), the (query, list) pairs are inverted
 * so that every list is read once per chunk and compared with the queries that probe it, each query
 * in turn streaming the list from L1; each query keeps a distance bound and its candidates, so the
 * answer is the top-k of the codes it probed, ordered by (distance, row) like every other search.
 * With every list probed its distances are the exact answer's. */
typedef struct {
    int k, K, cap;
    int32_t *bound;   /* per query */
    int64_t *total;   /* per query: candidates held at distance <= bound */
    int64_t *cnt;     /* per query x (K+1): candidates seen at d */
    int64_t *cand;    /* per query x cap: (d << 48) | position, in the order seen */
    int32_t *ncand;   /* per query */
} qstate_t;

/* Drop what can no longer be returned: every candidate nearer than the bound stays (fewer than k),
 * and at the bound the first k seen (lists come in any order: a tie at the k-th distance keeps the
 * candidates probed first). At most 2k remain, so a full array of cap = 4k halves at least. */
static void compact(qstate_t *c, int64_t j) {
    int64_t *cd = c->cand + (size_t)j * c->cap, B = c->bound[j];
    int32_t n = c->ncand[j], w = 0, at = 0;
    for (int32_t i = 0; i < n; i++) {
        int64_t d = cd[i] >> 48;
        if (d < B || (d == B && at++ < c->k)) cd[w++] = cd[i];
    }
    c->ncand[j] = w;
}

/* A candidate: appended to the query's short array (one cache line written; a per-distance bucket
 * layout was measured at a cache miss or three per candidate), counted, and the bound updated. */
INLINE void push_any(qstate_t *c, int64_t j, int d, int64_t pos) {
    if (c->ncand[j] == c->cap) compact(c, j);
    c->cand[(size_t)j * c->cap + c->ncand[j]++] = ((int64_t)d << 48) | pos;
    int64_t *cnt = c->cnt + (size_t)j * (c->K + 1);
    cnt[d]++;
    c->total[j]++;
    shrink(cnt, &c->bound[j], &c->total[j], c->k, c->K);
}

/* The k best of a query's candidates by (distance, row): positions become rows here, once per
 * result (a row lookup in the scan loop was a cache miss per candidate); a counting sort by
 * distance, then rows sorted within each distance. */
static void emit_any(qstate_t *c, int64_t j, const int64_t *rows, int32_t *od, int64_t *oi) {
    compact(c, j);
    int64_t *cd = c->cand + (size_t)j * c->cap, *cnt = c->cnt + (size_t)j * (c->K + 1);
    int32_t n = c->ncand[j];
    memset(cnt, 0, sizeof(int64_t) * (c->K + 1));
    for (int32_t i = 0; i < n; i++) cnt[cd[i] >> 48]++;
    int64_t acc = 0;
    for (int d = 0; d <= c->K; d++) { int64_t v = cnt[d]; cnt[d] = acc; acc += v; }  /* first slot of d */
    int64_t sorted[4 * 1024 + 1];  /* n <= 2k after compact; k <= 2048 here (the caller checks) */
    int32_t dist[4 * 1024 + 1];
    for (int32_t i = 0; i < n; i++) {
        int64_t d = cd[i] >> 48, at = cnt[d]++;
        sorted[at] = rows[cd[i] & ((1LL << 48) - 1)];
        dist[at] = (int32_t)d;
    }
    for (int32_t i = 1; i < n; i++) {  /* rows within a distance: short runs, mostly in order */
        int64_t v = sorted[i]; int32_t dv = dist[i], u = i - 1;
        while (u >= 0 && dist[u] == dv && sorted[u] > v) { sorted[u + 1] = sorted[u]; u--; }
        sorted[u + 1] = v;
    }
    int o = 0;
    for (; o < c->k && o < n; o++) { od[o] = dist[o]; oi[o] = sorted[o]; }
    for (; o < c->k; o++) { od[o] = -1; oi[o] = -1; }
}

INLINE void ivf_scan_plain(const uint8_t *codes, int64_t pos0, int64_t nl, int nbytes, const uint8_t *q,
                           const int64_t *qidx, int nqb, qstate_t *c) {
    for (int64_t i = 0; i < nl; i++) {
        const uint8_t *x = codes + (size_t)i * nbytes;
        for (int j = 0; j < nqb; j++) {
            int d = dist_any(x, q + (size_t)qidx[j] * nbytes, nbytes);
            if (d < c->bound[qidx[j]]) push_any(c, qidx[j], d, pos0 + i);
        }
    }
}

#if HAVE_TARGET
/* One list against the queries that probe it, with AVX-512: a list is small (about a thousand codes)
 * and stays in L1 while each query in turn streams it, 8 codes per instruction, with its distance
 * bound in a register. */
AVX512_TARGET static void ivf_scan_v(const uint8_t *codes, int64_t pos0, int64_t nl, int nbytes,
                                     const uint8_t *q, const int64_t *qidx, int nqb, qstate_t *c) {
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    for (int j = 0; j < nqb; j++) {
        int64_t qj = qidx[j];
        const uint8_t *qq = q + (size_t)qj * nbytes;
        const __m512i q0 = _mm512_set1_epi64((long long)ld64(qq));
        const __m512i q1 = _mm512_set1_epi64(nbytes == 16 ? (long long)ld64(qq + 8) : 0);
        __m512i bv = _mm512_set1_epi64(c->bound[qj]);
        for (int64_t i = 0; i < nl; i += 8) {
            int64_t r = nl - i >= 8 ? 8 : nl - i;
            __mmask8 lm = (__mmask8)((1u << r) - 1);  /* full groups: 0xFF */
            __m512i d;
            if (nbytes == 8) {
                __m512i x = r == 8 ? _mm512_loadu_si512((const void *)(codes + (size_t)i * 8))
                                   : _mm512_maskz_loadu_epi64(lm, codes + (size_t)i * 8);
                d = _mm512_popcnt_epi64(_mm512_xor_si512(x, q0));
            } else {
                __mmask8 ma = (__mmask8)(r >= 4 ? 0xFF : (1u << (2 * r)) - 1), mb = (__mmask8)(r > 4 ? (1u << (2 * (r - 4))) - 1 : 0);
                __m512i a = _mm512_maskz_loadu_epi64(ma, codes + (size_t)i * 16);
                __m512i b = _mm512_maskz_loadu_epi64(mb, codes + (size_t)i * 16 + 64);
                d = _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(_mm512_permutex2var_epi64(a, even, b), q0)),
                                     _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_permutex2var_epi64(a, odd, b), q1)));
            }
            __mmask8 m = _mm512_mask_cmplt_epu64_mask(lm, d, bv);
            if (__builtin_expect(m != 0, 0)) {
                while (m) {  /* a lane read through a register: a store and reload stalled here */
                    int t = __builtin_ctz(m); m &= (__mmask8)(m - 1);
                    int dt = (int)_mm_cvtsi128_si64(_mm512_castsi512_si128(
                        _mm512_permutexvar_epi64(_mm512_set1_epi64(t), d)));
                    if (dt < c->bound[qj]) push_any(c, qj, dt, pos0 + i + t);
                }
                bv = _mm512_set1_epi64(c->bound[qj]);
            }
        }
    }
}
#endif

#define IVF_CHUNK 512
/* probe: nq x nprobe list numbers (-1: none). Returns -1 when out of memory. */
INLINE int ivf_core(const uint8_t *codes, const int64_t *rows, const int64_t *lptr, int64_t nlist, const int nbytes,
                    const uint8_t *q, int64_t nq, int k, const int64_t *probe, int nprobe, int32_t *od, int64_t *oi,
                    int vec) {
    qstate_t c;
    int64_t CH = nq < IVF_CHUNK ? nq : IVF_CHUNK;
    c.k = k; c.K = nbytes * 8;
    /* one scratch block per thread, kept between calls: a fresh one would be paged in every call */
    c.cap = 4 * k;
    size_t w = (size_t)(CH + 1), L1 = (size_t)(c.K + 1);
    size_t need = 8 * (w + w * L1 + w * (size_t)c.cap + (size_t)(nlist + 1) + (size_t)(CH * nprobe + 1)) + 4 * 2 * w;
    int64_t *mem = (int64_t *)scratch(need);
    if (!mem) return -1;
    c.total = mem; c.cnt = c.total + w; c.cand = c.cnt + w * L1;
    int64_t *head = c.cand + w * (size_t)c.cap, *pairs = head + nlist + 1;
    c.bound = (int32_t *)(pairs + CH * nprobe + 1);
    c.ncand = c.bound + w;
    for (int64_t s = 0; s < nq; s += CH) {
        int64_t nc = nq - s < CH ? nq - s : CH;
        memset(c.cnt, 0, sizeof(int64_t) * (size_t)nc * (c.K + 1));
        for (int64_t j = 0; j < nc; j++) { c.bound[j] = c.K + 1; c.total[j] = 0; c.ncand[j] = 0; }
        const uint8_t *qc = q + (size_t)s * nbytes;
        /* a starting bound from each query's nearest list: its distance histogram gives the k-th
         * distance t there, so only codes at t or nearer are pushed at all */
        for (int64_t j = 0; j < nc; j++) {
            int64_t l = probe[(s + j) * nprobe];
            if (l < 0 || l >= nlist || lptr[l + 1] - lptr[l] < k) continue;
            int64_t *h = c.cnt + (size_t)j * (c.K + 1);  /* zero; used as scratch, zeroed again below */
            const uint8_t *lc = codes + (size_t)lptr[l] * nbytes, *qq = qc + (size_t)j * nbytes;
            for (int64_t i = 0; i < lptr[l + 1] - lptr[l]; i++) h[dist_any(lc + (size_t)i * nbytes, qq, nbytes)]++;
            int64_t acc = 0; int t = 0;
            for (t = 0; t <= c.K; t++) { acc += h[t]; if (acc >= k) break; }
            c.bound[j] = t + 1;
            memset(h, 0, sizeof(int64_t) * (c.K + 1));
        }
        /* two rounds: every query's nearest list first (its bound tightens early, so the other
         * lists push little), then the rest */
        for (int round = 0; round < 2; round++) {
        int p0 = round ? 1 : 0, p1 = round ? nprobe : 1;
        /* invert (query, list) pairs: queries of each list, by counting sort on the list */
        memset(head, 0, sizeof(int64_t) * (size_t)(nlist + 1));
        for (int64_t j = 0; j < nc; j++)
            for (int p = p0; p < p1; p++) { int64_t l = probe[(s + j) * nprobe + p]; if (l >= 0 && l < nlist) head[l + 1]++; }
        for (int64_t l = 0; l < nlist; l++) head[l + 1] += head[l];
        for (int64_t j = 0; j < nc; j++)
            for (int p = p0; p < p1; p++) {
                int64_t l = probe[(s + j) * nprobe + p];
                if (l >= 0 && l < nlist) pairs[head[l]++] = j;
            }
        for (int64_t l = nlist; l > 0; l--) head[l] = head[l - 1];
        head[0] = 0;
        for (int64_t l = 0; l < nlist; l++) {
            int64_t a = head[l], b = head[l + 1], nl = lptr[l + 1] - lptr[l];
            if (a == b || nl == 0) continue;
            const uint8_t *lc = codes + (size_t)lptr[l] * nbytes;
            for (int64_t t = a; t < b; t += QBV) {
                int nqb = (int)(b - t < QBV ? b - t : QBV);
#if HAVE_TARGET
                if (vec) ivf_scan_v(lc, lptr[l], nl, nbytes, qc, pairs + t, nqb, &c); else
#endif
                ivf_scan_plain(lc, lptr[l], nl, nbytes, qc, pairs + t, nqb, &c);
            }
        }
        }
        for (int64_t j = 0; j < nc; j++) emit_any(&c, j, rows, od + (s + j) * k, oi + (s + j) * k);
    }
    return 0;
}

static int ivf_plain(const uint8_t *codes, const int64_t *rows, const int64_t *lptr, int64_t nlist, int nbytes,
                     const uint8_t *q, int64_t nq, int k, const int64_t *probe, int nprobe, int32_t *od, int64_t *oi) {
    return ivf_core(codes, rows, lptr, nlist, nbytes, q, nq, k, probe, nprobe, od, oi, 0);
}
#if HAVE_TARGET
POPCNT_TARGET static int ivf_popcnt(const uint8_t *codes, const int64_t *rows, const int64_t *lptr, int64_t nlist,
                                    int nbytes, const uint8_t *q, int64_t nq, int k, const int64_t *probe, int nprobe,
                                    int32_t *od, int64_t *oi, int vec) {
    /* constant code widths for the common lengths: the distance loops unroll */
    if (nbytes == 8) return ivf_core(codes, rows, lptr, nlist, 8, q, nq, k, probe, nprobe, od, oi, vec);
    if (nbytes == 16) return ivf_core(codes, rows, lptr, nlist, 16, q, nq, k, probe, nprobe, od, oi, vec);
    return ivf_core(codes, rows, lptr, nlist, nbytes, q, nq, k, probe, nprobe, od, oi, vec);
}
#endif

/* Ranking metrics of Hamming ranking by counting sort (the ranking has only K + 1 distinct keys):
 * pass 1 computes every item's distance and relevance (labels as bit sets: relevant when they share
 * a bit) and counts items and relevant items per distance; an item's count before it is its place
 * in its distance group, so its rank is the group's first rank (a prefix sum over the K + 1 counts)
 * plus that place: ties broken by database index, as a stable sort would, with no sort. Pass 2
 * visits the relevant items only. The database is walked as SEG interleaved segments (each with its
 * own counters, ranked one after the other inside a group) so that consecutive items at the same
 * distance do not wait on one counter. Outputs per query: AP over the full ranking, AP inside the
 * top k (the community's mAP@k: divided by the relevant items found there) and the two histograms
 * (items, relevant items per distance) from which the tie-averaged AP and PR curves follow.
 * Counters hold items in their low 32 bits and relevant items in their high 32 bits. */
#define SEG 4
INLINE int rank_core(const uint8_t *db, int64_t n, const int nbytes, const uint8_t *q, int64_t nq,
                     const uint64_t *qlab, const uint64_t *dlab, const int W, int64_t topk, double *out_ap,
                     double *out_apk, int32_t *hist_n, int32_t *hist_r) {
    int K = nbytes * 8;
    int64_t L = (n + SEG - 1) / SEG;
    uint32_t *rkey = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)(n + 1));  /* relevant: segment, distance */
    uint64_t *rpos = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(n + 1));  /* relevant: counter before it */
    double *inv = (double *)malloc(sizeof(double) * (size_t)(n + 2));
    uint64_t *cnt = (uint64_t *)malloc(sizeof(uint64_t) * SEG * (K + 1));
    if (!rkey || !rpos || !inv || !cnt) { free(rkey); free(rpos); free(inv); free(cnt); return -1; }
    inv[0] = 0;
    for (int64_t t = 1; t <= n + 1; t++) inv[t] = 1.0 / (double)t;
    for (int64_t qi = 0; qi < nq; qi++) {
        const uint8_t *qq = q + (size_t)qi * nbytes;
        const uint64_t *ql = qlab + (size_t)qi * W;
        int32_t *hn = hist_n + (size_t)qi * (K + 1), *hr = hist_r + (size_t)qi * (K + 1);
        memset(cnt, 0, sizeof(uint64_t) * SEG * (K + 1));
        int64_t nrel = 0;
        for (int64_t i0 = 0; i0 < L; i0++) {
            for (int sg = 0; sg < SEG; sg++) {
                int64_t i = sg * L + i0;
                if (i >= n) continue;
                int d = dist_any(db + (size_t)i * nbytes, qq, nbytes);
                const uint64_t *dl = dlab + (size_t)i * W;
                uint64_t hit = 0;
                for (int w = 0; w < W; w++) hit |= ql[w] & dl[w];
                uint64_t r = hit != 0;
                uint32_t key = (uint32_t)(sg * (K + 1) + d);
                uint64_t o = cnt[key];
                cnt[key] = o + 1 + (r << 32);
                rkey[nrel] = key; rpos[nrel] = o; nrel += (int64_t)r;  /* kept only when relevant */
            }
        }
        /* first rank of each (distance, segment) group, less one: group by group, segments in order */
        uint64_t acc = 0;
        for (int d = 0; d <= K; d++) {
            uint64_t nd = 0, rd = 0;
            for (int sg = 0; sg < SEG; sg++) {
                uint64_t v = cnt[(size_t)sg * (K + 1) + d];
                cnt[(size_t)sg * (K + 1) + d] = acc; acc += v;
                nd += v & 0xffffffffULL; rd += v >> 32;
            }
            hn[d] = (int32_t)nd; hr[d] = (int32_t)rd;
        }
        double ap[4] = {0}, apk[4] = {0}; int64_t relk[4] = {0};
        const uint64_t inc = 1 + (1ULL << 32);
        for (int64_t j = 0; j < nrel; j++) {  /* rank and hits of each relevant item; 4 accumulators */
            uint64_t p = cnt[rkey[j]] + rpos[j] + inc;
            uint64_t rank = p & 0xffffffffULL, h = p >> 32;
            double x = (double)h * inv[rank];
            int in = rank <= (uint64_t)topk;
            ap[j & 3] += x; apk[j & 3] += in ? x : 0.0; relk[j & 3] += in;
        }
        double sap = (ap[0] + ap[1]) + (ap[2] + ap[3]), sapk = (apk[0] + apk[1]) + (apk[2] + apk[3]);
        int64_t srel = relk[0] + relk[1] + relk[2] + relk[3];
        out_ap[qi] = nrel ? sap / (double)nrel : 0.0;
        out_apk[qi] = srel ? sapk / (double)srel : 0.0;
    }
    free(rkey); free(rpos); free(inv); free(cnt);
    return 0;
}

/* Specialised for the common shapes (32-, 64- and 128-bit codes, up to 64 labels): constant sizes
 * let the compiler unroll the distance and label loops. */
#define RANK_DISPATCH                                                                             \
    if (nbytes == 8 && W == 1) return rank_core(db, n, 8, q, nq, qlab, dlab, 1, topk, out_ap, out_apk, hist_n, hist_r); \
    if (nbytes == 16 && W == 1) return rank_core(db, n, 16, q, nq, qlab, dlab, 1, topk, out_ap, out_apk, hist_n, hist_r); \
    if (nbytes == 4 && W == 1) return rank_core(db, n, 4, q, nq, qlab, dlab, 1, topk, out_ap, out_apk, hist_n, hist_r); \
    return rank_core(db, n, nbytes, q, nq, qlab, dlab, W, topk, out_ap, out_apk, hist_n, hist_r);

static int rank_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, const uint64_t *qlab,
                      const uint64_t *dlab, int W, int64_t topk, double *out_ap, double *out_apk, int32_t *hist_n,
                      int32_t *hist_r) { RANK_DISPATCH }
#if HAVE_TARGET
POPCNT_TARGET static int rank_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                     const uint64_t *qlab, const uint64_t *dlab, int W, int64_t topk, double *out_ap,
                                     double *out_apk, int32_t *hist_n, int32_t *hist_r) { RANK_DISPATCH }
#endif

/* Instruction sets, by level: 1 scalar (popcnt when the CPU has it), 2 AVX2, 3 AVX-512 VPOPCNTDQ
 * (Ice Lake and later, Zen 4). Every call gets a cap from Python (CMHASH_KERNEL: scalar, avx2,
 * avx512; default the highest), and each kernel takes the highest level at or below it that the
 * CPU has and that serves the code width: AVX-512 codes of whole 64-bit words up to 1024 bits,
 * AVX2 codes of up to 16 bytes (its distances are bytes), scalar the rest. */
static int cpu_level(void) {
#if HAVE_TARGET
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq") ? 3
            : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") ? 2 : 1;
    }
    return v;
#else
    return 1;
#endif
}

static int scan_level(int cap, int nbytes) {
    int lv = cap < 1 || cap > cpu_level() ? cpu_level() : cap;
    if (lv >= 3 && nbytes % 8 == 0 && nbytes <= 128) return 3;
    if (lv >= 2 && nbytes <= 16) return 2;
    return 1;
}

static int use_popcnt(void) {
#if HAVE_TARGET
    static int v = -1;
    if (v < 0) { __builtin_cpu_init(); v = __builtin_cpu_supports("popcnt") ? 1 : 0; }
    return v;
#else
    return 0;
#endif
}

#define ADDR(x) ((void *)(uintptr_t)(x))

static PyObject *py_knn(PyObject *self, PyObject *args) {
    unsigned long long db, q, od, oi; long long n, nq; int nbytes, k, cap = 0, rc;
    if (!PyArg_ParseTuple(args, "KLiKLiKK|i", &db, &n, &nbytes, &q, &nq, &k, &od, &oi, &cap)) return NULL;
    int pc = use_popcnt(), lv = scan_level(cap, nbytes);
    Py_BEGIN_ALLOW_THREADS
#if HAVE_TARGET
    if (lv == 3) rc = knn_avx512(ADDR(db), n, nbytes, ADDR(q), nq, k, ADDR(od), ADDR(oi)); else
    if (lv == 2) rc = knn_avx2(ADDR(db), n, nbytes, ADDR(q), nq, k, ADDR(od), ADDR(oi)); else
    if (pc) rc = knn_popcnt(ADDR(db), n, nbytes, ADDR(q), nq, k, ADDR(od), ADDR(oi)); else
#endif
    rc = knn_plain(ADDR(db), n, nbytes, ADDR(q), nq, k, ADDR(od), ADDR(oi));
    Py_END_ALLOW_THREADS
    (void)pc; (void)lv;
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_dists(PyObject *self, PyObject *args) {
    unsigned long long db, q, out; long long n, nq; int nbytes;
    if (!PyArg_ParseTuple(args, "KLiKLK", &db, &n, &nbytes, &q, &nq, &out)) return NULL;
    int pc = use_popcnt();
    Py_BEGIN_ALLOW_THREADS
#if HAVE_TARGET
    if (pc) dists_popcnt(ADDR(db), n, nbytes, ADDR(q), nq, ADDR(out)); else
#endif
    dists_plain(ADDR(db), n, nbytes, ADDR(q), nq, ADDR(out));
    Py_END_ALLOW_THREADS
    (void)pc;
    Py_RETURN_NONE;
}

static PyObject *py_substr(PyObject *self, PyObject *args) {
    unsigned long long db, out; long long n; int nbytes, off, len;
    if (!PyArg_ParseTuple(args, "KLiiiK", &db, &n, &nbytes, &off, &len, &out)) return NULL;
    const uint8_t *c = ADDR(db); uint32_t *o = ADDR(out);
    Py_BEGIN_ALLOW_THREADS
    for (long long i = 0; i < n; i++) o[i] = substr(c + (size_t)i * nbytes, off, len);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_mih_knn(PyObject *self, PyObject *args) {
    unsigned long long db, q, offs, lens, ptrs, base, ids, od, oi, visits; long long n, nq, budget;
    int nbytes, k, m, cap = 0, rc;
    if (!PyArg_ParseTuple(args, "KLiKLiiKKKKKKKKL|i", &db, &n, &nbytes, &q, &nq, &k, &m, &offs, &lens, &ptrs, &base,
                          &ids, &od, &oi, &visits, &budget, &cap)) return NULL;
    if (m < 1 || m > 64) { PyErr_SetString(PyExc_ValueError, "m must be 1..64"); return NULL; }
    int lv = scan_level(cap, nbytes);  /* the exhaustive scan it competes with */
    int pc = use_popcnt(), scale = lv == 3 ? 4 : lv == 2 ? A2_SCALE : 1;
    Py_BEGIN_ALLOW_THREADS
#if HAVE_TARGET
    if (pc) rc = mih_popcnt(ADDR(db), n, nbytes, ADDR(q), nq, k, m, ADDR(offs), ADDR(lens), ADDR(ptrs), ADDR(base),
                            ADDR(ids), ADDR(od), ADDR(oi), ADDR(visits), budget, scale); else
#endif
    rc = mih_plain(ADDR(db), n, nbytes, ADDR(q), nq, k, m, ADDR(offs), ADDR(lens), ADDR(ptrs), ADDR(base),
                   ADDR(ids), ADDR(od), ADDR(oi), ADDR(visits), budget, scale);
    Py_END_ALLOW_THREADS
    (void)pc;
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_rank(PyObject *self, PyObject *args) {
    unsigned long long db, q, ql, dl, ap, apk, hn, hr; long long n, nq, topk; int nbytes, W, rc;
    if (!PyArg_ParseTuple(args, "KLiKLKKiLKKKK", &db, &n, &nbytes, &q, &nq, &ql, &dl, &W, &topk, &ap, &apk, &hn, &hr))
        return NULL;
    if (nbytes > 8191) { PyErr_SetString(PyExc_ValueError, "codes longer than 65535 bits"); return NULL; }
    if (n >= 0xffffffffLL) { PyErr_SetString(PyExc_ValueError, "a database of 2^32 items or more"); return NULL; }
    int pc = use_popcnt();
    Py_BEGIN_ALLOW_THREADS
#if HAVE_TARGET
    if (pc) rc = rank_popcnt(ADDR(db), n, nbytes, ADDR(q), nq, ADDR(ql), ADDR(dl), W, topk, ADDR(ap), ADDR(apk),
                             ADDR(hn), ADDR(hr)); else
#endif
    rc = rank_plain(ADDR(db), n, nbytes, ADDR(q), nq, ADDR(ql), ADDR(dl), W, topk, ADDR(ap), ADDR(apk), ADDR(hn), ADDR(hr));
    Py_END_ALLOW_THREADS
    (void)pc;
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_ivf(PyObject *self, PyObject *args) {
    unsigned long long codes, rows, lptr, q, probe, od, oi; long long nlist, nq; int nbytes, k, nprobe, cap = 0, rc;
    if (!PyArg_ParseTuple(args, "KKKLiKLiKiKK|i", &codes, &rows, &lptr, &nlist, &nbytes, &q, &nq, &k, &probe, &nprobe,
                          &od, &oi, &cap)) return NULL;
    if (k < 1 || k > 2048) { PyErr_SetString(PyExc_ValueError, "ivf: k must be 1..2048"); return NULL; }
    /* lists are short and probed by few queries each: the AVX2 block layout does not pay there */
    int pc = use_popcnt(), av = scan_level(cap, nbytes) == 3 && (nbytes == 8 || nbytes == 16);
    Py_BEGIN_ALLOW_THREADS
#if HAVE_TARGET
    if (pc) rc = ivf_popcnt(ADDR(codes), ADDR(rows), ADDR(lptr), nlist, nbytes, ADDR(q), nq, k, ADDR(probe), nprobe,
                            ADDR(od), ADDR(oi), av); else
#endif
    rc = ivf_plain(ADDR(codes), ADDR(rows), ADDR(lptr), nlist, nbytes, ADDR(q), nq, k, ADDR(probe), nprobe, ADDR(od), ADDR(oi));
    Py_END_ALLOW_THREADS
    (void)pc; (void)av;
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_cpu_level(PyObject *self, PyObject *args) {
    return PyLong_FromLong(cpu_level());
}

static PyObject *py_scan_level(PyObject *self, PyObject *args) {
    int cap, nbytes;
    if (!PyArg_ParseTuple(args, "ii", &cap, &nbytes)) return NULL;
    return PyLong_FromLong(scan_level(cap, nbytes) == 1 ? (use_popcnt() ? 1 : 0) : scan_level(cap, nbytes));
}

static PyMethodDef methods[] = {
    {"cpu_level", py_cpu_level, METH_NOARGS, "cpu_level(): 3 AVX-512 VPOPCNTDQ, 2 AVX2, 1 scalar"},
    {"scan_level", py_scan_level, METH_VARARGS, "scan_level(cap, nbytes): the flat scan's path, 0 portable .. 3"},
    {"knn", py_knn, METH_VARARGS, "knn(db, n, nbytes, q, nq, k, out_d, out_i): exact top-k, ties by row"},
    {"dists", py_dists, METH_VARARGS, "dists(db, n, nbytes, q, nq, out): (nq, n) uint16 distances"},
    {"substr", py_substr, METH_VARARGS, "substr(db, n, nbytes, off, len, out): uint32 substring keys"},
    {"mih_knn", py_mih_knn, METH_VARARGS, "mih_knn(...): exact top-k by multi-index hashing"},
    {"ivf", py_ivf, METH_VARARGS, "ivf(...): top-k over the probed lists of an inverted file"},
    {"rank", py_rank, METH_VARARGS, "rank(...): AP, AP@k and distance histograms by counting sort"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_kernels", "cmhash Hamming kernels", -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) {
#if HAVE_TARGET
    if (cpu_level() >= 2) a2_init();
#endif
    return PyModule_Create(&moddef);
}
