/*
 * engramloop C kernels, filterbank.c. The FilterBank type: a cascade of second-order
 * sections (transposed direct form II) applied to time-major float64 blocks
 * x[n_samples][n_channels], with per-channel state kept between calls, and optionally a
 * moving root-mean-square envelope of the filtered signal over a fixed window of samples
 * (process, process_rms, pick_rms).
 *
 * Everything is validated once in __init__; the per-chunk calls only check the buffers
 * they receive and run the loop, with the GIL released for large blocks
 * (NOGIL_MIN_VALUES). The detectors' plans (ripple.c, spindle.c, so.c, echt.c) run the
 * same loops (sos_block, rms_block, pick_filter_rms) on the banks they bind; __init__ may
 * be called again, but not while a kernel is running on the bank (busy).
 *
 * The running sum of squares is kept exactly enough for hours of data: it is updated
 * incrementally (add newest, subtract oldest) and re-summed from the ring buffer every
 * time the ring wraps, so rounding error never accumulates past one window.
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

void
sos_block(FilterBank *self, const double *x, double *out, Py_ssize_t n_samples)
{
    const Py_ssize_t n_ch = self->n_channels;
    for (Py_ssize_t t = 0; t < n_samples; t++) {
        double *row = out + t * n_ch;
        const double *src = x + t * n_ch;
        if (src != row) memcpy(row, src, (size_t)n_ch * sizeof(double));
        sos_row(self->coef, self->z, self->n_sections, n_ch, row);
    }
}

/* Moving RMS of `sig` (already filtered) into env, updating ring and sums. */
void
rms_block(FilterBank *self, const double *sig, double *env, Py_ssize_t n_samples)
{
    /* the ring's position and fill in locals for the block (written back at the end): as
     * fields of *self, which the stores below might alias for all the compiler knows,
     * they were reloaded and stored at every sample */
    const Py_ssize_t n_ch = self->n_channels, w = self->window;
    double *restrict sums = self->sumsq;
    double *restrict ring = self->ring;
    Py_ssize_t pos = self->pos, count = self->count;
    for (Py_ssize_t t = 0; t < n_samples; t++) {
        const double *restrict s = sig + t * n_ch;
        double *restrict slot = ring + pos * n_ch;
        double *restrict e = env + t * n_ch;
        for (Py_ssize_t c = 0; c < n_ch; c++) {
            const double sq = s[c] * s[c];
            sums[c] += sq - slot[c];
            slot[c] = sq;
        }
        if (count < w) count++;
        if (++pos == w) {
            /* The ring wrapped: re-sum it so rounding error cannot accumulate. */
            pos = 0;
            for (Py_ssize_t c = 0; c < n_ch; c++) sums[c] = 0.0;
            for (Py_ssize_t k = 0; k < w; k++) {
                const double *restrict q = ring + k * n_ch;
                for (Py_ssize_t c = 0; c < n_ch; c++) sums[c] += q[c];
            }
        }
        const double inv = 1.0 / (double)count;
        for (Py_ssize_t c = 0; c < n_ch; c++) {
            const double m = sums[c] * inv;
            /* m can dip below 0 by one ulp: 0 then (sqrt(0.0) is 0.0, as a NaN sum
             * gives too); a select, then the root, so the loop is vectorised */
            e[c] = sqrt(m > 0.0 ? m : 0.0);
        }
    }
    self->pos = pos;
    self->count = count;
}

/* ---------------------------------------------------------------- type */

