/*
 * engramloop C kernels, ripple.c. The ripple detector's kernels: RipplePlan (the fused
 * chunk -- time ring, pick, filter, envelope, baseline, runs, artefact test and theta
 * gate in one call -- with its banks and buffers bound once), ripple_candidate (the
 * envelope rule with the theta/delta gate), rearm_index.
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

/* ------------------------------------------------------------------ RipplePlan */

/* The plan's buffers, in constructor order (hold only with a gate). */
enum { R_TIMES, R_WORK, R_RUNS, R_RING, R_POS, R_COUNT, R_EXCL, R_MED, R_SD, R_CARRY, R_HOLD,
       R_NB };
/* The plan's banks: band, theta, delta (theta and delta only with a gate). */
enum { R_BAND, R_THETA, R_DELTA, R_NBANK };

typedef struct {
    PyObject_HEAD
    PlanBank banks[R_NBANK];
    Py_buffer v[R_NB];
    int have[R_NB];
    Py_ssize_t cols[PICK_STACK];
    double w[PICK_STACK];
    long long lp[PICK_STACK];   /* the ring positions, copied and checked per run */
    Py_ssize_t nc, nw, max_col;
    Py_ssize_t c, cap, length, n_times, step, n_det, gate_col;
    double k_sd, k_art;
    int ready, busy;
} RipplePlan;

static void
ripple_plan_clear(RipplePlan *self)
{
    for (int b = 0; b < R_NB; b++) {
        if (self->have[b]) PyBuffer_Release(&self->v[b]);
        self->have[b] = 0;
    }
    for (int b = 0; b < R_NBANK; b++) plan_bank_clear(&self->banks[b]);
    self->ready = 0;
}

