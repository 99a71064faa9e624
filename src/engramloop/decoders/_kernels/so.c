/*
 * engramloop C kernels, so.c. The slow-oscillation detector's kernel: SoPlan (filter,
 * gate, baseline and down-state search of one block in one call, with its banks and
 * buffers bound once).
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

/* A down state that ended in a run: its up-crossing sample and channel, and the state it
 * closed (kept in C until the GIL is back, then turned into tuples). */
typedef struct {
    Py_ssize_t i, ch;
    double onset, trough_v, trough_t;
} SoFound;

#define SO_PLANES 6

/* The plan's buffers, in constructor order (ring .. median only with the adaptive
 * threshold). */
enum { S_WORK, S_STATE, S_RING, S_POS, S_COUNT, S_EXCL, S_MED, S_NB };
enum { S_FILT, S_SLOW, S_FAST, S_NBANK };

typedef struct {
    PyObject_HEAD
    PlanBank banks[S_NBANK];
    Py_buffer v[S_NB];
    int have[S_NB];
    Py_ssize_t *cols;           /* owned copy of the column indices */
    long long *lp;              /* the ring positions, copied and checked per run */
    SoFound *found;             /* room for cap * k down states */
    Py_ssize_t k, cap, length, step, max_col;
    double thr_fixed, scale, floor_v, refr;
    int gated, adaptive, busy;
} SoPlan;

static void
so_plan_clear(SoPlan *self)
{
    for (int b = 0; b < S_NB; b++) {
        if (self->have[b]) PyBuffer_Release(&self->v[b]);
        self->have[b] = 0;
    }
    for (int b = 0; b < S_NBANK; b++) plan_bank_clear(&self->banks[b]);
    PyMem_Free(self->cols);
    PyMem_Free(self->lp);
    PyMem_Free(self->found);
    self->cols = NULL;
    self->lp = NULL;
    self->found = NULL;
}

