/* mih_knn: exact top-k by multi-index hashing; see kernels.h. */
#include "kernels.h"

typedef struct { int32_t d; int64_t id; } cand_t;

static int cand_cmp(const void *a, const void *b) {
    const cand_t *x = (const cand_t *)a, *y = (const cand_t *)b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Relative costs of one table probe and one candidate verification (random memory accesses)
 * against one code compared by the scalar flat scan (sequential, about 0.35 ns per code per core
 * here); the AVX-512 scan compares a code in about a quarter of that (0.07-0.15 ns measured), so
 * mih_knn's caller scales them by 4 there (``cost_scale``), and by A2_SCALE (kernels.h) where the scan is the
 * AVX2 one (2.0-2.9x the scalar scan at 64 and 128 bits, bench_index.py --sections exact). */
#define PROBE_COST 40
#define VISIT_COST 25

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

int cmh_mih_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k, int m,
                     const int32_t *offs, const int32_t *lens, const uint32_t *ptrs, const int64_t *ptr_base,
                     const uint32_t *ids, int32_t *od, int64_t *oi, int64_t *visits, int64_t budget,
                     int cost_scale) { MIH_BODY }
#if HAVE_TARGET
POPCNT_TARGET int cmh_mih_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k,
                                    int m, const int32_t *offs, const int32_t *lens, const uint32_t *ptrs,
                                    const int64_t *ptr_base, const uint32_t *ids, int32_t *od, int64_t *oi,
                                    int64_t *visits, int64_t budget, int cost_scale) { MIH_BODY }
#endif