static void
FilterBank_dealloc(FilterBank *self)
{
    PyMem_Free(self->coef);
    PyMem_Free(self->z);
    PyMem_Free(self->ring);
    PyMem_Free(self->sumsq);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
FilterBank_init(FilterBank *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sos", "n_channels", "window", NULL};
    PyObject *sos_obj;
    Py_ssize_t n_ch, window = 0;
    if (self->busy) {   /* a kernel (another thread, GIL released) is using its arrays */
        PyErr_SetString(PyExc_RuntimeError,
                        "FilterBank is running in another thread; it cannot be re-initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|n", kwlist, &sos_obj, &n_ch, &window))
        return -1;
    if (n_ch < 1) {
        PyErr_Format(PyExc_ValueError, "n_channels must be >= 1, got %zd", n_ch);
        return -1;
    }
    if (window < 0) {
        PyErr_Format(PyExc_ValueError, "window must be >= 0 samples, got %zd", window);
        return -1;
    }
    Py_buffer v;
    if (PyObject_GetBuffer(sos_obj, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError,
                        "sos must be a C-contiguous float64 array of shape (n_sections, 6)");
        return -1;
    }
    if (!is_8byte(&v, 0) || v.ndim != 2 || v.shape[1] != 6) {
        PyErr_SetString(PyExc_ValueError,
                        "sos must be a float64 array of shape (n_sections, 6)");
        PyBuffer_Release(&v);
        return -1;
    }
    const Py_ssize_t n_sec = v.shape[0];
    const double *sos = (const double *)v.buf;
    double *coef = PyMem_Calloc(n_sec ? (size_t)n_sec * 5 : 1, sizeof(double));
    double *z = PyMem_Calloc(n_sec ? (size_t)(n_sec * 2 * n_ch) : 1, sizeof(double));
    double *ring = window ? PyMem_Calloc((size_t)(window * n_ch), sizeof(double)) : NULL;
    double *sums = window ? PyMem_Calloc((size_t)n_ch, sizeof(double)) : NULL;
    if (!coef || !z || (window && (!ring || !sums))) {
        PyMem_Free(coef); PyMem_Free(z); PyMem_Free(ring); PyMem_Free(sums);
        PyBuffer_Release(&v);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t s = 0; s < n_sec; s++) {
        const double *r = sos + 6 * s;
        int finite = 1;
        for (int k = 0; k < 6; k++) finite &= isfinite(r[k]) ? 1 : 0;
        if (!finite || r[3] == 0.0) {
            PyErr_Format(PyExc_ValueError,
                         "sos[%zd] must be finite with a nonzero a0 (column 3)", s);
            PyMem_Free(coef); PyMem_Free(z); PyMem_Free(ring); PyMem_Free(sums);
            PyBuffer_Release(&v);
            return -1;
        }
        const double a0 = r[3];
        coef[5 * s] = r[0] / a0;
        coef[5 * s + 1] = r[1] / a0;
        coef[5 * s + 2] = r[2] / a0;
        coef[5 * s + 3] = r[4] / a0;
        coef[5 * s + 4] = r[5] / a0;
    }
    PyBuffer_Release(&v);
    /* __init__ may be called twice; free what a previous call allocated. */
    PyMem_Free(self->coef); PyMem_Free(self->z); PyMem_Free(self->ring); PyMem_Free(self->sumsq);
    self->coef = coef; self->z = z; self->ring = ring; self->sumsq = sums;
    self->n_sections = n_sec; self->n_channels = n_ch; self->window = window;
    self->pos = 0; self->count = 0; self->busy = 0;
    return 0;
}

int
check_ready(FilterBank *self)
{
    if (self->coef == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FilterBank.__init__ was not called");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(process_doc,
"process(x, out) -> out\n\n"
"Filter x (n_samples, n_channels) float64 C-contiguous into out (same shape, writable;\n"
"out may be x). State carries over to the next call.");

static PyObject *
FilterBank_process(FilterBank *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "process(x, out) takes exactly 2 arguments");
        return NULL;
    }
    if (check_ready(self) < 0) return NULL;
    Py_buffer xv, ov;
    if (get_block(args[0], &xv, 0, self->n_channels, "x") < 0) return NULL;
    if (get_block(args[1], &ov, 1, self->n_channels, "out") < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    if (ov.shape[0] != xv.shape[0]) {
        PyErr_Format(PyExc_ValueError, "out has %zd samples but x has %zd", ov.shape[0],
                     xv.shape[0]);
        PyBuffer_Release(&xv); PyBuffer_Release(&ov);
        return NULL;
    }
    if (enter(self) < 0) {
        PyBuffer_Release(&xv); PyBuffer_Release(&ov);
        return NULL;
    }
    WORK_BEGIN(xv.shape[0] * self->n_channels)
    sos_block(self, (const double *)xv.buf, (double *)ov.buf, xv.shape[0]);
    WORK_END
    self->busy = 0;
    PyBuffer_Release(&xv);
    PyBuffer_Release(&ov);
    PyObject *out = args[1];
    Py_INCREF(out);
    return out;
}

PyDoc_STRVAR(process_rms_doc,
"process_rms(x, filtered, envelope) -> envelope\n\n"
"Filter x into `filtered` (may be x) and write the moving RMS of the filtered signal over\n"
"the last `window` samples into `envelope` (fewer samples at the start). One call, one\n"
"pass. All three arrays are (n_samples, n_channels) float64 C-contiguous.");

static PyObject *
FilterBank_process_rms(FilterBank *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "process_rms(x, filtered, envelope) takes exactly 3 arguments");
        return NULL;
    }
    if (check_ready(self) < 0) return NULL;
    if (self->window == 0) {
        PyErr_SetString(PyExc_ValueError, "process_rms needs a bank built with window >= 1");
        return NULL;
    }
    Py_buffer xv, fv, ev;
    if (get_block(args[0], &xv, 0, self->n_channels, "x") < 0) return NULL;
    if (get_block(args[1], &fv, 1, self->n_channels, "filtered") < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    if (get_block(args[2], &ev, 1, self->n_channels, "envelope") < 0) {
        PyBuffer_Release(&xv); PyBuffer_Release(&fv);
        return NULL;
    }
    if (fv.shape[0] != xv.shape[0] || ev.shape[0] != xv.shape[0] || ev.buf == fv.buf) {
        PyErr_Format(PyExc_ValueError,
                     "filtered and envelope must be distinct arrays with %zd samples like x",
                     xv.shape[0]);
        PyBuffer_Release(&xv); PyBuffer_Release(&fv); PyBuffer_Release(&ev);
        return NULL;
    }
    if (enter(self) < 0) {
        PyBuffer_Release(&xv); PyBuffer_Release(&fv); PyBuffer_Release(&ev);
        return NULL;
    }
    WORK_BEGIN(xv.shape[0] * self->n_channels)
    sos_block(self, (const double *)xv.buf, (double *)fv.buf, xv.shape[0]);
    rms_block(self, (const double *)fv.buf, (double *)ev.buf, xv.shape[0]);
    WORK_END
    self->busy = 0;
    PyBuffer_Release(&xv); PyBuffer_Release(&fv); PyBuffer_Release(&ev);
    PyObject *out = args[2];
    Py_INCREF(out);
    return out;
}