static void
SoPlan_dealloc(SoPlan *self)
{
    so_plan_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
SoPlan_init(SoPlan *self, PyObject *args, PyObject *kwds)
{
    static const char *fn = "SoPlan";
    if (kwds != NULL && PyDict_Size(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "SoPlan takes no keyword arguments");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "SoPlan is running in another thread");
        return -1;
    }
    so_plan_clear(self);
    if (PyTuple_GET_SIZE(args) != 16) {
        PyErr_SetString(PyExc_TypeError,
                        "SoPlan(cols, filt, gate_slow, gate_fast, work, state, ring, pos, "
                        "count, excl, median, step, threshold_v, scale, floor_v, "
                        "refractory_s) takes 16 arguments");
        return -1;
    }
    PyObject *const *a = &PyTuple_GET_ITEM(args, 0);
    Py_ssize_t step;
    double thr_fixed, scale, floor_v, refr;
    if (arg_ssize(a[11], fn, "step", &step) < 0
        || arg_double(a[12], fn, "threshold_v", &thr_fixed) < 0
        || arg_double(a[13], fn, "scale", &scale) < 0
        || arg_double(a[14], fn, "floor_v", &floor_v) < 0
        || arg_double(a[15], fn, "refractory_s", &refr) < 0) return -1;
    const int adaptive = a[6] != Py_None;
    if (adaptive && step < 1) {
        PyErr_Format(PyExc_ValueError, "SoPlan: step must be >= 1, got %zd", step);
        return -1;
    }
    /* the filter banks: the band-pass, and the two gate banks (both or neither) */
    if (!PyObject_TypeCheck(a[1], &FilterBankType)) {
        PyErr_Format(PyExc_TypeError, "SoPlan: filt must be a FilterBank, got %.100s",
                     Py_TYPE(a[1])->tp_name);
        return -1;
    }
    const Py_ssize_t k = ((FilterBank *)a[1])->n_channels;
    const int gated = a[2] != Py_None || a[3] != Py_None;
    if (plan_bank(&self->banks[S_FILT], a[1], fn, "filt", k, 0) < 0
        || (gated && (plan_bank(&self->banks[S_SLOW], a[2], fn, "gate_slow", k, 1) < 0
                      || plan_bank(&self->banks[S_FAST], a[3], fn, "gate_fast", k, 1) < 0))
        || plan_banks_distinct(self->banks, S_NBANK, fn) < 0) {
        so_plan_clear(self);
        return -1;
    }
    self->cols = PyMem_Malloc((size_t)k * sizeof(Py_ssize_t));
    self->lp = PyMem_Malloc((size_t)k * sizeof(long long));
    if (self->cols == NULL || self->lp == NULL) {
        so_plan_clear(self);
        PyErr_NoMemory();
        return -1;
    }
    {
        Py_buffer cv;
        if (get_vector(a[0], &cv, 1, "cols") < 0) { so_plan_clear(self); return -1; }
        if (cv.shape[0] != k) {
            PyErr_Format(PyExc_ValueError, "SoPlan: cols must hold %zd column indices, got %zd",
                         k, cv.shape[0]);
            PyBuffer_Release(&cv);
            so_plan_clear(self);
            return -1;
        }
        self->max_col = -1;
        for (Py_ssize_t j = 0; j < k; j++) {
            const long long cj = ((const long long *)cv.buf)[j];
            if (cj < 0) {
                PyErr_Format(PyExc_ValueError, "SoPlan: cols[%zd] = %lld is negative", j, cj);
                PyBuffer_Release(&cv);
                so_plan_clear(self);
                return -1;
            }
            self->cols[j] = (Py_ssize_t)cj;
            if (self->cols[j] > self->max_col) self->max_col = self->cols[j];
        }
        PyBuffer_Release(&cv);
    }
    static const char *names[S_NB] = {"work", "state", "ring", "pos", "count", "excl",
                                      "median"};
    static const int writable[S_NB] = {1, 1, 1, 1, 1, 0, 0};
    if (PyObject_GetBuffer(a[4], &self->v[S_WORK],
                           PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "SoPlan: work must be a C-contiguous, writable "
                                         "float64 array");
        so_plan_clear(self);
        return -1;
    }
    self->have[S_WORK] = 1;
    const Py_buffer *wv = &self->v[S_WORK];
    if (!is_8byte(wv, 0) || wv->ndim != 3 || wv->shape[0] != SO_PLANES || wv->shape[1] < 1
        || wv->shape[2] != k) {
        PyErr_Format(PyExc_ValueError, "SoPlan: work must be a float64 array of shape (%d, "
                     "cap >= 1, %zd)", SO_PLANES, k);
        so_plan_clear(self);
        return -1;
    }
    const Py_ssize_t cap = wv->shape[1];
    /* a channel ends at most one down state per three samples (below, back up, re-armed
     * above zero), so cap * k records always suffice */
    self->found = PyMem_Malloc((size_t)(cap * k) * sizeof(SoFound));
    if (self->found == NULL) {
        so_plan_clear(self);
        PyErr_NoMemory();
        return -1;
    }
    if (get_rule_buf(a[5], &self->v[S_STATE], 1, 0, k, 5, "state") < 0) {
        so_plan_clear(self);
        return -1;
    }
    self->have[S_STATE] = 1;
    Py_ssize_t length = 0;
    if (adaptive) {
        length = get_ring(a[6], &self->v[S_RING], k, "SoPlan: ", " (or None)");
        if (length < 0) { so_plan_clear(self); return -1; }
        self->have[S_RING] = 1;
        static const int is_int[4] = {1, 1, 0, 0};
        for (int b = 0; b < 4; b++) {
            if (get_rule_buf(a[7 + b], &self->v[S_POS + b], writable[S_POS + b], is_int[b], 1,
                             k, names[S_POS + b]) < 0) {
                so_plan_clear(self);
                return -1;
            }
            self->have[S_POS + b] = 1;
        }
    }
    for (int i = 0; i < S_NB; i++)
        for (int j = i + 1; j < S_NB; j++)
            if (self->have[i] && self->have[j] && (writable[i] || writable[j])
                && overlap(&self->v[i], &self->v[j])) {
                PyErr_Format(PyExc_ValueError, "SoPlan: %s and %s share memory", names[i],
                             names[j]);
                so_plan_clear(self);
                return -1;
            }
    self->k = k; self->cap = cap; self->length = length; self->step = step;
    self->thr_fixed = thr_fixed; self->scale = scale; self->floor_v = floor_v;
    self->refr = refr; self->gated = gated; self->adaptive = adaptive;
    return 0;
}