static void
RipplePlan_dealloc(RipplePlan *self)
{
    ripple_plan_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
RipplePlan_init(RipplePlan *self, PyObject *args, PyObject *kwds)
{
    static const char *fn = "RipplePlan";
    if (kwds != NULL && PyDict_Size(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "RipplePlan takes no keyword arguments");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "RipplePlan is running in another thread");
        return -1;
    }
    ripple_plan_clear(self);
    if (PyTuple_GET_SIZE(args) != 21) {
        PyErr_SetString(PyExc_TypeError,
                        "RipplePlan(times, cols, weights, band, work, runs, step, ring, pos, "
                        "count, excl, median, sd, k_sd, carry, n_det, k_art, gate_col, theta, "
                        "delta, hold) takes 21 arguments");
        return -1;
    }
    PyObject *const *a = &PyTuple_GET_ITEM(args, 0);
    Py_ssize_t step, n_det, gate_col;
    double k_sd, k_art;
    if (arg_ssize(a[6], fn, "step", &step) < 0 || arg_double(a[13], fn, "k_sd", &k_sd) < 0
        || arg_ssize(a[15], fn, "n_det", &n_det) < 0
        || arg_double(a[16], fn, "k_art", &k_art) < 0
        || arg_ssize(a[17], fn, "gate_col", &gate_col) < 0) return -1;
    if (step < 1 || gate_col < -1) {
        PyErr_Format(PyExc_ValueError, "RipplePlan: step must be >= 1 and gate_col >= -1 (-1: "
                     "no theta gate), got step %zd, gate_col %zd", step, gate_col);
        return -1;
    }
    if (!PyObject_TypeCheck(a[3], &FilterBankType)) {
        PyErr_Format(PyExc_TypeError, "RipplePlan: band must be a FilterBank, got %.100s",
                     Py_TYPE(a[3])->tp_name);
        return -1;
    }
    const Py_ssize_t c = ((FilterBank *)a[3])->n_channels;
    const int gate = gate_col >= 0;
    if (plan_bank(&self->banks[R_BAND], a[3], fn, "band", c, 1) < 0
        || (gate && (plan_bank(&self->banks[R_THETA], a[18], fn, "theta", 1, 1) < 0
                     || plan_bank(&self->banks[R_DELTA], a[19], fn, "delta", 1, 1) < 0))
        || plan_banks_distinct(self->banks, R_NBANK, fn) < 0) {
        ripple_plan_clear(self);
        return -1;
    }
    if (n_det < 1 || n_det > c || c > PICK_STACK) {
        PyErr_Format(PyExc_ValueError, "RipplePlan: n_det must be in 1..%zd (the band's "
                     "channels, at most %d), got %zd", c, PICK_STACK, n_det);
        ripple_plan_clear(self);
        return -1;
    }
    {   /* cols and weights are copied, as pick_rms does */
        Py_buffer cv, wv;
        if (get_vector(a[1], &cv, 1, "cols") < 0) { ripple_plan_clear(self); return -1; }
        if (get_vector(a[2], &wv, 0, "weights") < 0) {
            PyBuffer_Release(&cv);
            ripple_plan_clear(self);
            return -1;
        }
        const Py_ssize_t nc = cv.shape[0], nw = wv.shape[0];
        int bad = nc > PICK_STACK || nw > PICK_STACK || (nw ? (nc != nw + c - 1) : (nc != c));
        self->max_col = gate_col;
        for (Py_ssize_t j = 0; j < nc && !bad; j++) {
            self->cols[j] = (Py_ssize_t)((const long long *)cv.buf)[j];
            bad = self->cols[j] < 0;
            if (self->cols[j] > self->max_col) self->max_col = self->cols[j];
        }
        for (Py_ssize_t j = 0; j < nw && !bad; j++) self->w[j] = ((const double *)wv.buf)[j];
        PyBuffer_Release(&cv);
        PyBuffer_Release(&wv);
        if (bad) {
            PyErr_Format(PyExc_ValueError, "RipplePlan: cols must hold %zd column indices >= 0 "
                         "(at most %d)", nw ? nw + c - 1 : c, PICK_STACK);
            ripple_plan_clear(self);
            return -1;
        }
        self->nc = nc;
        self->nw = nw;
    }
    /* the buffers, each checked once: argument, int64, writable, names */
    static const int arg_of[R_NB] = {0, 4, 5, 7, 8, 9, 10, 11, 12, 14, 20};
    static const char *names[R_NB] = {"times", "work", "runs", "ring", "pos", "count", "excl",
                                      "median", "sd", "carry", "hold"};
    static const int is_int[R_NB] = {0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0};
    static const int writable[R_NB] = {1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1};
    const int nb = gate ? R_NB : R_HOLD;
    Py_ssize_t cap = 0, length = 0, n_times = 0;
    for (int b = 0; b < nb; b++) {
        PyObject *o = a[arg_of[b]];
        const char *shape_err = NULL;
        if (b == R_RING) {
            length = get_ring(o, &self->v[b], c, "RipplePlan: ", "");
            if (length < 0) { ripple_plan_clear(self); return -1; }
            self->have[b] = 1;
            continue;
        }
        Py_ssize_t rows = -1, cols_ = -1;
        if (b >= R_POS && b <= R_CARRY) rows = 1, cols_ = c;
        else if (b == R_HOLD) rows = 1, cols_ = 1;
        else if (b == R_RUNS) cols_ = c;
        if (get_rule_buf(o, &self->v[b], writable[b], is_int[b], rows, cols_, names[b]) < 0) {
            ripple_plan_clear(self);
            return -1;
        }
        self->have[b] = 1;
        const Py_buffer *v = &self->v[b];
        if (b == R_TIMES) {
            n_times = v->len / 8;
            if (v->ndim != 1 || n_times < 1) shape_err = "times must be 1-D with >= 1 value";
        } else if (b == R_WORK) {
            const Py_ssize_t per = 5 * c + 3, len = v->len / 8;
            cap = len / per;
            if (v->ndim != 1 || len % per || cap < 1)
                shape_err = "work must be 1-D with (5 c + 3) cap values, cap >= 1";
        } else if (b == R_RUNS) {
            if (v->ndim != 2 || v->shape[0] < cap) shape_err = "runs must have >= cap rows";
        }
        if (shape_err != NULL) {
            PyErr_Format(PyExc_ValueError, "RipplePlan: %s", shape_err);
            ripple_plan_clear(self);
            return -1;
        }
    }
    /* no two buffers may share memory where one is written */
    for (int i = 0; i < nb; i++)
        for (int j = i + 1; j < nb; j++)
            if ((writable[i] || writable[j]) && overlap(&self->v[i], &self->v[j])) {
                PyErr_Format(PyExc_ValueError, "RipplePlan: %s and %s share memory", names[i],
                             names[j]);
                ripple_plan_clear(self);
                return -1;
            }
    self->c = c; self->cap = cap; self->length = length; self->n_times = n_times;
    self->step = step; self->n_det = n_det; self->gate_col = gate_col;
    self->k_sd = k_sd; self->k_art = k_art;
    self->ready = 1;
    return 0;
}

