/* The shared header of the Hamming-distance kernels for cmhash's indexes and metrics (faiss layout: n x nbytes uint8 codes).
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
 *
 * Files (the way faiss splits its Hamming code: kernels over one shared header, bindings apart):
 *   kernels.h    this header: CPU targets, loads, the per-thread scratch buffer, the top-k state
 *   scan.c       knn (scalar, AVX2 fast scan, AVX-512) and dists
 *   mih.c        mih_knn and its substring keys
 *   ivf.c        ivf
 *   rank.c       rank
 *   bindings.c   the Python module: argument parsing, the CPU level and the dispatch
 * Nothing here is mutable and shared between threads: the AVX2 slot tables are constants (checked
 * once at import), the CPU level is read once at import, the scratch buffer is per thread.
 */
#ifndef CMHASH_KERNELS_H
#define CMHASH_KERNELS_H
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

/* A per-thread buffer of at least ``bytes``, reused by the next call on this thread (the kernels run
 * on a fixed pool of threads; its size is what the largest search needed). bindings.c. */
void *cmh_scratch(size_t bytes);

#if HAVE_TARGET
#include <immintrin.h>
#define AVX512_TARGET __attribute__((target("avx512f,avx512vpopcntdq,popcnt")))
#define AVX2_TARGET __attribute__((target("avx2,popcnt")))
#endif

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

/* Bits [off, off+len) of a code, bit j being bit j%8 of byte j/8 (LSB first), len <= 32. */
INLINE uint32_t substr(const uint8_t *c, int off, int len) {
    int b0 = off >> 3, sh = off & 7, nb = (sh + len + 7) >> 3;
    uint64_t x = 0;
    for (int t = 0; t < nb; t++) x |= (uint64_t)c[b0 + t] << (8 * t);
    return (uint32_t)((x >> sh) & ((len >= 32) ? 0xffffffffULL : ((1ULL << len) - 1)));
}

/* The AVX2 scan's costs against the scalar scan (mih.c weighs its probes by it; bindings.c). */
#define A2_SCALE 2

/* The kernels' entry points, one per instruction set (bindings.c picks one per call). */
int cmh_knn_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k, int32_t *od,
                  int64_t *oi);
void cmh_dists_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, uint16_t *out);
int cmh_mih_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k, int m,
                  const int32_t *offs, const int32_t *lens, const uint32_t *ptrs, const int64_t *ptr_base,
                  const uint32_t *ids, int32_t *od, int64_t *oi, int64_t *visits, int64_t budget, int cost_scale);
int cmh_ivf_plain(const uint8_t *codes, const int64_t *rows, const int64_t *lptr, int64_t nlist, int nbytes,
                  const uint8_t *q, int64_t nq, int k, const int64_t *probe, int nprobe, int32_t *od, int64_t *oi);
int cmh_rank_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, const uint64_t *qlab,
                   const uint64_t *dlab, int W, int64_t topk, double *out_ap, double *out_apk, int32_t *hist_n,
                   int32_t *hist_r);
#if HAVE_TARGET
int cmh_knn_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k, int32_t *od,
                   int64_t *oi);
int cmh_knn_avx2(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k, int32_t *od,
                 int64_t *oi);
int cmh_knn_avx512(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k, int32_t *od,
                   int64_t *oi);
int cmh_a2_check(void);
void cmh_dists_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, uint16_t *out);
int cmh_mih_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k, int m,
                   const int32_t *offs, const int32_t *lens, const uint32_t *ptrs, const int64_t *ptr_base,
                   const uint32_t *ids, int32_t *od, int64_t *oi, int64_t *visits, int64_t budget, int cost_scale);
int cmh_ivf_popcnt(const uint8_t *codes, const int64_t *rows, const int64_t *lptr, int64_t nlist, int nbytes,
                   const uint8_t *q, int64_t nq, int k, const int64_t *probe, int nprobe, int32_t *od, int64_t *oi,
                   int vec);
int cmh_rank_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, const uint64_t *qlab,
                    const uint64_t *dlab, int W, int64_t topk, double *out_ap, double *out_apk, int32_t *hist_n,
                    int32_t *hist_r);
#endif
#endif