/* The down-state machine of SlowOscDetector._scan over rows start .. n of the band-passed
 * y and the threshold thr ((n, k) rows of the plan's work planes), one sample at a time;
 * the state rows updated, the down states that ended put in self->found in (sample,
 * channel) order. Returns how many. Runs without the GIL. */
static Py_ssize_t
so_scan(SoPlan *self, const double *y, const double *thr, const double *t, Py_ssize_t start,
        Py_ssize_t n)
{
    const Py_ssize_t k = self->k;
    SoFound *found = self->found;
    Py_ssize_t n_found = 0;
    /* The down-state machine of SlowOscDetector._scan, one sample at a time. In a down
     * state the trough is the first minimum of each stretch of samples the scan looks at
     * in one go (to the up-crossing or the block's end), kept only if below the trough so
     * far -- which is np.argmin's answer, including its NaN rule (a NaN in the stretch is
     * its minimum, and NaN < trough is false: the stretch changes nothing). */
    double *st = (double *)self->v[S_STATE].buf;
    const double refr = self->refr;
    for (Py_ssize_t j = 0; j < k; j++) {
        double *s = st + 5 * j;     /* state, onset_s, trough_v, trough_s, rearm_s */
        double mode = s[0], cand_v = s[2], cand_t = s[3];
        int cand_nan = 0;
        for (Py_ssize_t i = start; i < n; i++) {
            const double yi = y[i * k + j], th = thr[i * k + j], ti = t[i];
            if (mode == 0.0) {
                if (!(yi < th)) continue;
                s[1] = ti;                         /* a down state begins here */
                mode = 1.0;
                cand_v = s[2]; cand_t = s[3]; cand_nan = 0;
            }
            if (mode == 1.0) {
                if (yi >= th) {                    /* back up: the event fires here */
                    if (!cand_nan) { s[2] = cand_v; s[3] = cand_t; }
                    SoFound *f = &found[n_found++];
                    f->i = i; f->ch = j; f->onset = s[1]; f->trough_v = s[2];
                    f->trough_t = s[3];
                    s[2] = INFINITY;
                    mode = 2.0;
                    s[4] = ti + refr;
                    continue;
                }
                if (isnan(yi)) cand_nan = 1;
                else if (yi < cand_v) { cand_v = yi; cand_t = ti; }
                continue;
            }
            /* fired: re-arm after an upward zero crossing past the refractory time */
            if (yi > 0.0 && ti >= s[4]) mode = 0.0;
        }
        if (mode == 1.0 && !cand_nan) { s[2] = cand_v; s[3] = cand_t; }
        s[0] = mode;
    }
    /* channel by channel, each in sample order: a stable insertion sort by sample gives
     * (sample, channel) order, as the Python scan's found.sort() */
    for (Py_ssize_t a = 1; a < n_found; a++) {
        SoFound f = found[a];
        Py_ssize_t b = a;
        while (b > 0 && found[b - 1].i > f.i) { found[b] = found[b - 1]; b--; }
        found[b] = f;
    }
    return n_found;
}

/* self->found[:n_found] as a tuple of (sample, channel, onset_s, trough_v, trough_s);
 * with the GIL. */