PyDoc_STRVAR(pick_rms_doc,
"pick_rms(samples, cols, weights, filtered, envelope) -> envelope\n\n"
"process_rms on columns picked out of a chunk, in one call: samples (n, C) float64;\n"
"cols int64, weights float64 (1-D). Without weights (len 0), column j of the bank's input\n"
"is samples[:, cols[j]] (len(cols) == n_channels). With nw weights, column 0 is\n"
"sum_j weights[j] * samples[:, cols[j]] over j < nw, and column 1 + r is\n"
"samples[:, cols[nw + r]] (len(cols) == nw + n_channels - 1). The picked input is\n"
"filtered in place in `filtered`, its moving RMS goes to `envelope` (both (n, n_channels)).");

int
get_vector(PyObject *obj, Py_buffer *view, int is_int, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous %s vector", name,
                     is_int ? "int64" : "float64");
        return -1;
    }
    if (!is_8byte(view, is_int) || view->ndim != 1) {
        PyErr_Format(PyExc_TypeError, "%s must be a 1-D %s array", name,
                     is_int ? "int64" : "float64");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The picked (or pooled) columns of src (n, ncol) into f (n, k) -- see pick_rms_doc --,
 * filtered in place, and their moving RMS into e. */
void
pick_filter_rms(FilterBank *self, const double *src, Py_ssize_t ncol, Py_ssize_t n,
                const Py_ssize_t *cols, const double *w, Py_ssize_t nw, double *f, double *e)
{
    const Py_ssize_t k = self->n_channels;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *row = src + i * ncol;
        double *out = f + i * k;
        if (nw) {
            double acc = 0.0;
            for (Py_ssize_t j = 0; j < nw; j++) acc += w[j] * row[cols[j]];
            out[0] = acc;
            for (Py_ssize_t r = 1; r < k; r++) out[r] = row[cols[nw + r - 1]];
        } else {
            for (Py_ssize_t j = 0; j < k; j++) out[j] = row[cols[j]];
        }
    }
    sos_block(self, f, f, n);
    rms_block(self, f, e, n);
}



