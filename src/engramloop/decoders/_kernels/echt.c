/*
 * engramloop C kernels, echt.c. The ECHT phase estimator's kernel: EchtPlan, with its
 * anti-alias bank and buffers bound once; push (anti-alias, decimate and ring the newest
 * samples of one channel) and estimate (phase, frequency, amplitude and confidence from
 * the ring).
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

/* The plan's buffers (phase_rad and gain only with the filter compensation). */
enum { E_STATE, E_RING, E_KERNELS, E_PHASE, E_GAIN, E_NB };

typedef struct {
    PyObject_HEAD
    PlanBank aa;                /* the anti-alias bank, or none */
    Py_buffer v[E_NB];
    int have[E_NB];
    Py_ssize_t col, q, N, lag, G;
    double fs, lo, hi;
    int ready, busy;
} EchtPlan;

static void
echt_plan_clear(EchtPlan *self)
{
    for (int b = 0; b < E_NB; b++) {
        if (self->have[b]) PyBuffer_Release(&self->v[b]);
        self->have[b] = 0;
    }
    plan_bank_clear(&self->aa);
    self->ready = 0;
}

static void
EchtPlan_dealloc(EchtPlan *self)
{
    echt_plan_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
EchtPlan_init(EchtPlan *self, PyObject *args, PyObject *kwds)
{
    static const char *fn = "EchtPlan";
    if (kwds != NULL && PyDict_Size(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "EchtPlan takes no keyword arguments");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "EchtPlan is running in another thread");
        return -1;
    }
    echt_plan_clear(self);
    if (PyTuple_GET_SIZE(args) != 12) {
        PyErr_SetString(PyExc_TypeError,
                        "EchtPlan(col, aa, q, state, ring, kernels, rate_hz, lag, lo_hz, "
                        "hi_hz, phase_rad, gain) takes 12 arguments");
        return -1;
    }
    PyObject *const *a = &PyTuple_GET_ITEM(args, 0);
    Py_ssize_t col, q, lag;
    double fs, lo, hi;
    if (arg_ssize(a[0], fn, "col", &col) < 0 || arg_ssize(a[2], fn, "q", &q) < 0
        || arg_double(a[6], fn, "rate_hz", &fs) < 0 || arg_ssize(a[7], fn, "lag", &lag) < 0
        || arg_double(a[8], fn, "lo_hz", &lo) < 0 || arg_double(a[9], fn, "hi_hz", &hi) < 0)
        return -1;
    if (col < 0 || q < 1 || !(fs > 0.0) || lag < 1 || !(isfinite(lo) && isfinite(hi) && lo < hi)) {
        PyErr_Format(PyExc_ValueError, "EchtPlan: col must be >= 0, q >= 1, rate_hz > 0, "
                     "lag >= 1 and lo_hz < hi_hz, both finite; got col %zd, q %zd, rate_hz %R, "
                     "lag %zd, band %R..%R Hz", col, q, a[6], lag, a[8], a[9]);
        return -1;
    }
    if (a[1] != Py_None && plan_bank(&self->aa, a[1], fn, "aa", 1, 0) < 0) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "EchtPlan: aa must be a FilterBank or None, got "
                         "%.100s", Py_TYPE(a[1])->tp_name);
        }
        return -1;
    }
    if (get_rule_buf(a[3], &self->v[E_STATE], 1, 1, 1, 3, "state") < 0) {
        echt_plan_clear(self);
        return -1;
    }
    self->have[E_STATE] = 1;
    if (get_rule_buf(a[4], &self->v[E_RING], 1, 0, -1, -1, "ring") < 0) {
        echt_plan_clear(self);
        return -1;
    }
    self->have[E_RING] = 1;
    const Py_ssize_t len = self->v[E_RING].len / 8, N = len / 2;
    if (self->v[E_RING].ndim != 1 || len < 2 || len % 2) {
        PyErr_Format(PyExc_ValueError, "EchtPlan: ring must be 1-D and hold 2N float64 values, "
                     "got %zd", len);
        echt_plan_clear(self);
        return -1;
    }
    if (get_rule_buf(a[5], &self->v[E_KERNELS], 0, 0, 5, N, "kernels") < 0) {
        echt_plan_clear(self);
        return -1;
    }
    self->have[E_KERNELS] = 1;
    Py_ssize_t G = 0;
    if (a[10] != Py_None || a[11] != Py_None) {
        if (get_rule_buf(a[10], &self->v[E_PHASE], 0, 0, 1, -1, "phase_rad") < 0) {
            echt_plan_clear(self);
            return -1;
        }
        self->have[E_PHASE] = 1;
        G = self->v[E_PHASE].shape[0];
        if (get_rule_buf(a[11], &self->v[E_GAIN], 0, 0, 1, G, "gain") < 0) {
            echt_plan_clear(self);
            return -1;
        }
        self->have[E_GAIN] = 1;
        if (G < 2) {
            PyErr_SetString(PyExc_ValueError, "EchtPlan: phase_rad and gain need >= 2 grid "
                                              "points");
            echt_plan_clear(self);
            return -1;
        }
    }
    static const char *names[E_NB] = {"state", "ring", "kernels", "phase_rad", "gain"};
    for (int i = 0; i < 2; i++)            /* state and ring are written */
        for (int j = i + 1; j < E_NB; j++)
            if (self->have[j] && overlap(&self->v[i], &self->v[j])) {
                PyErr_Format(PyExc_ValueError, "EchtPlan: %s and %s share memory", names[i],
                             names[j]);
                echt_plan_clear(self);
                return -1;
            }
    self->col = col; self->q = q; self->N = N; self->lag = lag; self->G = G;
    self->fs = fs; self->lo = lo; self->hi = hi;
    self->ready = 1;
    return 0;
}

