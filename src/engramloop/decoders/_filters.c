/*
 * engramloop C filter bank.
 *
 * One type, FilterBank: a cascade of second-order sections (transposed direct form II)
 * applied to time-major float64 blocks x[n_samples][n_channels], with per-channel state
 * kept between calls, and optionally a moving root-mean-square envelope of the filtered
 * signal over a fixed window of samples.
 *
 * Everything is validated once in __init__; the per-chunk calls only check the buffers
 * they receive and run the loop, with the GIL released for large blocks (NOGIL_MIN_VALUES).
 * No NumPy C API: the buffer protocol is enough, so one binary serves NumPy 1 and 2.
 *
 * The running sum of squares is kept exactly enough for hours of data: it is updated
 * incrementally (add newest, subtract oldest) and re-summed from the ring buffer every
 * time the ring wraps, so rounding error never accumulates past one window.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    Py_ssize_t n_sections;
    Py_ssize_t n_channels;
    double *coef;  /* n_sections x 5: b0 b1 b2 a1 a2 (a0 normalised to 1) */
    double *z;     /* n_sections x 2 x n_channels: z0 then z1, channels contiguous */
    /* moving RMS envelope (window == 0: disabled) */
    Py_ssize_t window;
    Py_ssize_t pos;     /* next write row in the ring */
    Py_ssize_t count;   /* samples seen, saturating at window */
    double *ring;       /* window x n_channels squared values */
    double *sumsq;      /* n_channels running sums */
    int busy;
} FilterBank;

/* The kernels release the GIL only for blocks of at least this many values. A chunk of
 * 10 samples is well under a microsecond of work; releasing and re-taking the GIL costs
 * about a tenth of that on its own, and once released another thread (the forecaster,
 * the recorder) may take it and keep the loop thread waiting for up to a switch interval
 * to get it back, in the middle of decoding a chunk. A replay or an offline call with
 * large blocks still lets other threads run. */
#define NOGIL_MIN_VALUES 4096
#define WORK_BEGIN(values) { \
    PyThreadState *work_ts_ = (values) >= NOGIL_MIN_VALUES ? PyEval_SaveThread() : NULL;
#define WORK_END if (work_ts_ != NULL) PyEval_RestoreThread(work_ts_); }

/* ---------------------------------------------------------------- helpers */

/* 1 if the buffer holds native 8-byte items: float64 ('d'), or int64 ('q'/'l') when
 * is_int (a leading byte-order mark '<', '=' or '@' is accepted). */
static int
is_8byte(const Py_buffer *view, int is_int)
{
    const char *fmt = view->format;
    if (fmt && (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@')) fmt++;
    if (fmt == NULL || view->itemsize != 8) return 0;
    return is_int ? (strcmp(fmt, "q") == 0 || strcmp(fmt, "l") == 0) : strcmp(fmt, "d") == 0;
}

static int
get_block(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t n_channels, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "%s must be a C-contiguous%s float64 array of shape (n_samples, %zd)",
                     name, writable ? ", writable" : "", n_channels);
        return -1;
    }
    if (!is_8byte(view, 0)) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype float64, got format '%s'", name,
                     view->format ? view->format : "?");
        PyBuffer_Release(view);
        return -1;
    }
    if (view->ndim != 2 || view->shape[1] != n_channels) {
        if (view->ndim == 2)
            PyErr_Format(PyExc_ValueError, "%s must have shape (n_samples, %zd), got (%zd, %zd)",
                         name, n_channels, view->shape[0], view->shape[1]);
        else
            PyErr_Format(PyExc_ValueError, "%s must be 2-D (n_samples, %zd), got %d-D", name,
                         n_channels, view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int
get_flat(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t n, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s float64 buffer", name,
                     writable ? ", writable" : "");
        return -1;
    }
    if (!is_8byte(view, 0) || view->len != n * 8) {
        PyErr_Format(PyExc_ValueError, "%s must hold exactly %zd float64 values", name, n);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int
enter(FilterBank *self)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "FilterBank is already running in another thread; use one bank per thread");
        return -1;
    }
    self->busy = 1;
    return 0;
}

/* ---------------------------------------------------------------- kernels */

/* Filter one row (n_channels values) in place through every section. */
static inline void
sos_row(const double *coef, double *z, Py_ssize_t n_sections, Py_ssize_t n_ch, double *row)
{
    for (Py_ssize_t s = 0; s < n_sections; s++) {
        const double b0 = coef[5 * s], b1 = coef[5 * s + 1], b2 = coef[5 * s + 2];
        const double a1 = coef[5 * s + 3], a2 = coef[5 * s + 4];
        double *restrict z0 = z + 2 * s * n_ch;
        double *restrict z1 = z0 + n_ch;
        double *restrict r = row;
        for (Py_ssize_t c = 0; c < n_ch; c++) {
            const double xi = r[c];
            const double y = b0 * xi + z0[c];
            z0[c] = b1 * xi - a1 * y + z1[c];
            z1[c] = b2 * xi - a2 * y;
            r[c] = y;
        }
    }
}

static void
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
static void
rms_block(FilterBank *self, const double *sig, double *env, Py_ssize_t n_samples)
{
    const Py_ssize_t n_ch = self->n_channels, w = self->window;
    double *restrict sums = self->sumsq;
    for (Py_ssize_t t = 0; t < n_samples; t++) {
        const double *restrict s = sig + t * n_ch;
        double *restrict slot = self->ring + self->pos * n_ch;
        double *restrict e = env + t * n_ch;
        for (Py_ssize_t c = 0; c < n_ch; c++) {
            const double sq = s[c] * s[c];
            sums[c] += sq - slot[c];
            slot[c] = sq;
        }
        if (self->count < w) self->count++;
        if (++self->pos == w) {
            /* The ring wrapped: re-sum it so rounding error cannot accumulate. */
            self->pos = 0;
            for (Py_ssize_t c = 0; c < n_ch; c++) sums[c] = 0.0;
            for (Py_ssize_t k = 0; k < w; k++) {
                const double *restrict q = self->ring + k * n_ch;
                for (Py_ssize_t c = 0; c < n_ch; c++) sums[c] += q[c];
            }
        }
        const double inv = 1.0 / (double)self->count;
        for (Py_ssize_t c = 0; c < n_ch; c++) {
            const double m = sums[c] * inv;
            e[c] = m > 0.0 ? sqrt(m) : 0.0;  /* m can dip below 0 by one ulp */
        }
    }
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

static int
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

static int
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
static void
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

#define PICK_STACK 32

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

static PyTypeObject FilterBankType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "decoders._filters.FilterBank",
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

/* ------------------------------------------------- detector rule kernels (module level) */

/* Scalar and length arguments of the rule kernels, each failure a TypeError naming the
 * kernel and the argument (the bare C-API messages, "must be real number, not str" or
 * "object of type 'NoneType' has no len()", name neither). */
static int
arg_double(PyObject *obj, const char *fn, const char *name, double *out)
{
    double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: %s must be a number, got %.100s", fn, name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = v;
    return 0;
}

static int
arg_ssize(PyObject *obj, const char *fn, const char *name, Py_ssize_t *out)
{
    Py_ssize_t v = PyLong_AsSsize_t(obj);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        if (PyLong_Check(obj))
            PyErr_Format(PyExc_ValueError, "%s: %s = %R is out of range", fn, name, obj);
        else
            PyErr_Format(PyExc_TypeError, "%s: %s must be an int, got %.100s", fn, name,
                         Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = v;
    return 0;
}

/* The channel count an array argument implies (its length), or a TypeError naming it. */
static Py_ssize_t
arg_len(PyObject *obj, const char *fn, const char *name)
{
    Py_ssize_t n = PyObject_Length(obj);
    if (n < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: %s must be a 1-D array, got %.100s", fn, name,
                     Py_TYPE(obj)->tp_name);
    }
    return n;
}

/* Get a C-contiguous 2-D buffer of 8-byte items (float64 when is_int == 0, int64 else)
 * with exactly `rows` x `cols` items (rows < 0 or cols < 0: any count; the caller reads
 * the shape from the view). */
static int
get_rule_buf(PyObject *obj, Py_buffer *view, int writable, int is_int, Py_ssize_t rows,
             Py_ssize_t cols, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s %s array", name,
                     writable ? ", writable" : "", is_int ? "int64" : "float64");
        return -1;
    }
    if (!is_8byte(view, is_int)) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype %s, got format '%s'", name,
                     is_int ? "int64" : "float64", view->format ? view->format : "?");
        PyBuffer_Release(view);
        return -1;
    }
    Py_ssize_t r = view->ndim == 2 ? view->shape[0] : (view->ndim == 1 ? 1 : -1);
    Py_ssize_t c = view->ndim == 2 ? view->shape[1] : (view->ndim == 1 ? view->shape[0] : -1);
    if (r < 0 || (cols >= 0 && c != cols) || (rows >= 0 && r != rows)) {
        if (rows < 0 && cols < 0)
            PyErr_Format(PyExc_ValueError, "%s must be a 1-D or 2-D array, got %d-D", name,
                         view->ndim);
        else
            PyErr_Format(PyExc_ValueError, "%s must have shape (%zd, %zd)", name,
                         rows >= 0 ? rows : (Py_ssize_t)-1, cols);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The baseline ring argument: a C-contiguous, writable float64 (rows, L) array, L >= 1.
 * Returns L, or -1 with a TypeError or ValueError naming it (prefix: "fn: " or ""; note:
 * appended to the TypeError, e.g. " (or None)"); nothing is held on an error. */
static Py_ssize_t
get_ring(PyObject *obj, Py_buffer *view, Py_ssize_t rows, const char *prefix, const char *note)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%sring must be a C-contiguous, writable float64 array%s",
                     prefix, note);
        return -1;
    }
    if (!is_8byte(view, 0) || view->ndim != 2 || view->shape[0] != rows || view->shape[1] < 1) {
        PyErr_Format(PyExc_ValueError, "%sring must be a float64 array of shape (%zd, L)",
                     prefix, rows);
        PyBuffer_Release(view);
        return -1;
    }
    return view->shape[1];
}

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
static long long
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

