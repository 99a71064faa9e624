/*
 * engramloop C kernels, so.c. The slow-oscillation detector's kernel: so_block (filter,
 * gate, baseline and down-state search of one block in one call).
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

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

PyMethodDef so_functions[] = {
    {"so_block", (PyCFunction)(void (*)(void))filters_so_block, METH_FASTCALL,
     so_block_doc},
    {NULL, NULL, 0, NULL},
};