/* The bound state [seen, w, written] if it is consistent, else NULL with a ValueError
 * (Python code could write into it). */
static long long *
echt_state(EchtPlan *self, const char *fn)
{
    long long *st = (long long *)self->v[E_STATE].buf;
    if (st[0] < 0 || st[1] < 0 || st[1] >= self->N) {
        PyErr_Format(PyExc_ValueError, "%s: state must be [seen >= 0, 0 <= w < %zd, written], "
                     "got [%lld, %lld, %lld]", fn, self->N, st[0], st[1], st[2]);
        return NULL;
    }
    return st;
}

PyDoc_STRVAR(echt_push_doc,
"push(samples) -> int\n\n"
"The single-channel ECHT buffer's per-chunk work: column `col` of samples (n, C) float64,\n"
"through the anti-alias bank `aa` (a 1-channel FilterBank, or None), is decimated by q --\n"
"the samples whose absolute index (state[0] + row) is q - 1 modulo q are kept, so the\n"
"result does not depend on chunking -- and each kept value is written into the doubled\n"
"ring (2N float64: slot w and w + N, so ring[w:w + N] is always the window in time order).\n"
"state (3,) int64 = [samples seen, w, values written] is updated. Returns the row of the\n"
"last kept sample, or -1 when the chunk kept none.");

static PyObject *
EchtPlan_push(EchtPlan *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *fn = "EchtPlan.push";
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "EchtPlan.push(samples) takes 1 argument");
        return NULL;
    }
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "EchtPlan.__init__ was not called");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "EchtPlan is already running in another thread; "
                                            "use one plan per thread");
        return NULL;
    }
    Py_buffer sv;
    if (get_rule_buf(args[0], &sv, 0, 0, -1, -1, "samples") < 0) return NULL;
    if (sv.ndim != 2 || self->col >= sv.shape[1]) {
        PyErr_Format(PyExc_ValueError, "EchtPlan.push: samples must be 2-D (n, C) with col %zd "
                     "one of its columns", self->col);
        PyBuffer_Release(&sv);
        return NULL;
    }
    if (overlap(&sv, &self->v[E_STATE]) || overlap(&sv, &self->v[E_RING])) {
        PyErr_SetString(PyExc_ValueError, "EchtPlan.push: samples must not share memory with "
                                          "the plan's state or ring");
        PyBuffer_Release(&sv);
        return NULL;
    }
    long long *st = echt_state(self, fn);
    if (st == NULL || plan_banks_enter(&self->aa, 1, fn) < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    self->busy = 1;
    FilterBank *aa = self->aa.bank;
    const Py_ssize_t n = sv.shape[0], ncol = sv.shape[1], col = self->col, q = self->q,
                     N = self->N;
    const double *x = (const double *)sv.buf;
    double *ring = (double *)self->v[E_RING].buf;
    long long seen = st[0], w = st[1], written = st[2];
    Py_ssize_t last = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = x[i * ncol + col];
        if (aa != NULL) sos_row(aa->coef, aa->z, aa->n_sections, 1, &v);
        if ((seen + i) % q == q - 1) {
            ring[w] = v;
            ring[w + N] = v;
            if (++w == N) w = 0;
            written++;
            last = i;
        }
    }
    st[0] = seen + n; st[1] = w; st[2] = written;
    self->busy = 0;
    plan_banks_leave(&self->aa, 1);
    PyBuffer_Release(&sv);
    return PyLong_FromSsize_t(last);
}