PyDoc_STRVAR(ripple_front_doc,
"ripple_front(samples, first, t, times_index, times, cols, weights, band, work, runs,\n"
"             step, ring, pos, count, excl, median, sd, k_sd, carry, n_det, k_art,\n"
"             gate_col, theta, delta, hold) -> (longest, artefact)\n\n"
"The ripple detector's chunk without a baseline update point, in one call. With\n"
"n = len(samples), c = band.n_channels and cap = len(work) / (5 c + 3) >= n, work (flat\n"
"float64) holds five (cap, c) blocks -- filtered, envelope, median_out, sd_out, thr -- then\n"
"three (cap, 1) -- gate_filtered, theta_env, delta_env --, each filled in its first n rows;\n"
"runs (>= n, c) int64. Steps:\n"
"- t (n,) float64 seconds goes into the time ring times (L,) at (times_index + i) % L;\n"
"- band.pick_rms(samples, cols, weights, filtered, envelope);\n"
"- baseline_runs on the envelope (first, step, ring .. sd, k_sd, carry as there);\n"
"- artefact = 1 when any of the first n_det columns has envelope > median + k_art * sd;\n"
"- unless there is an artefact (the caller then holds the gate channel through it) or\n"
"  gate_col is -1: theta and delta (1-channel FilterBanks) band-pass column gate_col of\n"
"  samples into their moving RMS theta_env and delta_env, and hold (1,) float64 gets the\n"
"  chunk's last gate-channel sample.\n"
"Returns the largest run and the artefact flag.");

static PyObject *
filters_ripple_front(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    static const char *fn = "ripple_front";
    if (nargs != 25) {
        PyErr_SetString(PyExc_TypeError, "ripple_front takes 25 arguments");
        return NULL;
    }
    FilterBank *band = NULL, *theta = NULL, *delta = NULL;
    Py_ssize_t first = 0, tindex = 0, step = 1, n_det = 0, gate_col = -1;
    double k_sd = 0.0, k_art = 0.0;
    if (arg_ssize(args[1], fn, "first", &first) < 0
        || arg_ssize(args[3], fn, "times_index", &tindex) < 0
        || arg_ssize(args[10], fn, "step", &step) < 0
        || arg_double(args[17], fn, "k_sd", &k_sd) < 0
        || arg_ssize(args[19], fn, "n_det", &n_det) < 0
        || arg_double(args[20], fn, "k_art", &k_art) < 0
        || arg_ssize(args[21], fn, "gate_col", &gate_col) < 0) return NULL;
    if (step < 1 || first < 0 || tindex < 0) {
        PyErr_SetString(PyExc_ValueError, "ripple_front: step must be >= 1, first and "
                                          "times_index >= 0");
        return NULL;
    }
    {
        static const int bank_arg[3] = {7, 22, 23};
        static const char *bank_name[3] = {"band", "theta", "delta"};
        FilterBank **bank[3] = {&band, &theta, &delta};
        for (int b = 0; b < 3; b++) {
            PyObject *o = args[bank_arg[b]];
            if (b > 0 && gate_col < 0) continue;
            if (!PyObject_TypeCheck(o, &FilterBankType)) {
                PyErr_Format(PyExc_TypeError, "ripple_front: %s must be a FilterBank, got %.100s",
                             bank_name[b], Py_TYPE(o)->tp_name);
                return NULL;
            }
            *bank[b] = (FilterBank *)o;
            if (check_ready(*bank[b]) < 0) return NULL;
            if ((*bank[b])->window == 0 || (b > 0 && (*bank[b])->n_channels != 1)) {
                PyErr_Format(PyExc_ValueError, "ripple_front: %s must be a FilterBank with a "
                             "moving-RMS window%s", bank_name[b], b ? " and 1 channel" : "");
                return NULL;
            }
        }
    }
    const Py_ssize_t c = band->n_channels;
    if (n_det < 1 || n_det > c) {
        PyErr_Format(PyExc_ValueError, "ripple_front: n_det must be in 1..%zd, got %zd", c, n_det);
        return NULL;
    }
    /* cols and weights are copied, as pick_rms does */
    Py_ssize_t cols[PICK_STACK];
    double w[PICK_STACK];
    Py_ssize_t nc, nw;
    {
        Py_buffer cv, wv;
        if (get_vector(args[5], &cv, 1, "cols") < 0) return NULL;
        if (get_vector(args[6], &wv, 0, "weights") < 0) { PyBuffer_Release(&cv); return NULL; }
        nc = cv.shape[0];
        nw = wv.shape[0];
        int bad = nc > PICK_STACK || nw > PICK_STACK || (nw ? (nc != nw + c - 1) : (nc != c));
        if (!bad) {
            for (Py_ssize_t j = 0; j < nc; j++) cols[j] = (Py_ssize_t)((const long long *)cv.buf)[j];
            for (Py_ssize_t j = 0; j < nw; j++) w[j] = ((const double *)wv.buf)[j];
        }
        PyBuffer_Release(&cv); PyBuffer_Release(&wv);
        if (bad) {
            PyErr_Format(PyExc_ValueError, "ripple_front: cols must hold %zd column indices "
                         "(at most %d)", nw ? nw + c - 1 : c, PICK_STACK);
            return NULL;
        }
    }
    /* buffers, in argument order */
    enum { SAMPLES, T, TIMES, WORK, RUNS, RING, POS, COUNT, EXCL, MEDIAN, SD, CARRY, HOLD, NB };
    static const int arg_of[NB] = {0, 2, 4, 8, 9, 11, 12, 13, 14, 15, 16, 18, 24};
    static const char *names[NB] = {"samples", "t", "times", "work", "runs", "ring", "pos",
                                    "count", "excl", "median", "sd", "carry", "hold"};
    static const int is_int[NB] = {0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0};
    static const int writable[NB] = {0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1};
    const int nb = gate_col < 0 ? HOLD : NB;      /* hold only with a gate */
    Py_buffer v[NB];
    int got = 0;
    Py_ssize_t n = 0, ncol = 0, length = 0, cap = 0, n_times = 0;
    for (; got < nb; got++) {
        PyObject *o = args[arg_of[got]];
        Py_ssize_t rows = -1, cols_ = -1;      /* any shape, checked below */
        if (got == T) rows = 1, cols_ = n;
        else if (got == RING) rows = c;
        else if (got >= POS && got <= CARRY) rows = 1, cols_ = c;
        else if (got == HOLD) rows = 1, cols_ = 1;
        else if (got == RUNS) cols_ = c;
        if (get_rule_buf(o, &v[got], writable[got], is_int[got], rows, cols_, names[got]) < 0)
            break;
        const Py_buffer *b = &v[got];
        const char *shape_err = NULL;
        if (got == SAMPLES) {
            if (b->ndim != 2) shape_err = "samples must be 2-D (n, C)";
            else { n = b->shape[0]; ncol = b->shape[1]; }
        } else if (got == TIMES) {
            n_times = b->len / 8;
            if (b->ndim != 1 || n_times < 1) shape_err = "times must be 1-D with >= 1 value";
        } else if (got == WORK) {
            const Py_ssize_t per = 5 * c + 3, len = b->len / 8;
            cap = len / per;
            if (b->ndim != 1 || len % per || cap < n)
                shape_err = "work must be 1-D with (5 c + 3) cap values, cap >= n";
        } else if (got == RUNS) {
            if (b->ndim != 2 || b->shape[0] < n) shape_err = "runs must have >= n rows";
        } else if (got == RING) {
            length = b->ndim == 2 ? b->shape[1] : 0;
            if (length < 1) shape_err = "ring must be (c, L), L >= 1";
        }
        if (shape_err != NULL) {
            PyErr_Format(PyExc_ValueError, "ripple_front: %s", shape_err);
            got++;
            break;
        }
    }
    if (got < nb || PyErr_Occurred()) {
        for (int i = 0; i < got; i++) PyBuffer_Release(&v[i]);
        return NULL;
    }
    int bad = gate_col >= ncol;
    for (Py_ssize_t j = 0; j < nc && !bad; j++) bad = cols[j] < 0 || cols[j] >= ncol;
    /* no two buffers may share memory: the outputs are written while the inputs (and the
     * other outputs) are read */
    for (int i = 0; i < nb && !bad; i++) {
        const char *a0 = (const char *)v[i].buf, *a1 = a0 + v[i].len;
        for (int j = i + 1; j < nb && !bad; j++) {
            const char *b0 = (const char *)v[j].buf, *b1 = b0 + v[j].len;
            bad = b0 < a1 && a0 < b1;
        }
    }
    long long lp[PICK_STACK];
    if (!bad) {
        bad = c > PICK_STACK;
        for (Py_ssize_t j = 0; j < c && !bad; j++) {
            lp[j] = ((const long long *)v[POS].buf)[j];
            bad = lp[j] < 0 || lp[j] >= length;
        }
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "ripple_front: a column index is outside samples, "
                                          "two arrays share memory, or pos is outside the "
                                          "ring");
        for (int i = 0; i < nb; i++) PyBuffer_Release(&v[i]);
        return NULL;
    }
    /* every bank is claimed before any is touched, so an error leaves all state as it was */
    const int gate = gate_col >= 0;
    if ((gate && (theta == delta || theta == band || delta == band))
        || enter(band) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "ripple_front: band, theta and delta must be "
                                              "three different banks");
        for (int i = 0; i < nb; i++) PyBuffer_Release(&v[i]);
        return NULL;
    }
    if (gate && enter(theta) < 0) {
        band->busy = 0;
        for (int i = 0; i < nb; i++) PyBuffer_Release(&v[i]);
        return NULL;
    }
    if (gate && enter(delta) < 0) {
        band->busy = 0;
        theta->busy = 0;
        for (int i = 0; i < nb; i++) PyBuffer_Release(&v[i]);
        return NULL;
    }
    {   /* the time ring: sample i's timestamp at its absolute index modulo the ring */
        const double *t = (const double *)v[T].buf;
        double *times = (double *)v[TIMES].buf;
        Py_ssize_t pos_t = tindex % n_times;
        for (Py_ssize_t i = 0; i < n; i++) {
            times[pos_t] = t[i];
            if (++pos_t == n_times) pos_t = 0;
        }
    }
    const double *src = (const double *)v[SAMPLES].buf;
    double *work = (double *)v[WORK].buf;
    const Py_ssize_t blk = cap * c;
    double *filt = work, *env = work + blk, *mo = work + 2 * blk, *so = work + 3 * blk,
           *thr = work + 4 * blk, *gf = work + 5 * blk, *th = gf + cap, *de = gf + 2 * cap;
    pick_filter_rms(band, src, ncol, n, cols, w, nw, filt, env);
    const long long best = baseline_block(
        env, n, c, first, step, (double *)v[RING].buf, length, lp, (long long *)v[COUNT].buf,
        (const double *)v[EXCL].buf, (const double *)v[MEDIAN].buf, (const double *)v[SD].buf,
        k_sd, (long long *)v[CARRY].buf, mo, so, thr, (long long *)v[RUNS].buf);
    memcpy(v[POS].buf, lp, (size_t)c * sizeof(long long));
    band->busy = 0;
    int artefact = 0;
    if (best > 0) {
        for (Py_ssize_t i = 0; i < n && !artefact; i++)
            for (Py_ssize_t j = 0; j < n_det; j++) {
                const Py_ssize_t q = i * c + j;
                if (env[q] > mo[q] + k_art * so[q]) { artefact = 1; break; }
            }
    }
    if (gate && !artefact && n > 0) {
        const Py_ssize_t gc[1] = {gate_col};
        pick_filter_rms(theta, src, ncol, n, gc, NULL, 0, gf, th);
        pick_filter_rms(delta, src, ncol, n, gc, NULL, 0, gf, de);
        ((double *)v[HOLD].buf)[0] = src[(n - 1) * ncol + gate_col];
    }
    if (gate) { theta->busy = 0; delta->busy = 0; }
    for (int i = 0; i < nb; i++) PyBuffer_Release(&v[i]);
    return Py_BuildValue("(Li)", best, artefact);
}

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