PyDoc_STRVAR(ripple_run_doc,
"run(samples, first, t, times_index) -> (longest, artefact)\n\n"
"The ripple detector's chunk without a baseline update point, on the bound arguments.\n"
"samples (n, C) float64 volts, n <= cap, with every bound column; first: the absolute\n"
"index of its first sample; t (n,) float64 seconds; times_index: where t[0] goes in the\n"
"time ring. With c = band.n_channels and cap = len(work) / (5 c + 3), work (flat float64)\n"
"holds five (cap, c) blocks -- filtered, envelope, median_out, sd_out, thr -- then three\n"
"(cap, 1) -- gate_filtered, theta_env, delta_env --, each filled in its first n rows;\n"
"runs (>= cap, c) int64. Steps:\n"
"- t goes into the time ring times (L,) at (times_index + i) % L;\n"
"- band.pick_rms(samples, cols, weights, filtered, envelope);\n"
"- baseline_runs on the envelope (first, step, ring .. sd, k_sd, carry as there);\n"
"- artefact = 1 when any of the first n_det columns has envelope > median + k_art * sd;\n"
"- unless there is an artefact (the caller then holds the gate channel through it) or\n"
"  gate_col is -1: theta and delta (1-channel banks) band-pass column gate_col of\n"
"  samples into their moving RMS theta_env and delta_env, and hold (1,) gets the\n"
"  chunk's last gate-channel sample.\n"
"Returns the largest run and the artefact flag.");