PyDoc_STRVAR(echt_estimate_doc,
"estimate() -> (phase_deg, frequency_hz, amplitude, confidence)\n\n"
"The single-channel ECHT estimate at the newest sample, in one pass over the window\n"
"ring[w:w + N] (w = state[1], as push writes it). kernels (5, N) float64: the endpoint\n"
"kernel's real and imaginary parts (a = analytic value now), the same kernel `lag`\n"
"samples earlier (b), and 1/N (the window mean). Frequency = angle(a / b) * rate_hz /\n"
"(2 pi lag), clipped to [lo_hz, hi_hz]. Unless phase_rad is None, the causal band-pass's\n"
"phase (radians) and gain on a uniform grid from lo_hz to hi_hz (phase_rad, gain: (G,)\n"
"float64, G >= 2) are interpolated at that frequency and removed. Phase in degrees,\n"
"cosine phase, wrapped to (-180, 180]; confidence = min(1, amplitude / (sqrt(2) * SD of\n"
"the window)), 0 for a flat window. A NaN or infinite sample in the window gives\n"
"(nan, nan, nan, 0): no estimate until it has left.");

static PyObject *
EchtPlan_estimate(EchtPlan *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "EchtPlan.__init__ was not called");
        return NULL;
    }
    const long long *st = echt_state(self, "EchtPlan.estimate");
    if (st == NULL) return NULL;
    const Py_ssize_t N = self->N, lag = self->lag, G = self->G;
    const double fs = self->fs, lo = self->lo, hi = self->hi;
    const double *x = (const double *)self->v[E_RING].buf + st[1];
    const double *k = (const double *)self->v[E_KERNELS].buf;
    const double *k1 = k + N, *k2 = k + 2 * N, *k3 = k + 3 * N, *k4 = k + 4 * N;
    double a_re = 0.0, a_im = 0.0, b_re = 0.0, b_im = 0.0, m = 0.0, ss = 0.0;
    for (Py_ssize_t i = 0; i < N; i++) {
        const double v = x[i];
        a_re += k[i] * v;
        a_im += k1[i] * v;
        b_re += k2[i] * v;
        b_im += k3[i] * v;
        m += k4[i] * v;
        ss += v * v;
    }
    const double rad_to_deg = 180.0 / Py_MATH_PI;
    double phase = atan2(a_im, a_re) * rad_to_deg;
    double amp = hypot(a_re, a_im);
    const double dphi = atan2(a_im * b_re - a_re * b_im, a_re * b_re + a_im * b_im);
    double f = dphi * fs / (2.0 * Py_MATH_PI * (double)lag);
    f = f < lo ? lo : (f > hi ? hi : f);
    if (isnan(f)) {
        /* a NaN (or infinite) sample in the window: no estimate until it has left */
        return Py_BuildValue("(dddd)", NAN, NAN, NAN, 0.0);
    }
    if (G > 0) {
        const double *hp = (const double *)self->v[E_PHASE].buf,
                     *hg = (const double *)self->v[E_GAIN].buf;
        const double pos = (f - lo) / (hi - lo) * (double)(G - 1);
        Py_ssize_t i = (Py_ssize_t)pos;
        if (i > G - 2) i = G - 2;
        const double fr = pos - (double)i;
        phase -= (hp[i] + fr * (hp[i + 1] - hp[i])) * rad_to_deg;
        amp /= hg[i] + fr * (hg[i + 1] - hg[i]);
    }
    /* wrap to (-180, 180] */
    phase = fmod(phase + 180.0, 360.0);
    phase = phase > 0.0 ? phase - 180.0 : phase + 180.0;
    const double var = ss / (double)N - m * m;
    const double sd = var > 0.0 ? sqrt(var) : 0.0;
    double conf = 0.0;
    if (sd > 0.0) {
        conf = amp / (sqrt(2.0) * sd);
        if (conf > 1.0) conf = 1.0;
    }
    return Py_BuildValue("(dddd)", phase, f, amp, conf);
}

static PyObject *
EchtPlan_get_n(EchtPlan *self, void *Py_UNUSED(c))
{
    return PyLong_FromSsize_t(self->N);
}

static PyMethodDef EchtPlan_methods[] = {
    {"push", (PyCFunction)(void (*)(void))EchtPlan_push, METH_FASTCALL, echt_push_doc},
    {"estimate", (PyCFunction)EchtPlan_estimate, METH_NOARGS, echt_estimate_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef EchtPlan_getset[] = {
    {"n", (getter)EchtPlan_get_n, NULL, "the window's length N (decimated samples)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject EchtPlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engramloop.decoders._filters.EchtPlan",
    .tp_basicsize = sizeof(EchtPlan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "EchtPlan(col, aa, q, state, ring, kernels, rate_hz, lag, lo_hz, hi_hz, "
              "phase_rad, gain): the single-channel ECHT estimator's buffer and estimate with "
              "its bank and buffers bound and checked once; push(samples) per chunk, "
              "estimate() at the newest kept sample.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)EchtPlan_init,
    .tp_dealloc = (destructor)EchtPlan_dealloc,
    .tp_methods = EchtPlan_methods,
    .tp_getset = EchtPlan_getset,
};