/* The scalar parameters of the spindle rules, args[0..8] = k_lo, k_hi, rel_min, corr_min,
 * alpha_max, min_n, max_n, k_art, hold_n (the order of spindle_runs and spindle_block). */
typedef struct {
    double k_lo, k_hi, rel, corr, amax, k_art;
    long long min_n, max_n, hold_n;
} SpindleRules;

static int
arg_spindle_rules(PyObject *const *args, const char *fn, SpindleRules *r)
{
    static const char *par_names[5] = {"k_lo", "k_hi", "rel_min", "corr_min", "alpha_max"};
    double par[5];
    for (int p = 0; p < 5; p++)
        if (arg_double(args[p], fn, par_names[p], &par[p]) < 0) return -1;
    Py_ssize_t min_n, max_n, hold_n;
    double k_art;
    if (arg_ssize(args[5], fn, "min_n", &min_n) < 0
        || arg_ssize(args[6], fn, "max_n", &max_n) < 0
        || arg_double(args[7], fn, "k_art", &k_art) < 0
        || arg_ssize(args[8], fn, "hold_n", &hold_n) < 0) return -1;
    r->k_lo = par[0]; r->k_hi = par[1]; r->rel = par[2]; r->corr = par[3]; r->amax = par[4];
    r->k_art = k_art;
    r->min_n = (long long)min_n; r->max_n = (long long)max_n; r->hold_n = (long long)hold_n;
    return 0;
}

/* The loop of spindle_runs over one block of n rows of c channels (pm: 4c columns; ea may
 * be NULL), shared with spindle_block so both evaluate the rules with the same operations
 * in the same order. Raises *best and adds to *n_fire. Needs no GIL. */
static void
spindle_rules(const SpindleRules *rl, const double *env, const double *eb, const double *es,
              const double *pm, const double *ea, const double *med, const double *sd,
              Py_ssize_t n, Py_ssize_t c, long long *carry, long long *hold, long long *runs,
              long long *fire, long long *best_out, long long *n_fire_out)
{
    const double k_lo = rl->k_lo, k_hi = rl->k_hi, rel = rl->rel, amax = rl->amax,
                 k_art = rl->k_art;
    const long long min_n = rl->min_n, max_n = rl->max_n, hold_n = rl->hold_n;
    long long best = *best_out, n_fire = *n_fire_out;
    const double k_corr = 16.0 * rl->corr * fabs(rl->corr);
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *p = pm + i * 4 * c;
        for (Py_ssize_t j = 0; j < c; j++) {
            const Py_ssize_t q = i * c + j;
            const double e = env[q], m = med[q], s = sd[q];
            int held = 0;
            if (e > m + k_art * s) { hold[j] = hold_n; held = 1; }
            else if (hold[j] > 0) { hold[j]--; held = 1; }
            const long long r = !held && e > m + k_lo * s ? carry[j] + 1 : 0;
            carry[j] = r;
            runs[q] = r;
            if (r > best) best = r;
            int ok = !held && r >= min_n && r < max_n && e > m + k_hi * s;
            if (ok) {
                const double b = eb[q];
                ok = e * e >= rel * b * b;
                if (ok) {
                    const double d1 = p[j] * p[j] - p[c + j] * p[c + j];
                    const double d2 = p[2 * c + j] * p[2 * c + j] - p[3 * c + j] * p[3 * c + j];
                    const double sb = es[q] * b;
                    ok = d1 * d1 + d2 * d2 >= (sb * sb) * k_corr;
                }
                if (ok && ea != NULL) ok = ea[q] <= amax * e;
            }
            fire[q] = ok;
            n_fire += ok;
        }
    }
    *best_out = best;
    *n_fire_out = n_fire;
}

PyDoc_STRVAR(spindle_runs_doc,
"spindle_runs(env, eb, es, pm, ea, med, sd, k_lo, k_hi, rel_min, corr_min, alpha_max,\n"
"             min_n, max_n, k_art, hold_n, carry, hold, runs, fire) -> (longest, n_fire)\n\n"
"An artefact sample (env > med + k_art * sd) and the hold_n samples after the last one\n"
"are held: no run crosses them and nothing fires on them (`hold`, (c,) int64, carries the\n"
"samples of hold left into the next block).\n"
"Per channel: runs = length of the current run of samples with env > med + k_lo * sd (the\n"
"low threshold; NaN compares False), continuing `carry` (updated). fire = 1 where that run\n"
"is at least min_n and less than max_n long (a run that outlasts max_n before it fires is\n"
"no spindle) and, at that sample, env > med + k_hi * sd (the high threshold),\n"
"env^2 >= rel_min * eb^2, with pm = moving RMS of [xs+xb, xs-xb, q+xb, q-xb] (n, 4c) and\n"
"d_i = pm_i^2 - pm_i'^2 (4x the mean products) d_1^2 + d_2^2 >= 16 * corr_min * |corr_min|\n"
"* (es * eb)^2, and, unless ea is None, ea <= alpha_max * env; else 0. env, eb, es, ea,\n"
"med, sd: (n, c) float64; runs, fire: (n, c) int64; carry: (c,) int64. Returns the largest\n"
"run length in the block and the number of samples with fire = 1.");

