/* knn (exact top-k by exhaustive scan, three instruction sets) and dists; see kernels.h. */
#include "kernels.h"

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

/* AVX2 scan (no AVX-512): byte-sliced blocks and per-query nibble tables, the layout of faiss's
 * 4-bit "fast scan". A block of 32 codes is transposed once per database pass so that one register
 * holds byte p of all 32 codes, split into low and high nibbles. For query q, byte p of a code
 * contributes popcount(x_p ^ q_p) = T_lo[x_p & 15] + T_hi[x_p >> 4] with the 16-entry tables
 * T_lo[v] = popcount(v ^ (q_p & 15)), T_hi[v] = popcount(v ^ (q_p >> 4)): two vpshufb and two byte
 * adds give byte p's share for 32 codes at once, and distances accumulate in bytes (codes of up to
 * 16 bytes: at most 128, so uint8 holds them and the bound). The transposition is paid once per
 * block of 32 queries. Slots of a block are not in row order (the unpack network interleaves
 * them): a2_row[w][t] is the row of slot t, and hits are pushed in row order. */
/* [width 8 or 16][slot] -> row, [width][row] -> slot: the unpack network's order, constant (checked
 * against a2_block once at import by cmh_a2_check) */
static const int8_t a2_row[2][32] = {
    {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31},
    {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}};
static const int8_t a2_slot[2][32] = {
    {0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31},
    {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31}};

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

/* Whether the constant slot tables are a2_block's order: a block whose code c holds bytes c is
 * transposed and read back (once, at import; 0 when they agree). */
AVX2_TARGET int cmh_a2_check(void) {
    uint8_t x[32 * 16];
    __m256i lo[16], hi[16], raw[16];
    for (int w = 0; w < 2; w++) {
        int W = w ? 16 : 8;
        for (int c = 0; c < 32; c++) memset(x + c * W, c, (size_t)W);
        a2_block(x, W, lo, hi, raw);
        uint8_t b[32];
        _mm256_storeu_si256((__m256i *)b, raw[0]);
        for (int t = 0; t < 32; t++)
            if (a2_row[w][t] != (int8_t)b[t] || a2_slot[w][b[t]] != (int8_t)t) return -1;
    }
    return 0;
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
    c.cnt = (int64_t *)cmh_scratch(sizeof(int64_t) * (size_t)QN * (c.K + 1) * (1 + (size_t)k));    \
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

int cmh_knn_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, int k,
                     int32_t *od, int64_t *oi) { KNN_BODY(QB, scan_block) }
#if HAVE_TARGET
POPCNT_TARGET int cmh_knn_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                    int k, int32_t *od, int64_t *oi) { KNN_BODY(QB, scan_block) }
AVX2_TARGET int cmh_knn_avx2(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                int k, int32_t *od, int64_t *oi) { KNN_BODY(QBA, scan_block_a2) }
/* The AVX-512 scan holds 16 queries in registers, and one pass over a large database per 16
 * queries is bound by memory bandwidth (10M 64-bit codes: 80 MB a pass; measured 607 queries/s
 * against 1,273 for the AVX2 scan's 32 queries a pass). So the rows are taken in L2-sized chunks,
 * and each chunk is scanned by QSUP blocks of 16 queries in turn while it is in cache: the
 * database is read once per 64 queries. Rows still reach each query in ascending order. */
#define QSUP 4
#define CHUNK_BYTES (256 * 1024)
AVX512_TARGET int cmh_knn_avx512(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                    int k, int32_t *od, int64_t *oi) {
    const int QS = QBV * QSUP, K = nbytes * 8;
    int64_t *mem = (int64_t *)cmh_scratch(sizeof(int64_t) * (size_t)QS * (K + 1) * (1 + (size_t)k));
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

void cmh_dists_plain(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq, uint16_t *out) {
    DISTS_BODY
}
#if HAVE_TARGET
POPCNT_TARGET void cmh_dists_popcnt(const uint8_t *db, int64_t n, int nbytes, const uint8_t *q, int64_t nq,
                                       uint16_t *out) { DISTS_BODY }
#endif