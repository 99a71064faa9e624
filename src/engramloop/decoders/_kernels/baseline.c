/*
 * engramloop C kernels, baseline.c. Detector baselines and threshold rules shared by the
 * detectors: threshold_runs, baseline_runs (the running median/SD baseline ring and run
 * lengths above it), median_mad, first_at_or_after.
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
    {"median_mad", (PyCFunction)(void (*)(void))filters_median_mad, METH_FASTCALL,
     median_mad_doc},
    {"first_at_or_after", (PyCFunction)(void (*)(void))filters_first_at_or_after,
     METH_FASTCALL, first_at_or_after_doc},
    {NULL, NULL, 0, NULL},
};
