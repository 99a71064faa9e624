/*
 * engramloop C kernels, baseline.c. Detector baselines and threshold rules shared by the
 * detectors: threshold_runs, baseline_runs (the running median/SD baseline ring and run
 * lengths above it), baseline_push (the ring's pushes alone), median_mad,
 * running_median_mad (the same statistics kept up to date from a sorted copy of the
 * ring), first_at_or_after.
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

PyDoc_STRVAR(threshold_runs_doc,
"threshold_runs(feature, median, sd, k_sd, carry, runs, thr) -> int\n\n"
"thr = median + k_sd * sd and, per channel, the length of the current run of samples with\n"
"feature > thr ending at each sample (NaN compares False), continuing the run lengths in\n"
"`carry` (updated to the last row). feature, median, sd, thr: (n, c) float64; runs: (n, c)\n"
"int64; carry: (c,) int64. Returns the largest run length in the block.");

static PyObject *
filters_threshold_runs(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "threshold_runs(feature, median, sd, k_sd, carry, runs, thr) takes 7 arguments");
        return NULL;
    }
    double k;
    if (arg_double(args[3], "threshold_runs", "k_sd", &k) < 0) return NULL;
    Py_ssize_t n_ch = arg_len(args[4], "threshold_runs", "carry");
    if (n_ch < 0) return NULL;
    Py_buffer fv, mv, sv, cv, rv, tv;
    if (get_rule_buf(args[0], &fv, 0, 0, -1, n_ch, "feature") < 0) return NULL;
    Py_ssize_t n = fv.ndim == 2 ? fv.shape[0] : 1, c = fv.ndim == 2 ? fv.shape[1] : fv.shape[0];
    if (get_rule_buf(args[1], &mv, 0, 0, n, c, "median") < 0) { PyBuffer_Release(&fv); return NULL; }
    if (get_rule_buf(args[2], &sv, 0, 0, n, c, "sd") < 0) {
        PyBuffer_Release(&fv); PyBuffer_Release(&mv); return NULL;
    }
    if (get_rule_buf(args[4], &cv, 1, 1, 1, c, "carry") < 0) {
        PyBuffer_Release(&fv); PyBuffer_Release(&mv); PyBuffer_Release(&sv); return NULL;
    }
    if (get_rule_buf(args[5], &rv, 1, 1, n, c, "runs") < 0) {
        PyBuffer_Release(&fv); PyBuffer_Release(&mv); PyBuffer_Release(&sv);
        PyBuffer_Release(&cv); return NULL;
    }
    if (get_rule_buf(args[6], &tv, 1, 0, n, c, "thr") < 0) {
        PyBuffer_Release(&fv); PyBuffer_Release(&mv); PyBuffer_Release(&sv);
        PyBuffer_Release(&cv); PyBuffer_Release(&rv); return NULL;
    }
    long long best = 0;
    WORK_BEGIN(n * c)
    const double *f = (const double *)fv.buf, *m = (const double *)mv.buf,
                 *sd = (const double *)sv.buf;
    long long *carry = (long long *)cv.buf, *runs = (long long *)rv.buf;
    double *thr = (double *)tv.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t j = 0; j < c; j++) {
            const Py_ssize_t q = i * c + j;
            const double th = m[q] + k * sd[q];
            thr[q] = th;
            const long long r = (f[q] > th) ? carry[j] + 1 : 0;
            carry[j] = r;
            runs[q] = r;
            if (r > best) best = r;
        }
    }
    WORK_END
    PyBuffer_Release(&fv); PyBuffer_Release(&mv); PyBuffer_Release(&sv);
    PyBuffer_Release(&cv); PyBuffer_Release(&rv); PyBuffer_Release(&tv);
    return PyLong_FromLongLong(best);
}

/* baseline_runs' work on raw arrays (see baseline_runs_doc); lp: the ring positions,
 * already checked to lie in 0..length-1. Returns the largest run. */
long long
baseline_block(const double *f, Py_ssize_t n, Py_ssize_t c, Py_ssize_t first, Py_ssize_t step,
               double *ring, Py_ssize_t length, long long *lp, long long *count,
               const double *excl, const double *med, const double *sd, double k,
               long long *carry, double *mo, double *so, double *thr, long long *runs)
{
    long long best = 0;
    long long j0 = (step - first % step) % step;    /* first decimation point in the block */
    for (Py_ssize_t i = 0; i < n; i++) {
        const int push = ((long long)i >= j0) && (((long long)i - j0) % step == 0);
        for (Py_ssize_t j = 0; j < c; j++) {
            const Py_ssize_t q = i * c + j;
            mo[q] = med[j];
            so[q] = sd[j];
            const double x = f[q];
            if (push && x <= excl[j]) {
                ring[j * length + lp[j]] = x;
                lp[j] = (lp[j] + 1) % length;
                count[j] += 1;
            }
            const double th = med[j] + k * sd[j];
            thr[q] = th;
            const long long r = (x > th) ? carry[j] + 1 : 0;
            carry[j] = r;
            runs[q] = r;
            if (r > best) best = r;
        }
    }
    return best;
}

