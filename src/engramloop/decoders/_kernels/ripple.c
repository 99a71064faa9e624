/*
 * engramloop C kernels, ripple.c. The ripple detector's kernels: ripple_front (pick,
 * filter, envelope, baseline and runs of one chunk in one call), ripple_candidate (the
 * envelope rule with the theta/delta gate), rearm_index.
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

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
    {"ripple_front", (PyCFunction)(void (*)(void))filters_ripple_front, METH_FASTCALL,
     ripple_front_doc},
    {"ripple_candidate", (PyCFunction)(void (*)(void))filters_ripple_candidate, METH_FASTCALL,
     ripple_candidate_doc},
    {"rearm_index", (PyCFunction)(void (*)(void))filters_rearm_index, METH_FASTCALL,
     rearm_index_doc},
    {NULL, NULL, 0, NULL},
};