static PyObject *
filters_spindle_runs(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 20) {
        PyErr_SetString(PyExc_TypeError, "spindle_runs(env, eb, es, pm, ea, med, sd, k_lo, "
                                         "k_hi, rel_min, corr_min, alpha_max, min_n, max_n, "
                                         "k_art, hold_n, carry, hold, runs, fire) takes 20 "
                                         "arguments");
        return NULL;
    }
    SpindleRules rules;
    if (arg_spindle_rules(args + 7, "spindle_runs", &rules) < 0) return NULL;
    Py_ssize_t c = arg_len(args[16], "spindle_runs", "carry");
    if (c < 0) return NULL;
    /* buffers: env eb es pm ea med sd (inputs; ea may be None) then carry hold runs fire
     * (int64, written) */
    enum { NB = 11 };
    static const int arg_of[NB] = {0, 1, 2, 3, 4, 5, 6, 16, 17, 18, 19};
    static const char *names[NB] = {"env", "eb", "es", "pm", "ea", "med", "sd", "carry",
                                    "hold", "runs", "fire"};
    Py_buffer bufs[NB];
    int have[NB];
    Py_ssize_t n = -1;
    for (int b = 0; b < NB; b++) {
        have[b] = 0;
        bufs[b].buf = NULL;
        if (b == 4 && args[arg_of[b]] == Py_None) continue;
        int is_int = b >= 7;
        Py_ssize_t rows = b == 0 ? -1 : (b == 7 || b == 8 ? 1 : n);
        Py_ssize_t cols = b == 3 ? 4 * c : c;
        if (get_rule_buf(args[arg_of[b]], &bufs[b], is_int, is_int, rows, cols,
                         names[b]) < 0) {
            for (int r = 0; r < b; r++) if (have[r]) PyBuffer_Release(&bufs[r]);
            return NULL;
        }
        have[b] = 1;
        if (b == 0) n = bufs[0].ndim == 2 ? bufs[0].shape[0] : 1;
    }
    long long best = 0, n_fire = 0;
    WORK_BEGIN(n * c)
    spindle_rules(&rules, (const double *)bufs[0].buf, (const double *)bufs[1].buf,
                  (const double *)bufs[2].buf, (const double *)bufs[3].buf,
                  (const double *)bufs[4].buf, (const double *)bufs[5].buf,
                  (const double *)bufs[6].buf, n, c, (long long *)bufs[7].buf,
                  (long long *)bufs[8].buf, (long long *)bufs[9].buf,
                  (long long *)bufs[10].buf, &best, &n_fire);
    WORK_END
    for (int r = 0; r < NB; r++) if (have[r]) PyBuffer_Release(&bufs[r]);
    return Py_BuildValue("(LL)", best, n_fire);
}

/* q, the four sums and (unless amp is NULL) the amplitude of quadrature_sums over one block
 * of n rows of c channels, g = 1 / (2 sin(w0 / 2)), gi = 1 / (2 cos(w0 / 2)); shared with
 * spindle_block so both compute them with the same operations. Needs no GIL. */
static void
quadrature_rows(const double *xs, const double *xb, double *last, double g, double gi,
                Py_ssize_t n, Py_ssize_t c, double *o, double *amp)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        double *r = o + i * 4 * c;
        for (Py_ssize_t j = 0; j < c; j++) {
            const double a = xs[i * c + j], b = xb[i * c + j];
            const double q = (a - last[j]) * g;
            if (amp != NULL) {
                const double m = (a + last[j]) * gi;
                amp[i * c + j] = sqrt(0.5 * (m * m + q * q));
            }
            last[j] = a;
            r[j] = a + b;
            r[c + j] = a - b;
            r[2 * c + j] = q + b;
            r[3 * c + j] = q - b;
        }
    }
}

/* Number of (cap, width * c) blocks of spindle_block's float64 work array, in units of
 * cap rows of c values: xb eb xs es (1 each), sums, pm (4 each), amp env xa ea med sd (1
 * each). decoders/spindle.py splits its views in the same order. */
#define SPINDLE_WORK_ROWS 18

PyDoc_STRVAR(spindle_block_doc,
"spindle_block(samples, first, rules, cols, broad, sigma, alpha, pm, env, w0, xs_last,\n"
"              work, iwork, runstate, step, ring, pos, count, excl, median, sd, k_lo,\n"
"              k_hi, rel_min, corr_min, alpha_max, min_n, max_n, k_art, hold_n)\n"
"    -> (longest, n_fire) or None\n\n"
"One chunk of the spindle detector in one call, the same operations in the same order as\n"
"its separate steps. With n = len(samples), c = broad.n_channels and cap = len(work) / 18,\n"
"work (18 cap, c) float64 holds, each C-contiguous and filled in its first n rows, the\n"
"blocks xb, eb, xs, es (cap, c), sums, pm (cap, 4c), amp, env, xa, ea, med, sd (cap, c);\n"
"iwork (2 cap, c) int64 holds runs, fire (cap, c). Steps:\n"
"- pick: column j of the bank input is samples[:, cols[j]] (samples (n, C) float64 volts,\n"
"  cols (c,) int64);\n"
"- broad.process_rms(picked, xb, eb); sigma.process_rms(xb, xs, es);\n"
"- quadrature_sums(xs, xb, xs_last, w0, sums, amp) (w0 radians per sample, xs_last (c,)\n"
"  float64 updated);\n"
"- pm.process_rms(sums, sums, pm) (pm: 4c channels, no sections); env.process_rms(amp, amp,\n"
"  env) (c channels, no sections);\n"
"- unless alpha is None, alpha.process_rms(xb, xa, ea).\n"
"The filter banks keep their state as with the separate calls. When rules is false that is\n"
"all (the later arguments are ignored) and None is returned. Else, for a block with no\n"
"baseline update point (RobustBaseline.process with absolute=False): med/sd rows = median,\n"
"sd (c,) float64; every sample whose absolute index first + i is a multiple of `step` is\n"
"pushed per channel into ring (c, L) at pos (advancing it, count += 1; pos, count (c,)\n"
"int64) unless env > excl (c,) (NaN is not kept); then spindle_runs(env, eb, es, pm, ea\n"
"(None without alpha), med, sd, k_lo, ..., hold_n, runstate[0], runstate[1], runs, fire)\n"
"with runstate (2, c) int64 = carry, hold. Returns (largest run, number of fire samples).");

/* The FilterBank argument `name` of spindle_block: n_ch channels, an RMS window and, for
 * the moving-RMS-only banks (no_sections), no filter. NULL with the error set. */
