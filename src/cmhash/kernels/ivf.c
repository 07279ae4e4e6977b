/* ivf: top-k over the probed lists of an inverted file; see kernels.h. */
#include "kernels.h"

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
    int64_t *mem = (int64_t *)cmh_scratch(need);
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

int cmh_ivf_plain(const uint8_t *codes, const int64_t *rows, const int64_t *lptr, int64_t nlist, int nbytes,
                     const uint8_t *q, int64_t nq, int k, const int64_t *probe, int nprobe, int32_t *od, int64_t *oi) {
    return ivf_core(codes, rows, lptr, nlist, nbytes, q, nq, k, probe, nprobe, od, oi, 0);
}
#if HAVE_TARGET
POPCNT_TARGET int cmh_ivf_popcnt(const uint8_t *codes, const int64_t *rows, const int64_t *lptr, int64_t nlist,
                                    int nbytes, const uint8_t *q, int64_t nq, int k, const int64_t *probe, int nprobe,
                                    int32_t *od, int64_t *oi, int vec) {
    /* constant code widths for the common lengths: the distance loops unroll */
    if (nbytes == 8) return ivf_core(codes, rows, lptr, nlist, 8, q, nq, k, probe, nprobe, od, oi, vec);
    if (nbytes == 16) return ivf_core(codes, rows, lptr, nlist, 16, q, nq, k, probe, nprobe, od, oi, vec);
    return ivf_core(codes, rows, lptr, nlist, nbytes, q, nq, k, probe, nprobe, od, oi, vec);
}
#endif