static PyObject *
so_found_tuple(SoPlan *self, Py_ssize_t n_found)
{
    const SoFound *found = self->found;
    PyObject *result = PyTuple_New(n_found);
    for (Py_ssize_t a = 0; result != NULL && a < n_found; a++) {
        PyObject *item = Py_BuildValue("(nnddd)", found[a].i, found[a].ch, found[a].onset,
                                       found[a].trough_v, found[a].trough_t);
        if (item == NULL) Py_CLEAR(result);
        else PyTuple_SET_ITEM(result, a, item);
    }
    return result;
}

PyDoc_STRVAR(so_run_doc,
"run(samples, first, t, scan) -> tuple\n\n"
"One block of the slow-oscillation detector (decoders.slow_osc), with no baseline update\n"
"point in it, on the bound arguments. samples (n, C) float64 volts, n <= cap, with every\n"
"bound column; first: the absolute index of its first sample; t (n,) float64 seconds.\n"
"work[0] = samples[:, cols] (n, k) picked; work[1] = that through `filt` (the band-pass);\n"
"unless the gate banks are None, work[3] / work[4] = moving RMS of the picked input through\n"
"gate_slow / gate_fast (work[2] is their scratch); work[5] = the threshold: threshold_v, or\n"
"with a ring (adaptive) min(median * scale, floor_v) after pushing |work[1]| at every\n"
"absolute sample index first + i that is a multiple of `step` into the ring (k, L) at pos\n"
"(advancing it, count += 1) unless above excl (NaN is not kept). Then, when scan is true,\n"
"per channel the down-state machine on work[1] against work[5]; state (k, 5) holds [state\n"
"(0 armed, 1 below threshold, 2 fired), onset_s, trough_v, trough_s, rearm_s] and is\n"
"updated; scan false (calibrating): no down-state machine.\n"
"Returns the down states that ended in the block, in (sample, channel) order, as tuples\n"
"(sample, channel, onset_s, trough_v, trough_s); () when none did.");