static PyObject *
RipplePlan_run(RipplePlan *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *fn = "RipplePlan.run";
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "RipplePlan.run(samples, first, t, times_index) "
                                         "takes 4 arguments");
        return NULL;
    }
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "RipplePlan.__init__ was not called");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "RipplePlan is already running in another "
                                            "thread; use one plan per thread");
        return NULL;
    }
    Py_ssize_t first, tindex;
    if (arg_ssize(args[1], fn, "first", &first) < 0
        || arg_ssize(args[3], fn, "times_index", &tindex) < 0) return NULL;
    if (first < 0 || tindex < 0) {
        PyErr_Format(PyExc_ValueError, "RipplePlan.run: first and times_index must be >= 0, "
                     "got %zd, %zd", first, tindex);
        return NULL;
    }
    Py_buffer sv, tv;
    if (PyObject_GetBuffer(args[0], &sv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "RipplePlan.run: samples must be a C-contiguous "
                                         "float64 array");
        return NULL;
    }
    if (!is_8byte(&sv, 0) || sv.ndim != 2) {
        PyErr_SetString(PyExc_TypeError, "RipplePlan.run: samples must be a 2-D float64 array "
                                         "(n_samples, n_columns)");
        PyBuffer_Release(&sv);
        return NULL;
    }
    const Py_ssize_t n = sv.shape[0], ncol = sv.shape[1], c = self->c;
    if (n > self->cap || self->max_col >= ncol) {
        PyErr_Format(PyExc_ValueError, "RipplePlan.run: samples (%zd, %zd) must have at most "
                     "%zd rows (the plan's work) and column %zd", n, ncol, self->cap,
                     self->max_col);
        PyBuffer_Release(&sv);
        return NULL;
    }
    if (get_rule_buf(args[2], &tv, 0, 0, 1, n, "t") < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    const int gate = self->gate_col >= 0;
    const int nb = gate ? R_NB : R_HOLD;
    /* the outputs are written while samples and t are read */
    for (int b = 0; b < nb; b++) {
        if (b == R_EXCL || b == R_MED || b == R_SD) continue;     /* read only */
        if (overlap(&self->v[b], &sv) || overlap(&self->v[b], &tv)) {
            PyErr_SetString(PyExc_ValueError, "RipplePlan.run: samples and t must not share "
                                              "memory with the plan's buffers");
            PyBuffer_Release(&sv); PyBuffer_Release(&tv);
            return NULL;
        }
    }
    /* the ring positions are copied and checked (Python code moves them too) */
    long long *lp = self->lp;
    memcpy(lp, self->v[R_POS].buf, (size_t)c * sizeof(long long));
    for (Py_ssize_t j = 0; j < c; j++) {
        if (lp[j] < 0 || lp[j] >= self->length) {
            PyErr_Format(PyExc_ValueError, "RipplePlan.run: pos[%zd] = %lld is outside the "
                         "ring (0..%zd)", j, lp[j], self->length - 1);
            PyBuffer_Release(&sv); PyBuffer_Release(&tv);
            return NULL;
        }
    }
    /* every bank is claimed before any is touched, so an error leaves all state as it was */
    if (plan_banks_enter(self->banks, R_NBANK, fn) < 0) {
        PyBuffer_Release(&sv); PyBuffer_Release(&tv);
        return NULL;
    }
    self->busy = 1;
    {   /* the time ring: sample i's timestamp at its absolute index modulo the ring */
        const double *t = (const double *)tv.buf;
        double *times = (double *)self->v[R_TIMES].buf;
        Py_ssize_t pos_t = tindex % self->n_times;
        for (Py_ssize_t i = 0; i < n; i++) {
            times[pos_t] = t[i];
            if (++pos_t == self->n_times) pos_t = 0;
        }
    }
    FilterBank *band = self->banks[R_BAND].bank;
    const double *src = (const double *)sv.buf;
    double *work = (double *)self->v[R_WORK].buf;
    const Py_ssize_t cap = self->cap, blk = cap * c;
    double *filt = work, *env = work + blk, *mo = work + 2 * blk, *so = work + 3 * blk,
           *thr = work + 4 * blk, *gf = work + 5 * blk, *th = gf + cap, *de = gf + 2 * cap;
    pick_filter_rms(band, src, ncol, n, self->cols, self->w, self->nw, filt, env);
    const long long best = baseline_block(
        env, n, c, first, self->step, (double *)self->v[R_RING].buf, self->length, lp,
        (long long *)self->v[R_COUNT].buf, (const double *)self->v[R_EXCL].buf,
        (const double *)self->v[R_MED].buf, (const double *)self->v[R_SD].buf, self->k_sd,
        (long long *)self->v[R_CARRY].buf, mo, so, thr, (long long *)self->v[R_RUNS].buf);
    memcpy(self->v[R_POS].buf, lp, (size_t)c * sizeof(long long));
    int artefact = 0;
    if (best > 0) {
        const double k_art = self->k_art;
        for (Py_ssize_t i = 0; i < n && !artefact; i++)
            for (Py_ssize_t j = 0; j < self->n_det; j++) {
                const Py_ssize_t q = i * c + j;
                if (env[q] > mo[q] + k_art * so[q]) { artefact = 1; break; }
            }
    }
    if (gate && !artefact && n > 0) {
        const Py_ssize_t gc[1] = {self->gate_col};
        pick_filter_rms(self->banks[R_THETA].bank, src, ncol, n, gc, NULL, 0, gf, th);
        pick_filter_rms(self->banks[R_DELTA].bank, src, ncol, n, gc, NULL, 0, gf, de);
        ((double *)self->v[R_HOLD].buf)[0] = src[(n - 1) * ncol + self->gate_col];
    }
    self->busy = 0;
    plan_banks_leave(self->banks, R_NBANK);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&tv);
    return Py_BuildValue("(Li)", best, artefact);
}