static FilterBank *
spindle_bank(PyObject *obj, const char *name, Py_ssize_t n_ch, int no_sections)
{
    if (!PyObject_TypeCheck(obj, &FilterBankType)) {
        PyErr_Format(PyExc_TypeError, "spindle_block: %s must be a FilterBank, got %.100s",
                     name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    FilterBank *b = (FilterBank *)obj;
    if (check_ready(b) < 0) return NULL;
    if (b->n_channels != n_ch || b->window < 1 || (no_sections && b->n_sections != 0)) {
        PyErr_Format(PyExc_ValueError,
                     "spindle_block: %s must be a bank of %zd channels with an RMS window%s, "
                     "got %zd channels, window %zd, %zd sections", name, n_ch,
                     no_sections ? " and no sections" : "", b->n_channels, b->window,
                     b->n_sections);
        return NULL;
    }
    return b;
}

static PyObject *
filters_spindle_block(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 30) {
        PyErr_SetString(PyExc_TypeError,
                        "spindle_block(samples, first, rules, cols, broad, sigma, alpha, pm, "
                        "env, w0, xs_last, work, iwork, runstate, step, ring, pos, count, "
                        "excl, median, sd, k_lo, k_hi, rel_min, corr_min, alpha_max, min_n, "
                        "max_n, k_art, hold_n) takes 30 arguments");
        return NULL;
    }
    static const char *fn = "spindle_block";
    Py_ssize_t first, step = 1;
    double w0;
    if (arg_ssize(args[1], fn, "first", &first) < 0) return NULL;
    const int rules = PyObject_IsTrue(args[2]);
    if (rules < 0) return NULL;
    if (arg_double(args[9], fn, "w0", &w0) < 0) return NULL;
    if (!(w0 > 0.0 && w0 < Py_MATH_PI)) {
        PyErr_Format(PyExc_ValueError, "spindle_block: w0 must be in (0, pi) radians per "
                     "sample, got %R", args[9]);
        return NULL;
    }
    SpindleRules rl;
    if (rules) {
        if (arg_ssize(args[14], fn, "step", &step) < 0
            || arg_spindle_rules(args + 21, fn, &rl) < 0) return NULL;
        if (step < 1 || first < 0) {
            PyErr_Format(PyExc_ValueError, "spindle_block: step must be >= 1 and first >= 0, "
                         "got step %zd, first %zd", step, first);
            return NULL;
        }
    }
    /* the banks: broad (its channel count is c), sigma, pm (4c channels), env, alpha */
    if (!PyObject_TypeCheck(args[4], &FilterBankType)) {
        PyErr_Format(PyExc_TypeError, "spindle_block: broad must be a FilterBank, got %.100s",
                     Py_TYPE(args[4])->tp_name);
        return NULL;
    }
    const Py_ssize_t c = ((FilterBank *)args[4])->n_channels;
    static const char *bank_name[5] = {"broad", "sigma", "pm", "env", "alpha"};
    static const int bank_arg[5] = {4, 5, 7, 8, 6};
    const int n_banks = args[6] == Py_None ? 4 : 5;
    FilterBank *bank[5] = {NULL, NULL, NULL, NULL, NULL};
    for (int b = 0; b < n_banks; b++) {
        bank[b] = spindle_bank(args[bank_arg[b]], bank_name[b], b == 2 ? 4 * c : c,
                               b == 2 || b == 3);
        if (bank[b] == NULL) return NULL;
        for (int a = 0; a < b; a++) {
            if (bank[a] == bank[b]) {
                PyErr_Format(PyExc_ValueError, "spindle_block: %s and %s must be distinct "
                             "FilterBanks (each keeps its own state)", bank_name[a],
                             bank_name[b]);
                return NULL;
            }
        }
    }
    /* cols is copied while the GIL is held and only the copy indexes samples */
    Py_ssize_t cols_stack[PICK_STACK], *cols = cols_stack;
    {
        Py_buffer cv;
        if (get_vector(args[3], &cv, 1, "cols") < 0) return NULL;
        if (cv.shape[0] != c) {
            PyErr_Format(PyExc_ValueError, "spindle_block: cols must hold %zd column indices, "
                         "got %zd", c, cv.shape[0]);
            PyBuffer_Release(&cv);
            return NULL;
        }
        if (c > PICK_STACK && (cols = PyMem_Malloc((size_t)c * sizeof(Py_ssize_t))) == NULL) {
            PyBuffer_Release(&cv);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t j = 0; j < c; j++) cols[j] = (Py_ssize_t)((const long long *)cv.buf)[j];
        PyBuffer_Release(&cv);
    }
    enum { B_SAMPLES, B_WORK, B_IWORK, B_LAST, B_STATE, B_RING, B_POS, B_COUNT, B_EXCL, B_MED,
           B_SD, NB };
    Py_buffer v[NB];
    int have[NB] = {0};
    long long pos_stack[PICK_STACK], *lp = pos_stack;
    PyObject *result = NULL;
    int entered = 0;
    Py_ssize_t n, ncol, cap, length = 0;
    if (PyObject_GetBuffer(args[0], &v[B_SAMPLES], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "spindle_block: samples must be a C-contiguous "
                        "float64 array");
        goto done;
    }
    have[B_SAMPLES] = 1;
    if (!is_8byte(&v[B_SAMPLES], 0) || v[B_SAMPLES].ndim != 2) {
        PyErr_SetString(PyExc_TypeError, "spindle_block: samples must be a 2-D float64 array "
                        "(n_samples, n_columns)");
        goto done;
    }
    n = v[B_SAMPLES].shape[0];
    ncol = v[B_SAMPLES].shape[1];
    for (Py_ssize_t j = 0; j < c; j++) {
        if (cols[j] < 0 || cols[j] >= ncol) {
            PyErr_Format(PyExc_ValueError, "spindle_block: cols[%zd] = %zd is not a column of "
                         "samples (0..%zd)", j, cols[j], ncol - 1);
            goto done;
        }
    }
    if (get_rule_buf(args[11], &v[B_WORK], 1, 0, -1, c, "work") < 0) goto done;
    have[B_WORK] = 1;
    cap = v[B_WORK].ndim == 2 ? v[B_WORK].shape[0] / SPINDLE_WORK_ROWS : 0;
    if (v[B_WORK].ndim != 2 || v[B_WORK].shape[0] % SPINDLE_WORK_ROWS || cap < n) {
        PyErr_Format(PyExc_ValueError, "spindle_block: work must have shape (%d * cap, %zd) "
                     "with cap >= %zd samples", SPINDLE_WORK_ROWS, c, n);
        goto done;
    }
    {   /* the picked samples are written into work while samples is read */
        const char *s0 = (const char *)v[B_SAMPLES].buf, *s1 = s0 + v[B_SAMPLES].len;
        const char *w0p = (const char *)v[B_WORK].buf, *w1p = w0p + v[B_WORK].len;
        if (w0p < s1 && s0 < w1p) {
            PyErr_SetString(PyExc_ValueError, "spindle_block: work must not share memory "
                            "with samples");
            goto done;
        }
    }
    if (get_rule_buf(args[12], &v[B_IWORK], 1, 1, 2 * cap, c, "iwork") < 0) goto done;
    have[B_IWORK] = 1;
    if (get_rule_buf(args[10], &v[B_LAST], 1, 0, 1, c, "xs_last") < 0) goto done;
    have[B_LAST] = 1;
    if (get_rule_buf(args[13], &v[B_STATE], 1, 1, 2, c, "runstate") < 0) goto done;
    have[B_STATE] = 1;
    if (rules) {
        length = get_ring(args[15], &v[B_RING], c, "spindle_block: ", "");
        if (length < 0) goto done;
        have[B_RING] = 1;
        static const char *vec_name[6] = {"pos", "count", "excl", "median", "sd", NULL};
        for (int b = B_POS; b <= B_SD; b++) {
            const int is_int = b == B_POS || b == B_COUNT;
            if (get_rule_buf(args[16 + b - B_POS], &v[b], is_int, is_int, 1, c,
                             vec_name[b - B_POS]) < 0) goto done;
            have[b] = 1;
        }
        /* the ring positions are copied and checked while the GIL is held, and only the
         * copy indexes the ring (as in baseline_runs) */
        if (c > PICK_STACK && (lp = PyMem_Malloc((size_t)c * sizeof(long long))) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        memcpy(lp, v[B_POS].buf, (size_t)c * sizeof(long long));
        for (Py_ssize_t j = 0; j < c; j++) {
            if (lp[j] < 0 || lp[j] >= length) {
                PyErr_Format(PyExc_ValueError, "spindle_block: pos[%zd] = %lld is outside the "
                             "ring (0..%zd)", j, lp[j], length - 1);
                goto done;
            }
        }
    }
    for (; entered < n_banks; entered++)
        if (enter(bank[entered]) < 0) goto done;
    long long best = 0, n_fire = 0;
    WORK_BEGIN(n * c)
    double *w = (double *)v[B_WORK].buf;
    const Py_ssize_t blk = cap * c;      /* one (cap, c) block of work */
    double *xb = w, *eb = w + blk, *xs = w + 2 * blk, *es = w + 3 * blk, *sums = w + 4 * blk,
           *pmo = w + 8 * blk, *amp = w + 12 * blk, *env = w + 13 * blk, *xa = w + 14 * blk,
           *ea = w + 15 * blk, *mo = w + 16 * blk, *so = w + 17 * blk;
    const double *src = (const double *)v[B_SAMPLES].buf;
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t j = 0; j < c; j++) xb[i * c + j] = src[i * ncol + cols[j]];
    /* the order of the separate calls: broadband, sigma out of the broadband, the
     * quadrature sums and amplitude, their moving RMS, then alpha out of the broadband */
    sos_block(bank[0], xb, xb, n);
    rms_block(bank[0], xb, eb, n);
    sos_block(bank[1], xb, xs, n);
    rms_block(bank[1], xs, es, n);
    quadrature_rows(xs, xb, (double *)v[B_LAST].buf, 0.5 / sin(0.5 * w0), 0.5 / cos(0.5 * w0),
                    n, c, sums, amp);
    rms_block(bank[2], sums, pmo, n);
    rms_block(bank[3], amp, env, n);
    if (n_banks == 5) {
        sos_block(bank[4], xb, xa, n);
        rms_block(bank[4], xa, ea, n);
    }
    if (rules) {
        /* RobustBaseline.process for a block without an update point: the statistics in
         * force copied per row, the decimated envelope pushed unless above the exclusion */
        const double *excl = (const double *)v[B_EXCL].buf, *med = (const double *)v[B_MED].buf,
                     *sd = (const double *)v[B_SD].buf;
        double *ring = (double *)v[B_RING].buf;
        long long *count = (long long *)v[B_COUNT].buf;
        const long long j0 = (step - first % step) % step;
        for (Py_ssize_t i = 0; i < n; i++) {
            const int push = ((long long)i >= j0) && (((long long)i - j0) % step == 0);
            for (Py_ssize_t j = 0; j < c; j++) {
                const Py_ssize_t q = i * c + j;
                mo[q] = med[j];
                so[q] = sd[j];
                const double x = env[q];
                if (push && x <= excl[j]) {
                    ring[j * length + lp[j]] = x;
                    lp[j] = (lp[j] + 1) % length;
                    count[j] += 1;
                }
            }
        }
        long long *st = (long long *)v[B_STATE].buf, *iw = (long long *)v[B_IWORK].buf;
        spindle_rules(&rl, env, eb, es, pmo, n_banks == 5 ? ea : NULL, mo, so, n, c, st,
                      st + c, iw, iw + cap * c, &best, &n_fire);
    }
    WORK_END
    if (rules) {
        memcpy(v[B_POS].buf, lp, (size_t)c * sizeof(long long));
        result = Py_BuildValue("(LL)", best, n_fire);
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
done:
    for (int b = 0; b < entered; b++) bank[b]->busy = 0;
    for (int b = 0; b < NB; b++) if (have[b]) PyBuffer_Release(&v[b]);
    if (lp != pos_stack) PyMem_Free(lp);
    if (cols != cols_stack) PyMem_Free(cols);
    return result;
}

PyDoc_STRVAR(quadrature_sums_doc,
"quadrature_sums(xs, xb, xs_last, w0, out, amp) -> out\n\n"
"With q = (xs[n] - xs[n-1]) / (2 sin(w0 / 2)) (continuing from xs_last) -- the quadrature\n"
"of a narrow-band xs, of the same amplitude at the centre frequency w0 (radians per\n"
"sample) -- write [xs + xb, xs - xb, q + xb, q - xb] side by side into out (n, 4c) and,\n"
"unless amp is None, the instantaneous amplitude sqrt((i^2 + q^2) / 2) into amp (n, c),\n"
"with i = (xs[n] + xs[n-1]) / (2 cos(w0 / 2)) the midpoint, which (unlike xs[n]) is in\n"
"exact quadrature with the difference: a sine at w0 gives its RMS at every sample.\n"
"xs_last (c,) is set to the last row of xs. xs, xb: (n, c) float64.");

static PyObject *
filters_quadrature_sums(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "quadrature_sums(xs, xb, xs_last, w0, out, amp) takes 6 arguments");
        return NULL;
    }
    double w0;
    if (arg_double(args[3], "quadrature_sums", "w0", &w0) < 0) return NULL;
    if (!(w0 > 0.0 && w0 < Py_MATH_PI)) {
        PyErr_Format(PyExc_ValueError, "w0 must be in (0, pi) radians per sample, got %R",
                     args[3]);
        return NULL;
    }
    const double g = 0.5 / sin(0.5 * w0), gi = 0.5 / cos(0.5 * w0);
    Py_ssize_t c = arg_len(args[2], "quadrature_sums", "xs_last");
    if (c < 0) return NULL;
    int has_amp = args[5] != Py_None;
    Py_buffer sv, bv, lv, ov, av;
    if (get_rule_buf(args[0], &sv, 0, 0, -1, c, "xs") < 0) return NULL;
    Py_ssize_t n = sv.ndim == 2 ? sv.shape[0] : 1;
    if (get_rule_buf(args[1], &bv, 0, 0, n, c, "xb") < 0) { PyBuffer_Release(&sv); return NULL; }
    if (get_rule_buf(args[2], &lv, 1, 0, 1, c, "xs_last") < 0) {
        PyBuffer_Release(&sv); PyBuffer_Release(&bv); return NULL;
    }
    if (get_rule_buf(args[4], &ov, 1, 0, n, 4 * c, "out") < 0) {
        PyBuffer_Release(&sv); PyBuffer_Release(&bv); PyBuffer_Release(&lv); return NULL;
    }
    if (has_amp && get_rule_buf(args[5], &av, 1, 0, n, c, "amp") < 0) {
        PyBuffer_Release(&sv); PyBuffer_Release(&bv); PyBuffer_Release(&lv);
        PyBuffer_Release(&ov); return NULL;
    }
    WORK_BEGIN(n * c)
    const double *xs = (const double *)sv.buf, *xb = (const double *)bv.buf;
    double *last = (double *)lv.buf, *o = (double *)ov.buf;
    double *amp = has_amp ? (double *)av.buf : NULL;
    quadrature_rows(xs, xb, last, g, gi, n, c, o, amp);
    WORK_END
    PyBuffer_Release(&sv); PyBuffer_Release(&bv); PyBuffer_Release(&lv); PyBuffer_Release(&ov);
    if (has_amp) PyBuffer_Release(&av);
    PyObject *out = args[4];
    Py_INCREF(out);
    return out;
}

