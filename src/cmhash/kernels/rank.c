/* rank: AP, AP@k and distance histograms of Hamming rankings; see kernels.h. */
#include "kernels.h"


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

int cmh_rank_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, const uint64_t *qlab,
                      const uint64_t *dlab, int W, int64_t topk, double *out_ap, double *out_apk, int32_t *hist_n,
                      int32_t *hist_r) { RANK_DISPATCH }
#if HAVE_TARGET
POPCNT_TARGET int cmh_rank_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                     const uint64_t *qlab, const uint64_t *dlab, int W, int64_t topk, double *out_ap,
                                     double *out_apk, int32_t *hist_n, int32_t *hist_r) { RANK_DISPATCH }
#endif