static PyObject *
RipplePlan_get_cap(RipplePlan *self, void *Py_UNUSED(c))
{
    return PyLong_FromSsize_t(self->cap);
}

static PyMethodDef RipplePlan_methods[] = {
    {"run", (PyCFunction)(void (*)(void))RipplePlan_run, METH_FASTCALL, ripple_run_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef RipplePlan_getset[] = {
    {"cap", (getter)RipplePlan_get_cap, NULL, "the most samples one run takes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject RipplePlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engramloop.decoders._filters.RipplePlan",
    .tp_basicsize = sizeof(RipplePlan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RipplePlan(times, cols, weights, band, work, runs, step, ring, pos, count, "
              "excl, median, sd, k_sd, carry, n_det, k_art, gate_col, theta, delta, hold): "
              "the ripple detector's fused chunk with its banks and buffers bound and checked "
              "once; run(samples, first, t, times_index) per chunk. theta, delta and hold "
              "are ignored (may be None) when gate_col is -1.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RipplePlan_init,
    .tp_dealloc = (destructor)RipplePlan_dealloc,
    .tp_methods = RipplePlan_methods,
    .tp_getset = RipplePlan_getset,
};

PyDoc_STRVAR(ripple_candidate_doc,
"ripple_candidate(runs, theta_env, delta_env, min_n, gate_k, start) -> int\n\n"
"The first row i >= start where the ripple detector's envelope rule holds on one detection\n"
"channel: runs[i, 0] >= min_n and, unless theta_env is None, the theta gate is open,\n"
"theta_env[i, 0] <= gate_k * delta_env[i, 0] (gate_k = sqrt of the largest theta/delta\n"
"power ratio; NaN closes it); -1 when no row does. runs: (n, c) int64; theta_env,\n"
"delta_env: (n, 1) float64.");

static PyObject *
filters_ripple_candidate(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    static const char *fn = "ripple_candidate";
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "ripple_candidate(runs, theta_env, delta_env, min_n, gate_k, start) "
                        "takes 6 arguments");
        return NULL;
    }
    Py_ssize_t min_n, start;
    double k;
    if (arg_ssize(args[3], fn, "min_n", &min_n) < 0
        || arg_double(args[4], fn, "gate_k", &k) < 0
        || arg_ssize(args[5], fn, "start", &start) < 0) return NULL;
    const int gate = args[1] != Py_None;
    Py_buffer rv, tv, dv;
    if (get_rule_buf(args[0], &rv, 0, 1, -1, -1, "runs") < 0) return NULL;
    const Py_ssize_t n = rv.ndim == 2 ? rv.shape[0] : 1, c = rv.ndim == 2 ? rv.shape[1] : rv.shape[0];
    if (c < 1) {
        PyBuffer_Release(&rv);
        PyErr_SetString(PyExc_ValueError, "ripple_candidate: runs must have at least one column");
        return NULL;
    }
    if (gate) {
        if (get_rule_buf(args[1], &tv, 0, 0, n, 1, "theta_env") < 0) {
            PyBuffer_Release(&rv); return NULL;
        }
        if (get_rule_buf(args[2], &dv, 0, 0, n, 1, "delta_env") < 0) {
            PyBuffer_Release(&rv); PyBuffer_Release(&tv); return NULL;
        }
    }
    const long long *runs = (const long long *)rv.buf;
    const double *th = gate ? (const double *)tv.buf : NULL, *de = gate ? (const double *)dv.buf : NULL;
    Py_ssize_t found = -1;
    for (Py_ssize_t i = start < 0 ? 0 : start; i < n; i++) {
        if (runs[i * c] >= (long long)min_n && (!gate || th[i] <= k * de[i])) { found = i; break; }
    }
    PyBuffer_Release(&rv);
    if (gate) { PyBuffer_Release(&tv); PyBuffer_Release(&dv); }
    return PyLong_FromSsize_t(found);
}

PyDoc_STRVAR(rearm_index_doc,
"rearm_index(t, feature, median, sd, k_sd, after_s, start) -> int\n\n"
"The first row i >= start with t[i] >= after_s whose feature[i, 0] is not >= median[i, 0]\n"
"+ k_sd * sd[i, 0] (a detector re-arms there: refractory over and the envelope back under\n"
"its re-arm level; NaN compares False, so it re-arms), or -1 when no row does.\n"
"t: (n,) float64 seconds; feature, median, sd: (n, c) float64 (column 0 is tested).");

static PyObject *
filters_rearm_index(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "rearm_index(t, feature, median, sd, k_sd, after_s, start) takes 7 arguments");
        return NULL;
    }
    double k, after;
    Py_ssize_t start;
    if (arg_double(args[4], "rearm_index", "k_sd", &k) < 0
        || arg_double(args[5], "rearm_index", "after_s", &after) < 0
        || arg_ssize(args[6], "rearm_index", "start", &start) < 0) return NULL;
    Py_buffer tv, fv, mv, sv;
    if (get_rule_buf(args[1], &fv, 0, 0, -1, -1, "feature") < 0) return NULL;
    Py_ssize_t n = fv.ndim == 2 ? fv.shape[0] : 1, c = fv.ndim == 2 ? fv.shape[1] : fv.shape[0];
    if (c < 1) {
        PyBuffer_Release(&fv);
        PyErr_SetString(PyExc_ValueError, "feature must have at least one column");
        return NULL;
    }
    if (get_rule_buf(args[0], &tv, 0, 0, 1, n, "t") < 0) { PyBuffer_Release(&fv); return NULL; }
    if (get_rule_buf(args[2], &mv, 0, 0, n, c, "median") < 0) {
        PyBuffer_Release(&fv); PyBuffer_Release(&tv); return NULL;
    }
    if (get_rule_buf(args[3], &sv, 0, 0, n, c, "sd") < 0) {
        PyBuffer_Release(&fv); PyBuffer_Release(&tv); PyBuffer_Release(&mv); return NULL;
    }
    Py_ssize_t found = -1;
    const double *t = (const double *)tv.buf, *f = (const double *)fv.buf,
                 *m = (const double *)mv.buf, *sd = (const double *)sv.buf;
    for (Py_ssize_t i = start < 0 ? 0 : start; i < n; i++) {
        if (!(t[i] >= after)) continue;
        const Py_ssize_t q = i * c;
        if (!(f[q] >= m[q] + k * sd[q])) { found = i; break; }
    }
    PyBuffer_Release(&fv); PyBuffer_Release(&tv); PyBuffer_Release(&mv); PyBuffer_Release(&sv);
    return PyLong_FromSsize_t(found);
}

PyMethodDef ripple_functions[] = {
    {"ripple_candidate", (PyCFunction)(void (*)(void))filters_ripple_candidate, METH_FASTCALL,
     ripple_candidate_doc},
    {"rearm_index", (PyCFunction)(void (*)(void))filters_rearm_index, METH_FASTCALL,
     rearm_index_doc},
    {NULL, NULL, 0, NULL},
};