PyDoc_STRVAR(baseline_runs_doc,
"baseline_runs(feature, first, step, ring, pos, count, excl, median, sd, k_sd, carry,\n"
"              median_out, sd_out, thr, runs) -> int\n\n"
"One block of RobustBaseline.process for a block with no update point, then\n"
"threshold_runs, in one call: median_out/sd_out rows = median/sd (c,); every sample whose\n"
"absolute index first + i is a multiple of `step` is pushed, per channel, into the ring\n"
"(c, L) at pos (advancing it, count += 1) unless above excl (NaN is not kept); then\n"
"thr = median + k_sd * sd and the run lengths of feature > thr, continuing `carry`.\n"
"feature, median_out, sd_out, thr: (n, c) float64; runs (n, c) int64; pos, count, carry (c,)\n"
"int64. Returns the largest run length in the block.");

static PyObject *
filters_baseline_runs(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError, "baseline_runs takes 15 arguments");
        return NULL;
    }
    Py_ssize_t first, step;
    double k;
    if (arg_ssize(args[1], "baseline_runs", "first", &first) < 0
        || arg_ssize(args[2], "baseline_runs", "step", &step) < 0
        || arg_double(args[9], "baseline_runs", "k_sd", &k) < 0) return NULL;
    if (step < 1 || first < 0) {
        PyErr_SetString(PyExc_ValueError, "baseline_runs: step must be >= 1 and first >= 0");
        return NULL;
    }
    Py_ssize_t c = arg_len(args[10], "baseline_runs", "carry");
    if (c < 0) return NULL;
    /* buffers in argument order: feature, ring, pos, count, excl, median, sd, carry,
     * median_out, sd_out, thr, runs */
    static const int arg[12] = {0, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14};
    static const int is_int[12] = {0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    static const int writable[12] = {0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1};
    static const char *name[12] = {"feature", "ring", "pos", "count", "excl", "median", "sd",
                                   "carry", "median_out", "sd_out", "thr", "runs"};
    Py_buffer v[12];
    Py_ssize_t n = -1, length = -1;
    int got = 0;
    for (; got < 12; got++) {
        const Py_ssize_t rows = (got == 0 || got >= 8) ? n : 1;  /* (n, c) blocks: n from feature */
        if (got == 1) {                               /* the ring: c rows of any length */
            length = get_ring(args[arg[got]], &v[got], c, "", "");
            if (length < 0) break;
            continue;
        }
        if (get_rule_buf(args[arg[got]], &v[got], writable[got], is_int[got], rows, c,
                         name[got]) < 0)
            break;
        if (got == 0) n = v[0].ndim == 2 ? v[0].shape[0] : 1;
    }
    if (got < 12) {
        for (int i = 0; i < got; i++) PyBuffer_Release(&v[i]);
        return NULL;
    }
    /* the ring positions are copied and checked while the GIL is held, and only the copy
     * indexes the ring (another thread could change the array once the GIL is released) */
    long long pos_stack[PICK_STACK], *lp = pos_stack;
    if (c > PICK_STACK && (lp = PyMem_Malloc((size_t)c * sizeof(long long))) == NULL) {
        for (int i = 0; i < 12; i++) PyBuffer_Release(&v[i]);
        return PyErr_NoMemory();
    }
    memcpy(lp, v[2].buf, (size_t)c * sizeof(long long));
    for (Py_ssize_t j = 0; j < c; j++) {
        if (lp[j] < 0 || lp[j] >= length) {
            PyErr_Format(PyExc_ValueError, "pos[%zd] = %lld is outside the ring (0..%zd)",
                         j, lp[j], length - 1);
            if (lp != pos_stack) PyMem_Free(lp);
            for (int i = 0; i < 12; i++) PyBuffer_Release(&v[i]);
            return NULL;
        }
    }
    long long best;
    WORK_BEGIN(n * c)
    best = baseline_block((const double *)v[0].buf, n, c, first, step, (double *)v[1].buf,
                          length, lp, (long long *)v[3].buf, (const double *)v[4].buf,
                          (const double *)v[5].buf, (const double *)v[6].buf, k,
                          (long long *)v[7].buf, (double *)v[8].buf, (double *)v[9].buf,
                          (double *)v[10].buf, (long long *)v[11].buf);
    WORK_END
    memcpy(v[2].buf, lp, (size_t)c * sizeof(long long));
    if (lp != pos_stack) PyMem_Free(lp);
    for (int i = 0; i < 12; i++) PyBuffer_Release(&v[i]);
    return PyLong_FromLongLong(best);
}