PyDoc_STRVAR(echt_push_doc,
"echt_push(samples, col, aa, q, state, ring) -> int\n\n"
"The single-channel ECHT buffer's per-chunk work in one call: column `col` of samples\n"
"(n, C) float64, through the anti-alias bank `aa` (a 1-channel FilterBank, or None), is\n"
"decimated by q -- the samples whose absolute index (state[0] + row) is q - 1 modulo q\n"
"are kept, so the result does not depend on chunking -- and each kept value is written\n"
"into the doubled ring (2N float64: slot w and w + N, so ring[w:w + N] is always the\n"
"window in time order). state (3,) int64 = [samples seen, w, values written] is updated.\n"
"Returns the row of the last kept sample, or -1 when the chunk kept none.");

static PyObject *
filters_echt_push(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "echt_push(samples, col, aa, q, state, ring) takes 6 arguments");
        return NULL;
    }
    Py_ssize_t col, q;
    if (arg_ssize(args[1], "echt_push", "col", &col) < 0
        || arg_ssize(args[3], "echt_push", "q", &q) < 0) return NULL;
    if (q < 1) {
        PyErr_Format(PyExc_ValueError, "echt_push: q must be >= 1, got %zd", q);
        return NULL;
    }
    FilterBank *aa = NULL;
    if (args[2] != Py_None) {
        if (!PyObject_TypeCheck(args[2], &FilterBankType)) {
            PyErr_Format(PyExc_TypeError, "echt_push: aa must be a FilterBank or None, got %.100s",
                         Py_TYPE(args[2])->tp_name);
            return NULL;
        }
        aa = (FilterBank *)args[2];
        if (check_ready(aa) < 0) return NULL;
        if (aa->n_channels != 1) {
            PyErr_Format(PyExc_ValueError, "echt_push: aa must have 1 channel, got %zd",
                         aa->n_channels);
            return NULL;
        }
    }
    Py_buffer sv, stv, rv;
    if (get_rule_buf(args[0], &sv, 0, 0, -1, -1, "samples") < 0) return NULL;
    if (sv.ndim != 2 || col < 0 || col >= sv.shape[1]) {
        PyErr_Format(PyExc_ValueError, "echt_push: samples must be 2-D (n, C) with col %zd "
                     "one of its columns", col);
        PyBuffer_Release(&sv);
        return NULL;
    }
    if (get_rule_buf(args[4], &stv, 1, 1, 1, 3, "state") < 0) { PyBuffer_Release(&sv); return NULL; }
    if (get_rule_buf(args[5], &rv, 1, 0, -1, -1, "ring") < 0) {
        PyBuffer_Release(&sv); PyBuffer_Release(&stv); return NULL;
    }
    const Py_ssize_t len = rv.len / 8, N = len / 2;
    long long *st = (long long *)stv.buf;
    if (len < 2 || len % 2 || st[0] < 0 || st[1] < 0 || st[1] >= N) {
        PyErr_Format(PyExc_ValueError, "echt_push: ring must hold 2N float64 values and "
                     "state [seen >= 0, 0 <= w < N, written]; got %zd values, state [%lld, "
                     "%lld, %lld]", len, st[0], st[1], st[2]);
        PyBuffer_Release(&sv); PyBuffer_Release(&stv); PyBuffer_Release(&rv);
        return NULL;
    }
    if (aa != NULL && enter(aa) < 0) {
        PyBuffer_Release(&sv); PyBuffer_Release(&stv); PyBuffer_Release(&rv);
        return NULL;
    }
    const Py_ssize_t n = sv.shape[0], ncol = sv.shape[1];
    const double *x = (const double *)sv.buf;
    double *ring = (double *)rv.buf;
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
    if (aa != NULL) aa->busy = 0;
    st[0] = seen + n; st[1] = w; st[2] = written;
    PyBuffer_Release(&sv); PyBuffer_Release(&stv); PyBuffer_Release(&rv);
    return PyLong_FromSsize_t(last);
}

PyDoc_STRVAR(echt_estimate_doc,
"echt_estimate(ring, w, kernels, rate_hz, lag, lo_hz, hi_hz, phase_rad, gain)\n"
"    -> (phase_deg, frequency_hz, amplitude, confidence)\n\n"
"The single-channel ECHT estimate at the newest sample, in one pass over the window\n"
"ring[w:w + N] (ring: 2N float64, as echt_push writes it). kernels (5, N) float64: the\n"
"endpoint kernel's real and imaginary parts (a = analytic value now), the same kernel `lag`\n"
"samples earlier (b), and 1/N (the window mean). Frequency = angle(a / b) * rate_hz /\n"
"(2 pi lag), clipped to [lo_hz, hi_hz]. Unless phase_rad is None, the causal band-pass's\n"
"phase (radians) and gain on a uniform grid from lo_hz to hi_hz (phase_rad, gain: (G,)\n"
"float64, G >= 2) are interpolated at that frequency and removed. Phase in degrees,\n"
"cosine phase, wrapped to (-180, 180]; confidence = min(1, amplitude / (sqrt(2) * SD of\n"
"the window)), 0 for a flat window. A NaN or infinite sample in the window gives\n"
"(nan, nan, nan, 0): no estimate until it has left.");