static PyObject *
SoPlan_run(SoPlan *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *fn = "SoPlan.run";
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "SoPlan.run(samples, first, t, scan) takes 4 "
                                         "arguments");
        return NULL;
    }
    if (self->cols == NULL || !self->have[S_STATE]) {
        PyErr_SetString(PyExc_RuntimeError, "SoPlan.__init__ was not called");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "SoPlan is already running in another thread; "
                                            "use one plan per thread");
        return NULL;
    }
    Py_ssize_t first;
    if (arg_ssize(args[1], fn, "first", &first) < 0) return NULL;
    if (first < 0) {
        PyErr_Format(PyExc_ValueError, "SoPlan.run: first must be >= 0, got %zd", first);
        return NULL;
    }
    const int scan = PyObject_IsTrue(args[3]);
    if (scan < 0) return NULL;
    Py_buffer sv, tv;
    if (PyObject_GetBuffer(args[0], &sv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "SoPlan.run: samples must be a C-contiguous float64 "
                                         "array");
        return NULL;
    }
    if (!is_8byte(&sv, 0) || sv.ndim != 2) {
        PyErr_SetString(PyExc_TypeError, "SoPlan.run: samples must be a 2-D float64 array "
                                         "(n, n_columns)");
        PyBuffer_Release(&sv);
        return NULL;
    }
    const Py_ssize_t n = sv.shape[0], ncol = sv.shape[1], k = self->k, cap = self->cap;
    if (n > cap || self->max_col >= ncol) {
        PyErr_Format(PyExc_ValueError, "SoPlan.run: samples (%zd, %zd) must have at most %zd "
                     "rows (the plan's work) and column %zd", n, ncol, cap, self->max_col);
        PyBuffer_Release(&sv);
        return NULL;
    }
    if (get_rule_buf(args[2], &tv, 0, 0, 1, n, "t") < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    for (int b = 0; b < S_EXCL; b++) {
        if (self->have[b] && (overlap(&self->v[b], &sv) || overlap(&self->v[b], &tv))) {
            PyErr_SetString(PyExc_ValueError, "SoPlan.run: samples and t must not share "
                                              "memory with the plan's buffers");
            PyBuffer_Release(&sv); PyBuffer_Release(&tv);
            return NULL;
        }
    }
    long long *lp = self->lp;
    const Py_ssize_t length = self->length, step = self->step;
    if (self->adaptive) {
        /* the ring positions are copied and checked while the GIL is held, and only the
         * copy indexes the ring */
        memcpy(lp, self->v[S_POS].buf, (size_t)k * sizeof(long long));
        for (Py_ssize_t j = 0; j < k; j++) {
            if (lp[j] < 0 || lp[j] >= length) {
                PyErr_Format(PyExc_ValueError, "SoPlan.run: pos[%zd] = %lld is outside the "
                             "ring (0..%zd)", j, lp[j], length - 1);
                PyBuffer_Release(&sv); PyBuffer_Release(&tv);
                return NULL;
            }
        }
    }
    if (plan_banks_enter(self->banks, S_NBANK, fn) < 0) {
        PyBuffer_Release(&sv); PyBuffer_Release(&tv);
        return NULL;
    }
    self->busy = 1;
    FilterBank *filt = self->banks[S_FILT].bank, *gslow = self->banks[S_SLOW].bank,
               *gfast = self->banks[S_FAST].bank;
    const Py_ssize_t *cols = self->cols;
    Py_ssize_t n_found = 0;
    WORK_BEGIN(n * k)
    const double *src = (const double *)sv.buf, *t = (const double *)tv.buf;
    double *w = (double *)self->v[S_WORK].buf;
    double *x = w, *y = w + cap * k, *gf = w + 2 * cap * k, *gs = w + 3 * cap * k,
           *gh = w + 4 * cap * k, *thr = w + 5 * cap * k;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *row = src + i * ncol;
        for (Py_ssize_t j = 0; j < k; j++) x[i * k + j] = row[cols[j]];
    }
    /* the same kernels, in the same order, as SosFilter.process and
     * BandEnvelope.process_envelope: the results are bit-identical to the Python path */
    sos_block(filt, x, y, n);
    if (self->gated) {
        sos_block(gslow, x, gf, n);
        rms_block(gslow, gf, gs, n);
        sos_block(gfast, x, gf, n);
        rms_block(gfast, gf, gh, n);
    }
    if (self->adaptive) {
        /* RobustBaseline.process(absolute=True) without an update point: the statistics
         * in force are constant over the block, and |y| is pushed at decimation points */
        double *ring = (double *)self->v[S_RING].buf;
        long long *count = (long long *)self->v[S_COUNT].buf;
        const double *excl = (const double *)self->v[S_EXCL].buf,
                     *med = (const double *)self->v[S_MED].buf;
        for (Py_ssize_t i = (step - first % step) % step; i < n; i += step) {
            for (Py_ssize_t j = 0; j < k; j++) {
                const double a = fabs(y[i * k + j]);
                if (a <= excl[j]) {
                    ring[j * length + lp[j]] = a;
                    lp[j] = (lp[j] + 1) % length;
                    count[j] += 1;
                }
            }
        }
        for (Py_ssize_t j = 0; j < k; j++) {
            /* np.minimum(med * scale, floor_v): NaN propagates, a tie gives the second */
            const double a = med[j] * self->scale;
            const double th = (isnan(a) || a < self->floor_v) ? a : self->floor_v;
            for (Py_ssize_t i = 0; i < n; i++) thr[i * k + j] = th;
        }
    } else {
        const double th = self->thr_fixed;
        for (Py_ssize_t q = 0; q < n * k; q++) thr[q] = th;
    }
    if (scan) n_found = so_scan(self, y, thr, t, 0, n);
    WORK_END
    if (self->adaptive) memcpy(self->v[S_POS].buf, lp, (size_t)k * sizeof(long long));
    self->busy = 0;
    plan_banks_leave(self->banks, S_NBANK);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&tv);
    return so_found_tuple(self, n_found);
}