static PyObject *
FilterBank_pick_rms(FilterBank *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "pick_rms(samples, cols, weights, filtered, envelope) takes 5 arguments");
        return NULL;
    }
    if (check_ready(self) < 0) return NULL;
    if (self->window == 0) {
        PyErr_SetString(PyExc_ValueError, "pick_rms needs a bank built with window >= 1");
        return NULL;
    }
    const Py_ssize_t k = self->n_channels;
    /* cols and weights are copied while the GIL is held and only the copies are used: the
     * arrays could change under another thread once the GIL is released */
    Py_ssize_t cols_stack[PICK_STACK], *cols = cols_stack;
    double w_stack[PICK_STACK], *w = w_stack;
    Py_ssize_t nc, nw;
    {
        Py_buffer cv, wv;
        if (get_vector(args[1], &cv, 1, "cols") < 0) return NULL;
        if (get_vector(args[2], &wv, 0, "weights") < 0) { PyBuffer_Release(&cv); return NULL; }
        nc = cv.shape[0];
        nw = wv.shape[0];
        if (nc > PICK_STACK) cols = PyMem_Malloc((size_t)nc * sizeof(Py_ssize_t));
        if (nw > PICK_STACK) w = PyMem_Malloc((size_t)nw * sizeof(double));
        if (cols == NULL || w == NULL) {
            if (cols != cols_stack) PyMem_Free(cols);
            if (w != w_stack) PyMem_Free(w);
            PyBuffer_Release(&cv); PyBuffer_Release(&wv);
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t j = 0; j < nc; j++) cols[j] = (Py_ssize_t)((const long long *)cv.buf)[j];
        for (Py_ssize_t j = 0; j < nw; j++) w[j] = ((const double *)wv.buf)[j];
        PyBuffer_Release(&cv); PyBuffer_Release(&wv);
    }
    PyObject *result = NULL;
    Py_buffer sv, fv, ev;
    int have_s = 0, have_f = 0, have_e = 0;
    if (PyObject_GetBuffer(args[0], &sv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "samples must be a C-contiguous float64 array");
        goto done;
    }
    have_s = 1;
    if (!is_8byte(&sv, 0) || sv.ndim != 2) {
        PyErr_SetString(PyExc_TypeError, "samples must be a 2-D float64 array (n, n_columns)");
        goto done;
    }
    const Py_ssize_t n = sv.shape[0], ncol = sv.shape[1];
    int bad = nw ? (nc != nw + k - 1) : (nc != k);
    for (Py_ssize_t j = 0; j < nc && !bad; j++) bad = cols[j] < 0 || cols[j] >= ncol;
    if (bad) {
        PyErr_Format(PyExc_ValueError, "cols must hold %zd column indices below %zd",
                     nw ? nw + k - 1 : k, ncol);
        goto done;
    }
    if (get_block(args[3], &fv, 1, k, "filtered") < 0) goto done;
    have_f = 1;
    if (get_block(args[4], &ev, 1, k, "envelope") < 0) goto done;
    have_e = 1;
    if (fv.shape[0] != n || ev.shape[0] != n || ev.buf == fv.buf) {
        PyErr_Format(PyExc_ValueError,
                     "filtered and envelope must be distinct arrays with %zd samples", n);
        goto done;
    }
    {   /* the picked columns are written into `filtered` while `samples` is read: neither
         * output may share memory with the input */
        const char *s0 = (const char *)sv.buf, *s1 = s0 + sv.len;
        const char *f0 = (const char *)fv.buf, *f1 = f0 + fv.len;
        const char *e0 = (const char *)ev.buf, *e1 = e0 + ev.len;
        if ((f0 < s1 && s0 < f1) || (e0 < s1 && s0 < e1)) {
            PyErr_SetString(PyExc_ValueError,
                            "filtered and envelope must not share memory with samples");
            goto done;
        }
    }
    if (enter(self) < 0) goto done;
    WORK_BEGIN(n * k)
    pick_filter_rms(self, (const double *)sv.buf, ncol, n, cols, w, nw, (double *)fv.buf,
                    (double *)ev.buf);
    WORK_END
    self->busy = 0;
    result = args[4];
    Py_INCREF(result);
