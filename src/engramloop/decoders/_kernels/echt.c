/*
 * engramloop C kernels, echt.c. The ECHT phase estimator's kernels: echt_push (anti-alias,
 * decimate and ring the newest samples of one channel) and echt_estimate (phase,
 * frequency, amplitude and confidence from the ring).
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

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

PyMethodDef echt_functions[] = {
    {"echt_push", (PyCFunction)(void (*)(void))filters_echt_push, METH_FASTCALL,
     echt_push_doc},
    {"echt_estimate", (PyCFunction)(void (*)(void))filters_echt_estimate, METH_FASTCALL,
     echt_estimate_doc},
    {NULL, NULL, 0, NULL},
};