PyDoc_STRVAR(so_scan_doc,
"scan(t, start, n) -> tuple\n\n"
"The down-state machine alone, as run() does it, over rows start .. n of the band-passed\n"
"work[1] against the threshold work[5] as they are (filled by the Python path of a block\n"
"with a baseline update point); t (n,) float64 seconds, 0 <= start <= n <= cap. Updates\n"
"state; returns the down states that ended, as run() does.");

static PyObject *
SoPlan_scan(SoPlan *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *fn = "SoPlan.scan";
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "SoPlan.scan(t, start, n) takes 3 arguments");
        return NULL;
    }
    if (self->cols == NULL || !self->have[S_STATE]) {
        PyErr_SetString(PyExc_RuntimeError, "SoPlan.__init__ was not called");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "SoPlan is already running in another thread; "
                                            "use one plan per thread");
        return NULL;
    }
    Py_ssize_t start, n;
    if (arg_ssize(args[1], fn, "start", &start) < 0) return NULL;
    if (arg_ssize(args[2], fn, "n", &n) < 0) return NULL;
    if (n < 0 || n > self->cap || start < 0 || start > n) {
        PyErr_Format(PyExc_ValueError, "SoPlan.scan: need 0 <= start <= n <= cap (%zd), got "
                     "start %zd, n %zd", self->cap, start, n);
        return NULL;
    }
    Py_buffer tv;
    if (get_rule_buf(args[0], &tv, 0, 0, 1, n, "t") < 0) return NULL;
    for (int b = 0; b < S_EXCL; b++) {
        if (self->have[b] && overlap(&self->v[b], &tv)) {
            PyErr_SetString(PyExc_ValueError, "SoPlan.scan: t must not share memory with "
                                              "the plan's buffers");
            PyBuffer_Release(&tv);
            return NULL;
        }
    }
    self->busy = 1;
    const Py_ssize_t cap = self->cap, k = self->k;
    const double *w = (const double *)self->v[S_WORK].buf;
    Py_ssize_t n_found;
    WORK_BEGIN((n - start) * k)
    n_found = so_scan(self, w + cap * k, w + 5 * cap * k, (const double *)tv.buf, start, n);
    WORK_END
    self->busy = 0;
    PyBuffer_Release(&tv);
    return so_found_tuple(self, n_found);
}

static PyObject *
SoPlan_get_cap(SoPlan *self, void *Py_UNUSED(c))
{
    return PyLong_FromSsize_t(self->cap);
}

static PyMethodDef SoPlan_methods[] = {
    {"run", (PyCFunction)(void (*)(void))SoPlan_run, METH_FASTCALL, so_run_doc},
    {"scan", (PyCFunction)(void (*)(void))SoPlan_scan, METH_FASTCALL, so_scan_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef SoPlan_getset[] = {
    {"cap", (getter)SoPlan_get_cap, NULL, "the most samples one run takes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject SoPlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engramloop.decoders._filters.SoPlan",
    .tp_basicsize = sizeof(SoPlan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SoPlan(cols, filt, gate_slow, gate_fast, work, state, ring, pos, count, excl, "
              "median, step, threshold_v, scale, floor_v, refractory_s): the slow-oscillation "
              "detector's fused block with its banks and buffers bound and checked once "
              "(gate banks both None: no gate; ring None: the fixed threshold_v, and pos .. "
              "median, step are ignored); run(samples, first, t, scan) per block.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SoPlan_init,
    .tp_dealloc = (destructor)SoPlan_dealloc,
    .tp_methods = SoPlan_methods,
    .tp_getset = SoPlan_getset,
};