PyDoc_STRVAR(baseline_push_doc,
"baseline_push(feature, first, step, absolute, ring, pos, count, excl) -> None\n\n"
"The pushes of RobustBaseline.process without the statistics: every row i of feature\n"
"(n, c) float64 whose absolute index first + i is a multiple of `step` is pushed, per\n"
"channel, into the ring (c, L) at pos (advancing it, count += 1) unless above excl (NaN\n"
"is not kept); with `absolute` true its absolute value is. pos, count: (c,) int64; excl:\n"
"(c,) float64.");

static PyObject *
filters_baseline_push(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "baseline_push(feature, first, step, absolute, ring, "
                        "pos, count, excl) takes 8 arguments");
        return NULL;
    }
    Py_ssize_t first, step;
    if (arg_ssize(args[1], "baseline_push", "first", &first) < 0
        || arg_ssize(args[2], "baseline_push", "step", &step) < 0) return NULL;
    if (step < 1 || first < 0) {
        PyErr_SetString(PyExc_ValueError, "baseline_push: step must be >= 1 and first >= 0");
        return NULL;
    }
    const int absolute = PyObject_IsTrue(args[3]);
    if (absolute < 0) return NULL;
    Py_ssize_t c = arg_len(args[7], "baseline_push", "excl");
    if (c < 0) return NULL;
    Py_buffer fv, rv, pv, cv, ev;
    if (get_rule_buf(args[0], &fv, 0, 0, -1, c, "feature") < 0) return NULL;
    const Py_ssize_t length = get_ring(args[4], &rv, c, "baseline_push: ", "");
    if (length < 0) { PyBuffer_Release(&fv); return NULL; }
    if (get_rule_buf(args[5], &pv, 1, 1, 1, c, "pos") < 0) {
        PyBuffer_Release(&fv); PyBuffer_Release(&rv); return NULL;
    }
    if (get_rule_buf(args[6], &cv, 1, 1, 1, c, "count") < 0) {
        PyBuffer_Release(&fv); PyBuffer_Release(&rv); PyBuffer_Release(&pv); return NULL;
    }
    if (get_rule_buf(args[7], &ev, 0, 0, 1, c, "excl") < 0) {
        PyBuffer_Release(&fv); PyBuffer_Release(&rv); PyBuffer_Release(&pv);
        PyBuffer_Release(&cv); return NULL;
    }
    long long *pos = (long long *)pv.buf;
    for (Py_ssize_t j = 0; j < c; j++) {
        if (pos[j] < 0 || pos[j] >= length) {
            PyErr_Format(PyExc_ValueError, "pos[%zd] = %lld is outside the ring (0..%zd)",
                         j, pos[j], length - 1);
            PyBuffer_Release(&fv); PyBuffer_Release(&rv); PyBuffer_Release(&pv);
            PyBuffer_Release(&cv); PyBuffer_Release(&ev);
            return NULL;
        }
    }
    /* the GIL stays held: a block's few decimated points are far below NOGIL_MIN_VALUES
     * (and pos was checked under it) */
    const Py_ssize_t n = fv.ndim == 2 ? fv.shape[0] : 1;
    const double *f = (const double *)fv.buf, *excl = (const double *)ev.buf;
    double *ring = (double *)rv.buf;
    long long *count = (long long *)cv.buf;
    for (Py_ssize_t i = (step - first % step) % step; i < n; i += step) {
        for (Py_ssize_t j = 0; j < c; j++) {
            const double x = absolute ? fabs(f[i * c + j]) : f[i * c + j];
            if (x <= excl[j]) {
                ring[j * length + pos[j]] = x;
                pos[j] = (pos[j] + 1) % length;
                count[j] += 1;
            }
        }
    }
    PyBuffer_Release(&fv); PyBuffer_Release(&rv); PyBuffer_Release(&pv);
    PyBuffer_Release(&cv); PyBuffer_Release(&ev);
    Py_RETURN_NONE;
}

/* k-th smallest of a[0..n-1] (0-based), partially reordering a: Hoare-style quickselect
 * with a median-of-three pivot. Afterwards a[0..k-1] <= a[k] <= a[k+1..n-1]. */