static PyObject *
filters_echt_estimate(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "echt_estimate(ring, w, kernels, rate_hz, lag, lo_hz, "
                                         "hi_hz, phase_rad, gain) takes 9 arguments");
        return NULL;
    }
    Py_ssize_t w, lag;
    double fs, lo, hi;
    if (arg_ssize(args[1], "echt_estimate", "w", &w) < 0
        || arg_double(args[3], "echt_estimate", "rate_hz", &fs) < 0
        || arg_ssize(args[4], "echt_estimate", "lag", &lag) < 0
        || arg_double(args[5], "echt_estimate", "lo_hz", &lo) < 0
        || arg_double(args[6], "echt_estimate", "hi_hz", &hi) < 0) return NULL;
    if (!(fs > 0.0) || lag < 1 || !(isfinite(lo) && isfinite(hi) && lo < hi)) {
        PyErr_SetString(PyExc_ValueError, "echt_estimate: rate_hz must be > 0, lag >= 1 and "
                                          "lo_hz < hi_hz, both finite");
        return NULL;
    }
    const int comp = args[7] != Py_None;
    Py_buffer rv, kv, pv, gv;
    if (get_rule_buf(args[0], &rv, 0, 0, -1, -1, "ring") < 0) return NULL;
    const Py_ssize_t N = rv.len / 16;
    if (get_rule_buf(args[2], &kv, 0, 0, 5, N, "kernels") < 0) { PyBuffer_Release(&rv); return NULL; }
    if (N < 1 || rv.len != 16 * N || w < 0 || w >= N) {
        PyErr_Format(PyExc_ValueError, "echt_estimate: ring must hold 2N float64 values (N = "
                     "%zd from kernels) and 0 <= w < N, got w = %zd", N, w);
        PyBuffer_Release(&rv); PyBuffer_Release(&kv);
        return NULL;
    }
    Py_ssize_t G = 0;
    if (comp) {
        if (get_rule_buf(args[7], &pv, 0, 0, 1, -1, "phase_rad") < 0) {
            PyBuffer_Release(&rv); PyBuffer_Release(&kv); return NULL;
        }
        G = pv.shape[0];
        if (get_rule_buf(args[8], &gv, 0, 0, 1, G, "gain") < 0) {
            PyBuffer_Release(&rv); PyBuffer_Release(&kv); PyBuffer_Release(&pv); return NULL;
        }
        if (G < 2) {
            PyErr_SetString(PyExc_ValueError, "echt_estimate: phase_rad and gain need >= 2 "
                                              "grid points");
            PyBuffer_Release(&rv); PyBuffer_Release(&kv); PyBuffer_Release(&pv);
            PyBuffer_Release(&gv);
            return NULL;
        }
    }
    const double *x = (const double *)rv.buf + w, *k = (const double *)kv.buf;
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
        if (comp) { PyBuffer_Release(&pv); PyBuffer_Release(&gv); }
        PyBuffer_Release(&rv); PyBuffer_Release(&kv);
        return Py_BuildValue("(dddd)", NAN, NAN, NAN, 0.0);
    }
    if (comp) {
        const double *hp = (const double *)pv.buf, *hg = (const double *)gv.buf;
        const double pos = (f - lo) / (hi - lo) * (double)(G - 1);
        Py_ssize_t i = (Py_ssize_t)pos;
        if (i > G - 2) i = G - 2;
        const double fr = pos - (double)i;
        phase -= (hp[i] + fr * (hp[i + 1] - hp[i])) * rad_to_deg;
        amp /= hg[i] + fr * (hg[i + 1] - hg[i]);
        PyBuffer_Release(&pv); PyBuffer_Release(&gv);
    }
    PyBuffer_Release(&rv); PyBuffer_Release(&kv);
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

PyDoc_STRVAR(so_block_doc,
"so_block(samples, cols, t, first, filt, gate_slow, gate_fast, work, state, ring, pos,\n"
"         count, excl, median, step, threshold_v, scale, floor_v, refractory_s) -> tuple\n\n"
"One block of the slow-oscillation detector (decoders.slow_osc) in one call, for a block\n"
"with no baseline update point in it:\n"
"work[0] = samples[:, cols] (n, k) picked; work[1] = that through `filt` (the band-pass);\n"
"unless the gate banks are None, work[3] / work[4] = moving RMS of the picked input through\n"
"gate_slow / gate_fast (work[2] is their scratch); work[5] = the threshold: threshold_v, or\n"
"with a ring (adaptive) min(median * scale, floor_v) after pushing |work[1]| at every\n"
"absolute sample index first + i that is a multiple of `step` into the ring (k, L) at pos\n"
"(advancing it, count += 1) unless above excl (NaN is not kept). Then per channel the\n"
"down-state machine on work[1] against work[5]; state (k, 5) holds [state (0 armed,\n"
"1 below threshold, 2 fired), onset_s, trough_v, trough_s, rearm_s] and is updated; with\n"
"state None (calibrating) there is no down-state machine.\n"
"samples (n, C), work (6, >= n, k), state, excl, median: float64; cols, pos, count: int64;\n"
"t (n,) seconds. With ring None the baseline arguments are ignored.\n"
"Returns the down states that ended in the block, in (sample, channel) order, as tuples\n"
"(sample, channel, onset_s, trough_v, trough_s); () when none did.");

/* A down state that ended in a so_block call: its up-crossing sample and channel, and
 * the state it closed (kept in C until the GIL is back, then turned into tuples). */
typedef struct {
    Py_ssize_t i, ch;
    double onset, trough_v, trough_t;
} SoFound;

#define SO_PLANES 6

