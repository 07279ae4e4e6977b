/* The Python module of the kernels: argument parsing, the CPU level and the dispatch; see kernels.h. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "kernels.h"

static THREAD_LOCAL void *scratch_mem = NULL;
static THREAD_LOCAL size_t scratch_cap = 0;

/* A per-thread buffer of at least ``bytes``, reused by the next call on this thread (the kernels run
 * on a fixed pool of threads; its size is what the largest search needed). */
void *cmh_scratch(size_t bytes) {
    if (bytes > scratch_cap) {
        free(scratch_mem);
        scratch_mem = malloc(bytes);
        scratch_cap = scratch_mem ? bytes : 0;
    }
    return scratch_mem;
}


/* Instruction sets, by level: 1 scalar (popcnt when the CPU has it), 2 AVX2, 3 AVX-512 VPOPCNTDQ
 * (Ice Lake and later, Zen 4). Every call gets a cap from Python (CMHASH_KERNEL: scalar, avx2,
 * avx512; default the highest), and each kernel takes the highest level at or below it that the
 * CPU has and that serves the code width: AVX-512 codes of whole 64-bit words up to 1024 bits,
 * AVX2 codes of up to 16 bytes (its distances are bytes), scalar the rest. */
static int cpu = 1, has_popcnt = 0;  /* set once, at import (under the import lock); read only after */

static void read_cpu(void) {
#if HAVE_TARGET
    __builtin_cpu_init();
    cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq") ? 3
          : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") ? 2 : 1;
    has_popcnt = __builtin_cpu_supports("popcnt") ? 1 : 0;
#endif
}

static int cpu_level(void) { return cpu; }

static int scan_level(int cap, int nbytes) {
    int lv = cap < 1 || cap > cpu_level() ? cpu_level() : cap;
    if (lv >= 3 && nbytes % 8 == 0 && nbytes <= 128) return 3;
    if (lv >= 2 && nbytes <= 16) return 2;
    return 1;
}

static int use_popcnt(void) { return has_popcnt; }

#define ADDR(x) ((void *)(uintptr_t)(x))

static PyObject *py_knn(PyObject *self, PyObject *args) {
    unsigned long long db, q, od, oi; long long n, nq; int nbytes, k, cap = 0, rc;
    if (!PyArg_ParseTuple(args, "KLiKLiKK|i", &db, &n, &nbytes, &q, &nq, &k, &od, &oi, &cap)) return NULL;
    int pc = use_popcnt(), lv = scan_level(cap, nbytes);
    Py_BEGIN_ALLOW_THREADS
#if HAVE_TARGET
    if (lv == 3) rc = cmh_knn_avx512(ADDR(db), n, nbytes, ADDR(q), nq, k, ADDR(od), ADDR(oi)); else
    if (lv == 2) rc = cmh_knn_avx2(ADDR(db), n, nbytes, ADDR(q), nq, k, ADDR(od), ADDR(oi)); else
    if (pc) rc = cmh_knn_popcnt(ADDR(db), n, nbytes, ADDR(q), nq, k, ADDR(od), ADDR(oi)); else
#endif
    rc = cmh_knn_plain(ADDR(db), n, nbytes, ADDR(q), nq, k, ADDR(od), ADDR(oi));
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
    if (pc) cmh_dists_popcnt(ADDR(db), n, nbytes, ADDR(q), nq, ADDR(out)); else
#endif
    cmh_dists_plain(ADDR(db), n, nbytes, ADDR(q), nq, ADDR(out));
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
    if (pc) rc = cmh_mih_popcnt(ADDR(db), n, nbytes, ADDR(q), nq, k, m, ADDR(offs), ADDR(lens), ADDR(ptrs), ADDR(base),
                            ADDR(ids), ADDR(od), ADDR(oi), ADDR(visits), budget, scale); else
#endif
    rc = cmh_mih_plain(ADDR(db), n, nbytes, ADDR(q), nq, k, m, ADDR(offs), ADDR(lens), ADDR(ptrs), ADDR(base),
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
    if (pc) rc = cmh_rank_popcnt(ADDR(db), n, nbytes, ADDR(q), nq, ADDR(ql), ADDR(dl), W, topk, ADDR(ap), ADDR(apk),
                             ADDR(hn), ADDR(hr)); else
#endif
    rc = cmh_rank_plain(ADDR(db), n, nbytes, ADDR(q), nq, ADDR(ql), ADDR(dl), W, topk, ADDR(ap), ADDR(apk), ADDR(hn), ADDR(hr));
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
    if (pc) rc = cmh_ivf_popcnt(ADDR(codes), ADDR(rows), ADDR(lptr), nlist, nbytes, ADDR(q), nq, k, ADDR(probe), nprobe,
                            ADDR(od), ADDR(oi), av); else
#endif
    rc = cmh_ivf_plain(ADDR(codes), ADDR(rows), ADDR(lptr), nlist, nbytes, ADDR(q), nq, k, ADDR(probe), nprobe, ADDR(od), ADDR(oi));
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
    read_cpu();
#if HAVE_TARGET
    if (cpu_level() >= 2 && cmh_a2_check()) {
        PyErr_SetString(PyExc_ImportError, "cmhash kernels: the AVX2 slot tables do not match this build");
        return NULL;
    }
#endif
    return PyModule_Create(&moddef);
}