done:
    if (have_s) PyBuffer_Release(&sv);
    if (have_f) PyBuffer_Release(&fv);
    if (have_e) PyBuffer_Release(&ev);
    if (cols != cols_stack) PyMem_Free(cols);
    if (w != w_stack) PyMem_Free(w);
    return result;
}

static PyObject *
copy_state(FilterBank *self, PyObject *arg, int to_bank)
{
    if (check_ready(self) < 0) return NULL;
    Py_buffer v;
    const Py_ssize_t n = self->n_sections * 2 * self->n_channels;
    if (get_flat(arg, &v, !to_bank, n, "state") < 0) return NULL;
    if (n) {
        if (to_bank) {
            const double *src = (const double *)v.buf;
            for (Py_ssize_t i = 0; i < n; i++) {
                if (!isfinite(src[i])) {
                    PyBuffer_Release(&v);
                    PyErr_SetString(PyExc_ValueError, "state must be finite");
                    return NULL;
                }
            }
            memcpy(self->z, v.buf, (size_t)n * sizeof(double));
        } else {
            memcpy(v.buf, self->z, (size_t)n * sizeof(double));
        }
    }
    PyBuffer_Release(&v);
    Py_RETURN_NONE;
}

static PyObject *
FilterBank_get_state(FilterBank *self, PyObject *arg)
{
    return copy_state(self, arg, 0);
}

static PyObject *
FilterBank_set_state(FilterBank *self, PyObject *arg)
{
    return copy_state(self, arg, 1);
}

static PyObject *
FilterBank_reset_envelope(FilterBank *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0) return NULL;
    if (self->window) {
        memset(self->ring, 0, (size_t)(self->window * self->n_channels) * sizeof(double));
        memset(self->sumsq, 0, (size_t)self->n_channels * sizeof(double));
    }
    self->pos = 0;
    self->count = 0;
    Py_RETURN_NONE;
}

static PyObject *
FilterBank_get_n_sections(FilterBank *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->n_sections); }
static PyObject *
FilterBank_get_n_channels(FilterBank *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->n_channels); }
static PyObject *
FilterBank_get_window(FilterBank *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->window); }

static PyMethodDef FilterBank_methods[] = {
    {"process", (PyCFunction)(void (*)(void))FilterBank_process, METH_FASTCALL, process_doc},
    {"process_rms", (PyCFunction)(void (*)(void))FilterBank_process_rms, METH_FASTCALL, process_rms_doc},
    {"pick_rms", (PyCFunction)(void (*)(void))FilterBank_pick_rms, METH_FASTCALL, pick_rms_doc},
    {"get_state", (PyCFunction)FilterBank_get_state, METH_O,
     "get_state(buf): copy the filter state (n_sections*2*n_channels float64) into buf"},
    {"set_state", (PyCFunction)FilterBank_set_state, METH_O,
     "set_state(buf): load the filter state (n_sections*2*n_channels float64) from buf"},
    {"reset_envelope", (PyCFunction)FilterBank_reset_envelope, METH_NOARGS,
     "reset_envelope(): forget the moving-RMS window"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef FilterBank_getset[] = {
    {"n_sections", (getter)FilterBank_get_n_sections, NULL, "number of second-order sections", NULL},
    {"n_channels", (getter)FilterBank_get_n_channels, NULL, "number of channels", NULL},
    {"window", (getter)FilterBank_get_window, NULL, "moving-RMS window in samples (0: none)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject FilterBankType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engramloop.decoders._filters.FilterBank",
    .tp_basicsize = sizeof(FilterBank),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "FilterBank(sos, n_channels, window=0): SOS cascade over time-major float64 "
              "blocks with per-channel state, plus an optional moving RMS envelope.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FilterBank_init,
    .tp_dealloc = (destructor)FilterBank_dealloc,
    .tp_methods = FilterBank_methods,
    .tp_getset = FilterBank_getset,
};