static PyObject *
filters_so_block(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs != 19) {
        PyErr_SetString(PyExc_TypeError,
                        "so_block(samples, cols, t, first, filt, gate_slow, gate_fast, work, "
                        "state, ring, pos, count, excl, median, step, threshold_v, scale, "
                        "floor_v, refractory_s) takes 19 arguments");
        return NULL;
    }
    Py_ssize_t first, step;
    double thr_fixed, scale, floor_v, refr;
    if (arg_ssize(args[3], "so_block", "first", &first) < 0
        || arg_ssize(args[14], "so_block", "step", &step) < 0
        || arg_double(args[15], "so_block", "threshold_v", &thr_fixed) < 0
        || arg_double(args[16], "so_block", "scale", &scale) < 0
        || arg_double(args[17], "so_block", "floor_v", &floor_v) < 0
        || arg_double(args[18], "so_block", "refractory_s", &refr) < 0) return NULL;
    /* the filter banks: the band-pass, and the two gate banks (both or neither) */
    static const char *bank_names[3] = {"filt", "gate_slow", "gate_fast"};
    FilterBank *bank[3] = {NULL, NULL, NULL};
    const int gated = args[5] != Py_None || args[6] != Py_None;
    for (int b = 0; b < (gated ? 3 : 1); b++) {
        if (!PyObject_TypeCheck(args[4 + b], &FilterBankType)) {
            PyErr_Format(PyExc_TypeError, "so_block: %s must be a FilterBank%s, got %.100s",
                         bank_names[b], b ? " (or both gate banks None)" : "",
                         Py_TYPE(args[4 + b])->tp_name);
            return NULL;
        }
        bank[b] = (FilterBank *)args[4 + b];
        if (check_ready(bank[b]) < 0) return NULL;
    }
    const Py_ssize_t k = bank[0]->n_channels;
    for (int b = 1; gated && b < 3; b++) {
        if (bank[b]->n_channels != k || bank[b]->window < 1 || bank[b] == bank[0]
            || bank[1] == bank[2]) {
            PyErr_Format(PyExc_ValueError,
                         "so_block: %s must be a distinct FilterBank with %zd channels and "
                         "window >= 1", bank_names[b], k);
            return NULL;
        }
    }
    const int adaptive = args[9] != Py_None;
    if (adaptive && step < 1) {
        PyErr_Format(PyExc_ValueError, "so_block: step must be >= 1, got %zd", step);
        return NULL;
    }
    if (first < 0) {
        PyErr_Format(PyExc_ValueError, "so_block: first must be >= 0, got %zd", first);
        return NULL;
    }
    /* cols are copied while the GIL is held (the array could change under another thread
     * once it is released); k is the bank's channel count, so cols must have k entries */
    Py_ssize_t cols_stack[PICK_STACK], *cols = cols_stack;
    long long pos_stack[PICK_STACK], *lp = pos_stack;
    SoFound found_stack[PICK_STACK], *found = found_stack;
    enum { SAMPLES, T, WORK, STATE, RING, POS, COUNT, EXCL, MEDIAN, NB };
    Py_buffer v[NB];
    int have[NB] = {0};
    PyObject *result = NULL;
    int entered = 0;
    Py_ssize_t n = 0, ncol = 0, cap = 0, length = 0, n_found = 0;
    {
        Py_buffer cv;
        if (get_vector(args[1], &cv, 1, "cols") < 0) return NULL;
        if (cv.shape[0] != k) {
            PyErr_Format(PyExc_ValueError, "so_block: cols must hold %zd column indices, got %zd",
                         k, cv.shape[0]);
            PyBuffer_Release(&cv);
            return NULL;
        }
        if (k > PICK_STACK && (cols = PyMem_Malloc((size_t)k * sizeof(Py_ssize_t))) == NULL) {
            PyBuffer_Release(&cv);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t j = 0; j < k; j++) cols[j] = (Py_ssize_t)((const long long *)cv.buf)[j];
        PyBuffer_Release(&cv);
    }
    if (PyObject_GetBuffer(args[0], &v[SAMPLES], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "samples must be a C-contiguous float64 array");
        goto done;
    }
    have[SAMPLES] = 1;
    if (!is_8byte(&v[SAMPLES], 0) || v[SAMPLES].ndim != 2) {
        PyErr_SetString(PyExc_TypeError, "samples must be a 2-D float64 array (n, n_columns)");
        goto done;
    }
    n = v[SAMPLES].shape[0];
    ncol = v[SAMPLES].shape[1];
    for (Py_ssize_t j = 0; j < k; j++) {
        if (cols[j] < 0 || cols[j] >= ncol) {
            PyErr_Format(PyExc_ValueError, "so_block: cols[%zd] = %zd is not a column of "
                         "samples (0..%zd)", j, cols[j], ncol - 1);
            goto done;
        }
    }
    if (get_rule_buf(args[2], &v[T], 0, 0, 1, n, "t") < 0) goto done;
    have[T] = 1;
    if (PyObject_GetBuffer(args[7], &v[WORK],
                           PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "work must be a C-contiguous, writable float64 array");
        goto done;
    }
    have[WORK] = 1;
    if (!is_8byte(&v[WORK], 0) || v[WORK].ndim != 3 || v[WORK].shape[0] != SO_PLANES
        || v[WORK].shape[1] < n || v[WORK].shape[2] != k) {
        PyErr_Format(PyExc_ValueError, "work must be a float64 array of shape (%d, >= %zd, %zd)",
                     SO_PLANES, n, k);
        goto done;
    }
    cap = v[WORK].shape[1];
    {   /* the picked columns are written into work while samples is read */
        const char *s0 = (const char *)v[SAMPLES].buf, *s1 = s0 + v[SAMPLES].len;
        const char *w0 = (const char *)v[WORK].buf, *w1 = w0 + v[WORK].len;
        if (w0 < s1 && s0 < w1) {
            PyErr_SetString(PyExc_ValueError, "work must not share memory with samples");
            goto done;
        }
    }
    const int scan = args[8] != Py_None;
    if (scan) {
        if (get_rule_buf(args[8], &v[STATE], 1, 0, k, 5, "state") < 0) goto done;
        have[STATE] = 1;
    }
    if (adaptive) {
        length = get_ring(args[9], &v[RING], k, "", " (or None)");
        if (length < 0) goto done;
        have[RING] = 1;
        static const int arg_of[4] = {10, 11, 12, 13};
        static const int is_int[4] = {1, 1, 0, 0};
        static const int writable[4] = {1, 1, 0, 0};
        static const char *names[4] = {"pos", "count", "excl", "median"};
        for (int b = 0; b < 4; b++) {
            if (get_rule_buf(args[arg_of[b]], &v[POS + b], writable[b], is_int[b], 1, k,
                             names[b]) < 0) goto done;
            have[POS + b] = 1;
        }
        /* the ring positions are copied and checked while the GIL is held, and only the
         * copy indexes the ring */
        if (k > PICK_STACK && (lp = PyMem_Malloc((size_t)k * sizeof(long long))) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        memcpy(lp, v[POS].buf, (size_t)k * sizeof(long long));
        for (Py_ssize_t j = 0; j < k; j++) {
            if (lp[j] < 0 || lp[j] >= length) {
                PyErr_Format(PyExc_ValueError, "pos[%zd] = %lld is outside the ring (0..%zd)",
                             j, lp[j], length - 1);
                goto done;
            }
        }
    }
    /* a channel ends at most one down state per three samples (below, back up, re-armed
     * above zero), so n * k records always suffice */
    if (n * k > PICK_STACK
        && (found = PyMem_Malloc((size_t)(n * k) * sizeof(SoFound))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int b = 0; b < (gated ? 3 : 1); b++) {
        if (enter(bank[b]) < 0) {
            for (int r = 0; r < b; r++) bank[r]->busy = 0;
            goto done;
        }
    }
    entered = 1;
    WORK_BEGIN(n * k)
    const double *src = (const double *)v[SAMPLES].buf, *t = (const double *)v[T].buf;
    double *w = (double *)v[WORK].buf;
    double *x = w, *y = w + cap * k, *gf = w + 2 * cap * k, *gs = w + 3 * cap * k,
           *gh = w + 4 * cap * k, *thr = w + 5 * cap * k;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *row = src + i * ncol;
        for (Py_ssize_t j = 0; j < k; j++) x[i * k + j] = row[cols[j]];
    }
    /* the same kernels, in the same order, as SosFilter.process and
     * BandEnvelope.process_envelope: the results are bit-identical to the Python path */
    sos_block(bank[0], x, y, n);
    if (gated) {
        sos_block(bank[1], x, gf, n);
        rms_block(bank[1], gf, gs, n);
        sos_block(bank[2], x, gf, n);
        rms_block(bank[2], gf, gh, n);
    }
    if (adaptive) {
        /* RobustBaseline.process(absolute=True) without an update point: the statistics
         * in force are constant over the block, and |y| is pushed at decimation points */
        double *ring = (double *)v[RING].buf;
        long long *count = (long long *)v[COUNT].buf;
        const double *excl = (const double *)v[EXCL].buf, *med = (const double *)v[MEDIAN].buf;
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
            const double a = med[j] * scale;
            const double th = (isnan(a) || a < floor_v) ? a : floor_v;
            for (Py_ssize_t i = 0; i < n; i++) thr[i * k + j] = th;
        }
    } else {
        for (Py_ssize_t q = 0; q < n * k; q++) thr[q] = thr_fixed;
    }
    /* The down-state machine of SlowOscDetector._scan, one sample at a time. In a down
     * state the trough is the first minimum of each stretch of samples the scan looks at
     * in one go (to the up-crossing or the block's end), kept only if below the trough so
     * far -- which is np.argmin's answer, including its NaN rule (a NaN in the stretch is
     * its minimum, and NaN < trough is false: the stretch changes nothing). */
    double *st = scan ? (double *)v[STATE].buf : NULL;
    for (Py_ssize_t j = 0; scan && j < k; j++) {
        double *s = st + 5 * j;     /* state, onset_s, trough_v, trough_s, rearm_s */
        double mode = s[0], cand_v = s[2], cand_t = s[3];
        int cand_nan = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
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
    WORK_END
    if (adaptive) memcpy(v[POS].buf, lp, (size_t)k * sizeof(long long));
    result = PyTuple_New(n_found);
    for (Py_ssize_t a = 0; result != NULL && a < n_found; a++) {
        PyObject *item = Py_BuildValue("(nnddd)", found[a].i, found[a].ch, found[a].onset,
                                       found[a].trough_v, found[a].trough_t);
        if (item == NULL) Py_CLEAR(result);
        else PyTuple_SET_ITEM(result, a, item);
    }
done:
    if (entered) for (int b = 0; b < (gated ? 3 : 1); b++) bank[b]->busy = 0;
    for (int b = 0; b < NB; b++) if (have[b]) PyBuffer_Release(&v[b]);
    if (cols != cols_stack) PyMem_Free(cols);
    if (lp != pos_stack) PyMem_Free(lp);
    if (found != found_stack) PyMem_Free(found);
    return result;
}

static PyMethodDef filters_functions[] = {
    {"median_mad", (PyCFunction)(void (*)(void))filters_median_mad, METH_FASTCALL,
     median_mad_doc},
    {"quadrature_sums", (PyCFunction)(void (*)(void))filters_quadrature_sums, METH_FASTCALL,
     quadrature_sums_doc},
    {"echt_push", (PyCFunction)(void (*)(void))filters_echt_push, METH_FASTCALL,
     echt_push_doc},
    {"echt_estimate", (PyCFunction)(void (*)(void))filters_echt_estimate, METH_FASTCALL,
     echt_estimate_doc},
    {"threshold_runs", (PyCFunction)(void (*)(void))filters_threshold_runs, METH_FASTCALL,
     threshold_runs_doc},
    {"baseline_runs", (PyCFunction)(void (*)(void))filters_baseline_runs, METH_FASTCALL,
     baseline_runs_doc},
    {"ripple_front", (PyCFunction)(void (*)(void))filters_ripple_front, METH_FASTCALL,
     ripple_front_doc},
    {"ripple_candidate", (PyCFunction)(void (*)(void))filters_ripple_candidate, METH_FASTCALL,
     ripple_candidate_doc},
    {"spindle_runs", (PyCFunction)(void (*)(void))filters_spindle_runs, METH_FASTCALL,
     spindle_runs_doc},
    {"spindle_block", (PyCFunction)(void (*)(void))filters_spindle_block, METH_FASTCALL,
     spindle_block_doc},
    {"rearm_index", (PyCFunction)(void (*)(void))filters_rearm_index, METH_FASTCALL,
     rearm_index_doc},
    {"first_at_or_after", (PyCFunction)(void (*)(void))filters_first_at_or_after,
     METH_FASTCALL, first_at_or_after_doc},
    {"so_block", (PyCFunction)(void (*)(void))filters_so_block, METH_FASTCALL,
     so_block_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef filters_module = {
    PyModuleDef_HEAD_INIT, "_filters",
    "engramloop C filter bank (SOS cascades and moving RMS, GIL released for large blocks).", -1,
    filters_functions,
};

PyMODINIT_FUNC
PyInit__filters(void)
{
    if (PyType_Ready(&FilterBankType) < 0) return NULL;
    PyObject *m = PyModule_Create(&filters_module);
    if (m == NULL) return NULL;
    Py_INCREF(&FilterBankType);
    if (PyModule_AddObject(m, "FilterBank", (PyObject *)&FilterBankType) < 0) {
        Py_DECREF(&FilterBankType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