static double
select_kth(double *a, Py_ssize_t n, Py_ssize_t k)
{
    Py_ssize_t lo = 0, hi = n - 1;
    while (hi > lo) {
        const Py_ssize_t mid = lo + (hi - lo) / 2;
        double t;
        if (a[mid] < a[lo]) { t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
        if (a[hi] < a[lo]) { t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
        if (a[hi] < a[mid]) { t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
        const double pivot = a[mid];
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) { t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return a[k];
}

/* numpy.median of a[0..n-1] (n >= 1; the mean of the two middle values when n is even),
 * reordering a. */
static double
median_inplace(double *a, Py_ssize_t n)
{
    const Py_ssize_t h = n / 2;
    const double upper = select_kth(a, n, h);
    if (n % 2) return upper;
    double lower = a[0];
    for (Py_ssize_t i = 1; i < h; i++) if (a[i] > lower) lower = a[i];
    return (lower + upper) / 2.0;
}

PyDoc_STRVAR(median_mad_doc,
"median_mad(ring, counts, min_count, scratch, median, mad) -> None\n\n"
"Per row j of ring (c, L): over its first min(counts[j], L) values, the median and the\n"
"median absolute deviation from it, as numpy.median computes them; NaN for both when\n"
"fewer than min_count values exist. counts: (c,) int64; scratch: (L,) float64 work space;\n"
"median, mad: (c,) float64, written.");

static PyObject *
filters_median_mad(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "median_mad(ring, counts, min_count, scratch, median, mad) takes 6 arguments");
        return NULL;
    }
    Py_ssize_t min_count;
    if (arg_ssize(args[2], "median_mad", "min_count", &min_count) < 0) return NULL;
    Py_ssize_t c = arg_len(args[1], "median_mad", "counts");
    if (c < 0) return NULL;
    Py_ssize_t len = arg_len(args[3], "median_mad", "scratch");
    if (len < 0) return NULL;
    Py_buffer rv, cv, sv, mv, dv;
    if (get_rule_buf(args[0], &rv, 0, 0, c, len, "ring") < 0) return NULL;
    if (get_rule_buf(args[1], &cv, 0, 1, 1, c, "counts") < 0) { PyBuffer_Release(&rv); return NULL; }
    if (get_rule_buf(args[3], &sv, 1, 0, 1, len, "scratch") < 0) {
        PyBuffer_Release(&rv); PyBuffer_Release(&cv); return NULL;
    }
    if (get_rule_buf(args[4], &mv, 1, 0, 1, c, "median") < 0) {
        PyBuffer_Release(&rv); PyBuffer_Release(&cv); PyBuffer_Release(&sv); return NULL;
    }
    if (get_rule_buf(args[5], &dv, 1, 0, 1, c, "mad") < 0) {
        PyBuffer_Release(&rv); PyBuffer_Release(&cv); PyBuffer_Release(&sv);
        PyBuffer_Release(&mv); return NULL;
    }
    WORK_BEGIN(c * len)
    const double *ring = (const double *)rv.buf;
    const long long *counts = (const long long *)cv.buf;
    double *w = (double *)sv.buf, *med = (double *)mv.buf, *mad = (double *)dv.buf;
    for (Py_ssize_t j = 0; j < c; j++) {
        Py_ssize_t k = counts[j] < (long long)len ? (Py_ssize_t)counts[j] : len;
        if (k < 1 || k < min_count) { med[j] = NAN; mad[j] = NAN; continue; }
        const double *row = ring + j * len;
        memcpy(w, row, (size_t)k * sizeof(double));
        const double m = median_inplace(w, k);
        for (Py_ssize_t i = 0; i < k; i++) w[i] = fabs(row[i] - m);
        med[j] = m;
        mad[j] = median_inplace(w, k);
    }
    WORK_END
    PyBuffer_Release(&rv); PyBuffer_Release(&cv); PyBuffer_Release(&sv);
    PyBuffer_Release(&mv); PyBuffer_Release(&dv);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- running_median_mad
 *
 * The same statistics as median_mad, kept up to date from one update point to the next
 * instead of recomputed: per channel a sorted copy of the ring's contents, a copy of the
 * ring as it was when the sorted copy was last brought up to date ("prev") and the count
 * then ("synced"). Every writer of the ring (RobustBaseline._push, baseline_block, the
 * spindle and SO plans) writes the k-th kept value (k counted from 0 since the last reset)
 * into slot k mod L and adds 1 to the count, so the values that entered since the last
 * update are the ring's slots synced .. count-1 (mod L) and the ones that left are prev's
 * values in the same slots (only for k >= L: below that the slot was empty). */

/* The sorted copies order values as numbers and -0.0 before 0.0 (which compare equal), so
 * a leaving zero is found with its sign and the copy holds exactly the ring's values. The
 * order is that of an integer key of the bits (IEEE 754 totalOrder, for non-NaN values):
 * compared without branches, which the binary searches below need to be fast. */
static inline long long
order_key(double x)
{
    long long b;
    memcpy(&b, &x, sizeof b);
    return b ^ (long long)((unsigned long long)(b >> 63) >> 1);
}

static inline int
before(double x, double y)
{
    return order_key(x) < order_key(y);
}

static int
cmp_double(const void *a, const void *b)
{
    const long long x = order_key(*(const double *)a), y = order_key(*(const double *)b);
    return (x > y) - (x < y);
}

/* the value of a key: order_key undoes itself (it flips the bits below the sign bit of a
 * negative value, and the sign bit stays) */
static inline double
from_key(long long k)
{
    const long long b = k ^ (long long)((unsigned long long)(k >> 63) >> 1);
    double x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* sort a[0..n-1] in the order above: for the few dozen values entering or leaving at an
 * update, Shell's sort of their keys (integers, computed once each, in keys[0..n-1]: no
 * allocation, no calls); qsort for a whole ring. The order is total on the bits, so any
 * sort gives the same array. */
static void
sort_doubles(double *a, Py_ssize_t n, long long *keys)
{
    static const Py_ssize_t gaps[] = {132, 57, 23, 10, 4, 1};     /* Ciura 2001 */
    if (n > 512) {
        qsort(a, (size_t)n, sizeof(double), cmp_double);
        return;
    }
    for (Py_ssize_t i = 0; i < n; i++) keys[i] = order_key(a[i]);
    for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
        const Py_ssize_t gap = gaps[g];
        for (Py_ssize_t i = gap; i < n; i++) {
            const long long kv = keys[i];
            Py_ssize_t j = i;
            while (j >= gap && kv < keys[j - gap]) { keys[j] = keys[j - gap]; j -= gap; }
            keys[j] = kv;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) a[i] = from_key(keys[i]);
}

/* the first index i in [lo, n) with s[i] not before v (n when none); branch-free halving */
static Py_ssize_t
lower_bound(const double *s, Py_ssize_t lo, Py_ssize_t n, double v)
{
    if (lo >= n) return n;
    const long long kv = order_key(v);
    const double *b = s + lo;
    Py_ssize_t len = n - lo;
    while (len > 1) {
        const Py_ssize_t half = len / 2;
        b = order_key(b[half]) < kv ? b + half : b;
        len -= half;
    }
    return (b - s) + (order_key(*b) < kv);
}

/* the first index i in [at, n) with s[i] not before v (n when none), for a search that
 * moves forward through s: the next 8 values one by one (a cache line), then steps that
 * double until one passes v, and a binary search in the last step. What a walk one value
 * at a time finds, in O(log distance) loads instead of O(distance). */
static Py_ssize_t
gallop_forward(const double *s, Py_ssize_t at, Py_ssize_t n, double v)
{
    const long long kv = order_key(v);
    const Py_ssize_t near = at + 8 < n ? at + 8 : n;
    while (at < near) {
        if (order_key(s[at]) >= kv) return at;
        at++;
    }
    /* s[at - 1] is before v here */
    Py_ssize_t step = 8;
    while (at < n) {
        const Py_ssize_t probe = at + step < n ? at + step : n;
        if (probe == n || order_key(s[probe]) >= kv)
            return lower_bound(s, at, probe, v);
        at = probe + 1;
        step *= 2;
    }
    return n;
}

/* The k-th smallest (0-based) of the |s[i] - m| of a sorted s[0..n-1] whose first h values
 * are <= m and the rest >= m: two ascending runs, a[t] = |s[h-1-t] - m| (t < h) and
 * b[t] = |s[h+t] - m| (t < n-h) (subtraction rounds monotonically, so both stay sorted);
 * a binary search for how many of the k+1 smallest come from a. */
static double
kth_abs_dev(const double *s, Py_ssize_t n, Py_ssize_t h, double m, Py_ssize_t k)
{
    const Py_ssize_t na = h, nb = n - h;
#define A_(t) fabs(s[h - 1 - (t)] - m)
#define B_(t) fabs(s[h + (t)] - m)
    /* the smallest i (taken from a) with a[i] >= b[k-i], i.e. i == na, or k+1-i == 0, or
     * the predicate; it is monotone in i */
    Py_ssize_t lo = k + 1 - nb > 0 ? k + 1 - nb : 0, hi = k + 1 < na ? k + 1 : na;
    while (lo < hi) {
        const Py_ssize_t i = lo + (hi - lo) / 2;      /* i < na and k - i >= 0 here */
        if (A_(i) >= B_(k - i)) hi = i;
        else lo = i + 1;
    }
    const Py_ssize_t i = lo, j = k + 1 - i;
    double v = -INFINITY;
    if (i > 0) v = A_(i - 1);
    if (j > 0) { const double w = B_(j - 1); if (w > v) v = w; }
    return v;
#undef A_
#undef B_
}

/* median_mad's statistics of row[0..k-1] (k >= 1) by quickselect on the work space w */
static void
quick_median_mad(const double *row, Py_ssize_t k, double *w, double *med, double *mad)
{
    memcpy(w, row, (size_t)k * sizeof(double));
    const double m = median_inplace(w, k);
    for (Py_ssize_t i = 0; i < k; i++) w[i] = fabs(row[i] - m);
    *med = m;
    *mad = median_inplace(w, k);
}

/* Bring channel j's sorted copy (srt, n_old = min(synced, L) values) up to the ring's
 * current contents (k = min(count, L) values), in place. Returns 1 when done, 0 when the
 * sorted copy could not be kept (a NaN in the ring): the caller uses quickselect.
 * w: 2 L doubles and ix: 2 L indices of work space.
 *
 * The d values that entered are sorted, as are the (up to d) values they replaced; each
 * leaving value is found in the copy (with its sign, for zeros) and each entering one gets
 * its place among the old values. Between two such points the old values move as one run,
 * by (insertions - deletions) before it: runs that move left are moved in a forward pass,
 * runs that move right (and the entering values) in a backward one, so no run overwrites
 * one that has not moved yet. A run with nothing inserted or deleted before it stays. */
static int
sync_sorted(const double *ring, double *prev, double *srt, long long *synced, long long count,
            long long pos, Py_ssize_t L, double *w, long long *ix)
{
    const long long s0 = *synced;
    const long long d = count - s0;
    const Py_ssize_t k = count < (long long)L ? (Py_ssize_t)count : L;
    if (s0 >= 0 && d >= 0 && d < (long long)L && pos == count % (long long)L) {
        const Py_ssize_t n_old = s0 < (long long)L ? (Py_ssize_t)s0 : L;
        double *enter = w, *leave = w + L;
        long long *di = ix, *ip = ix + L;
        Py_ssize_t ne = 0, nl = 0;
        int ok = 1;
        for (long long q = s0; q < count; q++) {
            const Py_ssize_t slot = (Py_ssize_t)(q % (long long)L);
            const double v = ring[slot];
            if (v != v) { ok = 0; break; }
            enter[ne++] = v;
            if (q >= (long long)L) leave[nl++] = prev[slot];
        }
        if (ok && ne == 0) return 1;                    /* nothing entered */
        if (ok && n_old - nl + ne != k) ok = 0;
        if (ok) {
            sort_doubles(enter, ne, ix);      /* ix: free until the searches below */
            sort_doubles(leave, nl, ix);
            /* where each leaving value is (distinct indices, ascending) and where each
             * entering one goes (before old index ip[i], non-decreasing); nothing is moved
             * until every leaving value has been found. Found by one forward pass over
             * the copy for each (gallop_forward from the last position found): between
             * two update points the copy has left the cache, and a pass forward costs
             * less than a few hundred scattered binary searches over the whole copy
             * (measured: bench/running_median.py --cold); galloping skips the values
             * between two positions instead of comparing each. */
            Py_ssize_t at = 0;
            for (Py_ssize_t i = 0; i < nl; i++) {
                const long long kv = order_key(leave[i]);
                at = gallop_forward(srt, at, n_old, leave[i]);
                if (at >= n_old || order_key(srt[at]) != kv) {   /* the same bits */
                    ok = 0;                         /* not in the copy: rebuild it */
                    break;
                }
                di[i] = at++;
            }
            at = 0;
            for (Py_ssize_t i = 0; ok && i < ne; i++) {
                at = gallop_forward(srt, at, n_old, enter[i]);
                ip[i] = at;
            }
        }
        if (ok) {
            /* forward: the runs that move left. An insertion at ip comes before a deletion
             * of the same index (the entering value goes before srt[ip]). */
            Py_ssize_t c = 0, sh = 0, li = 0, ei = 0;
            while (li < nl || ei < ne) {
                const int ins = ei < ne && (li >= nl || ip[ei] <= di[li]);
                const Py_ssize_t at = (Py_ssize_t)(ins ? ip[ei] : di[li]);
                if (sh < 0 && at > c)
                    memmove(srt + c + sh, srt + c, (size_t)(at - c) * sizeof(double));
                if (ins) { sh++; ei++; c = at; }
                else { sh--; li++; c = at + 1; }
            }
            if (sh < 0 && n_old > c)
                memmove(srt + c + sh, srt + c, (size_t)(n_old - c) * sizeof(double));
            /* backward: the runs that move right, and the entering values. sh is the shift
             * of the run after the event being undone. */
            Py_ssize_t end = n_old;
            li = nl;
            ei = ne;
            while (li > 0 || ei > 0) {
                /* the last event in forward order: a deletion at di unless an insertion at
                 * ip > di (at equal indices the insertion came first, so it is undone last) */
                const int del = li > 0 && (ei == 0 || di[li - 1] >= ip[ei - 1]);
                const Py_ssize_t at = (Py_ssize_t)(del ? di[li - 1] : ip[ei - 1]);
                const Py_ssize_t run0 = del ? at + 1 : at;        /* the run after it */
                if (sh > 0 && end > run0)
                    memmove(srt + run0 + sh, srt + run0, (size_t)(end - run0) * sizeof(double));
                if (del) { sh++; li--; end = at; }
                else {
                    sh--; ei--; end = at;
                    srt[at + sh] = enter[ei];      /* its final place: ip + shift before it */
                }
            }
            for (long long q = s0; q < count; q++) {
                const Py_ssize_t slot = (Py_ssize_t)(q % (long long)L);
                prev[slot] = ring[slot];
            }
            *synced = count;
            return 1;
        }
    }
    /* rebuild: the first time after an inconsistency, a NaN, or a whole ring replaced */
    memcpy(prev, ring, (size_t)L * sizeof(double));
    for (Py_ssize_t i = 0; i < k; i++) {
        if (ring[i] != ring[i]) { *synced = -1; return 0; }
        srt[i] = ring[i];
    }
    sort_doubles(srt, k, ix);
    *synced = count < 0 ? -1 : count;
    return 1;
}

/* 1 if the sorted s[0..n-1] holds both 0.0 and -0.0 (equal as numbers, so which one
 * quickselect finds in the middle depends on the ring's order) */
static int
mixed_zeros(const double *s, Py_ssize_t n)
{
    const Py_ssize_t i = lower_bound(s, 0, n, -0.0);       /* the first -0.0, if any */
    if (i == n || s[i] != 0.0 || !signbit(s[i])) return 0;
    const Py_ssize_t j = lower_bound(s, i, n, 0.0);        /* the first 0.0, if any */
    return j < n && s[j] == 0.0;
}

PyDoc_STRVAR(running_median_mad_doc,
"running_median_mad(ring, pos, counts, min_count, prev, sorted, synced, scratch, index,\n"
"                   median, mad) -> None\n\n"
"median_mad's statistics (numpy.median of each row's first min(counts[j], L) values of\n"
"ring (c, L) and of their absolute deviations from it; NaN below min_count), bit for bit,\n"
"from a sorted copy of each row kept across calls: sorted (c, L) holds the ring's values\n"
"in order as of the last call, prev (c, L) the ring then and synced (c,) int64 its count\n"
"then (all three written; zeros for a new or reset ring). The ring must be written as\n"
"RobustBaseline does: the k-th kept value at slot k mod L (pos == counts mod L). pos,\n"
"counts: (c,) int64; scratch: (2 L,) float64 and index: (2 L,) int64 work space;\n"
"median, mad: (c,) float64.");

static PyObject *
filters_running_median_mad(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError,
                        "running_median_mad(ring, pos, counts, min_count, prev, sorted, synced, "
                        "scratch, index, median, mad) takes 11 arguments");
        return NULL;
    }
    Py_ssize_t min_count;
    if (arg_ssize(args[3], "running_median_mad", "min_count", &min_count) < 0) return NULL;
    Py_ssize_t c = arg_len(args[2], "running_median_mad", "counts");
    if (c < 0) return NULL;
    Py_ssize_t len2 = arg_len(args[7], "running_median_mad", "scratch");
    if (len2 < 0) return NULL;
    if (len2 < 2 || len2 % 2) {
        PyErr_Format(PyExc_ValueError, "running_median_mad: scratch must hold 2 L values, "
                     "got %zd", len2);
        return NULL;
    }
    const Py_ssize_t L = len2 / 2;
    /* buffers in argument order */
    enum { NB = 10 };
    static const int arg[NB] = {0, 1, 2, 4, 5, 6, 7, 8, 9, 10};
    static const int is_int[NB] = {0, 1, 1, 0, 0, 1, 0, 1, 0, 0};
    static const int writable[NB] = {0, 0, 0, 1, 1, 1, 1, 1, 1, 1};
    static const char *name[NB] = {"ring", "pos", "counts", "prev", "sorted", "synced",
                                   "scratch", "index", "median", "mad"};
    Py_buffer v[NB];
    int got = 0;
    for (; got < NB; got++) {
        const int is_ring = got == 0 || got == 3 || got == 4;
        const Py_ssize_t rows = is_ring ? c : 1,
                         cols = is_ring ? L : (got == 6 || got == 7 ? 2 * L : c);
        if (get_rule_buf(args[arg[got]], &v[got], writable[got], is_int[got], rows, cols,
                         name[got]) < 0)
            break;
    }
    if (got < NB) {
        for (int i = 0; i < got; i++) PyBuffer_Release(&v[i]);
        return NULL;
    }
    for (int a = 3; a < NB; a++) {          /* outputs must not alias anything else */
        for (int b = 0; b < NB; b++) {
            if (b != a && overlap(&v[a], &v[b])) {
                PyErr_Format(PyExc_ValueError, "running_median_mad: %s and %s must not "
                             "share memory", name[a], name[b]);
                for (int i = 0; i < NB; i++) PyBuffer_Release(&v[i]);
                return NULL;
            }
        }
    }
    WORK_BEGIN(c * L)
    const double *ring = (const double *)v[0].buf;
    const long long *pos = (const long long *)v[1].buf, *counts = (const long long *)v[2].buf;
    double *prev = (double *)v[3].buf, *srt = (double *)v[4].buf;
    long long *synced = (long long *)v[5].buf;
    double *w = (double *)v[6].buf, *med = (double *)v[8].buf, *mad = (double *)v[9].buf;
    long long *ix = (long long *)v[7].buf;
    for (Py_ssize_t j = 0; j < c; j++) {
        const double *row = ring + j * L;
        const long long cnt = counts[j];
        const Py_ssize_t k = cnt < (long long)L ? (Py_ssize_t)cnt : L;
        if (cnt < 0) {                       /* not a count: nothing to keep */
            synced[j] = -1;
            med[j] = NAN; mad[j] = NAN;
            continue;
        }
        const int have = sync_sorted(row, prev + j * L, srt + j * L, synced + j, cnt, pos[j],
                                     L, w, ix);
        if (k < 1 || k < min_count) { med[j] = NAN; mad[j] = NAN; continue; }
        if (!have) { quick_median_mad(row, k, w, med + j, mad + j); continue; }
        const double *s = srt + j * L;
        const Py_ssize_t h = k / 2;
        /* as median_inplace: the upper middle value, or the mean of the two middle ones */
        const double m = (k % 2) ? s[h] : (s[h - 1] + s[h]) / 2.0;
        if (!isfinite(m) || (m == 0.0 && mixed_zeros(s, k))) {
            /* inf - inf is NaN, and which of 0.0 and -0.0 is "the" middle value is
             * quickselect's order: its own answer, bit for bit */
            quick_median_mad(row, k, w, med + j, mad + j);
            continue;
        }
        const double upper = kth_abs_dev(s, k, h, m, h);
        med[j] = m;
        mad[j] = (k % 2) ? upper : (kth_abs_dev(s, k, h, m, h - 1) + upper) / 2.0;
    }
    WORK_END
    for (int i = 0; i < NB; i++) PyBuffer_Release(&v[i]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(first_at_or_after_doc,
"first_at_or_after(t, time_s, start) -> int\n\n"
"The first row i >= start with t[i] >= time_s (NaN compares False), or -1; t: (n,)\n"
"float64 seconds. What np.flatnonzero(t[start:] >= time_s)[0] + start gives, without\n"
"the NumPy calls (a detector asks it every chunk until its calibration ends).");

static PyObject *
filters_first_at_or_after(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "first_at_or_after(t, time_s, start) takes 3 arguments");
        return NULL;
    }
    double at;
    Py_ssize_t start;
    if (arg_double(args[1], "first_at_or_after", "time_s", &at) < 0
        || arg_ssize(args[2], "first_at_or_after", "start", &start) < 0) return NULL;
    Py_buffer tv;
    if (get_rule_buf(args[0], &tv, 0, 0, 1, -1, "t") < 0) return NULL;
    const double *t = (const double *)tv.buf;
    const Py_ssize_t n = tv.len / 8;
    Py_ssize_t found = -1;
    for (Py_ssize_t i = start < 0 ? 0 : start; i < n; i++)
        if (t[i] >= at) { found = i; break; }
    PyBuffer_Release(&tv);
    return PyLong_FromSsize_t(found);
}

PyMethodDef baseline_functions[] = {
    {"threshold_runs", (PyCFunction)(void (*)(void))filters_threshold_runs, METH_FASTCALL,
     threshold_runs_doc},
    {"baseline_runs", (PyCFunction)(void (*)(void))filters_baseline_runs, METH_FASTCALL,
     baseline_runs_doc},
    {"baseline_push", (PyCFunction)(void (*)(void))filters_baseline_push, METH_FASTCALL,
     baseline_push_doc},
    {"median_mad", (PyCFunction)(void (*)(void))filters_median_mad, METH_FASTCALL,
     median_mad_doc},
    {"running_median_mad", (PyCFunction)(void (*)(void))filters_running_median_mad,
     METH_FASTCALL, running_median_mad_doc},
    {"first_at_or_after", (PyCFunction)(void (*)(void))filters_first_at_or_after,
     METH_FASTCALL, first_at_or_after_doc},
    {NULL, NULL, 0, NULL},
};
