/*
 * engramloop C kernels, spindle.c. The spindle detector's kernels: SpindlePlan (the fused
 * chunk -- pick, filters, envelopes, quadrature sums, baseline push and rules in one call
 * -- with its banks and buffers checked and bound once, so run() per chunk checks only
 * the chunk), spindle_runs (the rules on precomputed features, for a chunk with a baseline
 * update point) and quadrature_sums (the sigma-band quadrature sums, on their own).
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

/* The scalar parameters of the spindle rules, args[0..8] = k_lo, k_hi, rel_min, corr_min,
 * alpha_max, min_n, max_n, k_art, hold_n (the order of spindle_runs and SpindlePlan). */
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

/* What the gates passed over, counted per channel when the caller gives a tally (4, c)
 * int64 after the hold row -- nothing is passed over silently: row T_FLAGS holds the
 * current run's and channel's state bits, T_ALPHA the runs that met every firing rule but
 * the alpha veto at some sample and never met them all (candidates the veto passed over),
 * T_ART the artefact stretches (a sample beyond k_art SDs after one that was not held),
 * T_HELD the samples held (artefact and hold). */
enum { T_FLAGS, T_ALPHA, T_ART, T_HELD, T_ROWS };
enum {
    F_VETOED = 1,         /* this run met every rule but the alpha veto at some sample */
    F_FIRED = 2,          /* this run met every rule at some sample */
    F_LAST_VETOED = 4,    /* the latest run that ended was passed over by the veto */
    F_HELD = 8,           /* the previous sample was held */
};

/* The loop of spindle_runs over one block of n rows of c channels (pm: 4c columns; ea may
 * be NULL), shared with SpindlePlan so both evaluate the rules with the same operations
 * in the same order. Raises *best and adds to *n_fire; counts into tally (T_ROWS, c)
 * unless it is NULL (the counting changes no run and no fire). Needs no GIL. */
static void
spindle_rules(const SpindleRules *rl, const double *env, const double *eb, const double *es,
              const double *pm, const double *ea, const double *med, const double *sd,
              Py_ssize_t n, Py_ssize_t c, long long *carry, long long *hold, long long *runs,
              long long *fire, long long *best_out, long long *n_fire_out, long long *tally)
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
            long long *fl = tally != NULL ? tally + T_FLAGS * c + j : NULL;
            if (fl != NULL) {
                if (held) {
                    if (!(*fl & F_HELD)) tally[T_ART * c + j]++;
                    tally[T_HELD * c + j]++;
                    *fl |= F_HELD;
                } else {
                    *fl &= ~(long long)F_HELD;
                }
                if (r == 0 && carry[j] > 0) {        /* a run ended */
                    if ((*fl & (F_VETOED | F_FIRED)) == F_VETOED) {
                        tally[T_ALPHA * c + j]++;
                        *fl |= F_LAST_VETOED;
                    }
                    *fl &= ~(long long)(F_VETOED | F_FIRED);
                }
            }
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
                if (ok && ea != NULL) {
                    const int passed = ea[q] <= amax * e;
                    if (fl != NULL && !passed) *fl |= F_VETOED;
                    ok = passed;
                }
                if (fl != NULL && ok) *fl = (*fl | F_FIRED) & ~(long long)F_LAST_VETOED;
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
"samples of hold left into the next block). `hold` may instead be (5, c) int64: row 0 the\n"
"hold, rows 1-4 what the gates passed over, counted per channel and carried across blocks:\n"
"state bits, the runs that met every firing rule but the alpha veto at some sample and\n"
"never all of them (counted when the run ends), the artefact stretches, the held samples.\n"
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
        Py_ssize_t rows = b == 0 || b == 8 ? -1 : (b == 7 ? 1 : n);
        Py_ssize_t cols = b == 3 ? 4 * c : c;
        if (get_rule_buf(args[arg_of[b]], &bufs[b], is_int, is_int, rows, cols,
                         names[b]) < 0) {
            for (int r = 0; r < b; r++) if (have[r]) PyBuffer_Release(&bufs[r]);
            return NULL;
        }
        have[b] = 1;
        if (b == 0) n = bufs[0].ndim == 2 ? bufs[0].shape[0] : 1;
        if (b == 8) {
            const Py_ssize_t hr = bufs[8].ndim == 2 ? bufs[8].shape[0] : 1;
            if (hr != 1 && hr != 1 + T_ROWS) {
                PyErr_Format(PyExc_ValueError, "hold must have shape (%zd,) or (%d, %zd)", c,
                             1 + T_ROWS, c);
                for (int r = 0; r <= b; r++) if (have[r]) PyBuffer_Release(&bufs[r]);
                return NULL;
            }
        }
    }
    long long *tally = (bufs[8].ndim == 2 && bufs[8].shape[0] == 1 + T_ROWS)
                       ? (long long *)bufs[8].buf + c : NULL;
    long long best = 0, n_fire = 0;
    WORK_BEGIN(n * c)
    spindle_rules(&rules, (const double *)bufs[0].buf, (const double *)bufs[1].buf,
                  (const double *)bufs[2].buf, (const double *)bufs[3].buf,
                  (const double *)bufs[4].buf, (const double *)bufs[5].buf,
                  (const double *)bufs[6].buf, n, c, (long long *)bufs[7].buf,
                  (long long *)bufs[8].buf, (long long *)bufs[9].buf,
                  (long long *)bufs[10].buf, &best, &n_fire, tally);
    WORK_END
    for (int r = 0; r < NB; r++) if (have[r]) PyBuffer_Release(&bufs[r]);
    return Py_BuildValue("(LL)", best, n_fire);
}

/* q, the four sums and (unless amp is NULL) the amplitude of quadrature_sums over one block
 * of n rows of c channels, g = 1 / (2 sin(w0 / 2)), gi = 1 / (2 cos(w0 / 2)); shared with
 * SpindlePlan so both compute them with the same operations. Needs no GIL. */
void
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

/* Number of (cap, width * c) blocks of SpindlePlan's float64 work array, in units of
 * cap rows of c values: xb eb xs es (1 each), sums, pm (4 each), amp env xa ea med sd (1
 * each). decoders/spindle.py splits its views in the same order. */
#define SPINDLE_WORK_ROWS 18

/* The FilterBank argument `name` of SpindlePlan: n_ch channels, an RMS window and, for
 * the moving-RMS-only banks (no_sections), no filter. NULL with the error set. */
static FilterBank *
spindle_bank(PyObject *obj, const char *fn, const char *name, Py_ssize_t n_ch, int no_sections)
{
    if (!PyObject_TypeCheck(obj, &FilterBankType)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a FilterBank, got %.100s", fn,
                     name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    FilterBank *b = (FilterBank *)obj;
    if (check_ready(b) < 0) return NULL;
    if (b->n_channels != n_ch || b->window < 1 || (no_sections && b->n_sections != 0)) {
        PyErr_Format(PyExc_ValueError,
                     "%s: %s must be a bank of %zd channels with an RMS window%s, "
                     "got %zd channels, window %zd, %zd sections", fn, name, n_ch,
                     no_sections ? " and no sections" : "", b->n_channels, b->window,
                     b->n_sections);
        return NULL;
    }
    return b;
}

/* What a SpindlePlan works on once its arguments are checked: the banks, the column
 * indices, the scalars and the raw buffers. */
typedef struct {
    FilterBank *bank[5];        /* broad, sigma, pm, env, alpha (NULL without alpha) */
    int n_banks;
    Py_ssize_t c, cap, length, step;
    const Py_ssize_t *cols;
    double w0;
    SpindleRules rl;
    double *work, *xs_last, *ring;
    long long *iwork, *runstate, *count;
    long long *tally;           /* runstate rows 2.. when it has them, else NULL */
    const double *excl, *med, *sd;
} SpindleBind;

/* SpindlePlan.run's work on a checked block src (n, ncol): every step, in the order of
 * the separate calls; lp: the ring positions, checked (rules only). Needs no GIL. */
static void
spindle_compute(const SpindleBind *s, const double *src, Py_ssize_t n, Py_ssize_t ncol,
                Py_ssize_t first, int rules, long long *lp, long long *best, long long *n_fire)
{
    const Py_ssize_t c = s->c, cap = s->cap, length = s->length, step = s->step;
    const Py_ssize_t *cols = s->cols;
    const double w0 = s->w0;
    double *w = s->work;
    const Py_ssize_t blk = cap * c;      /* one (cap, c) block of work */
    double *xb = w, *eb = w + blk, *xs = w + 2 * blk, *es = w + 3 * blk, *sums = w + 4 * blk,
           *pmo = w + 8 * blk, *amp = w + 12 * blk, *env = w + 13 * blk, *xa = w + 14 * blk,
           *ea = w + 15 * blk, *mo = w + 16 * blk, *so = w + 17 * blk;
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t j = 0; j < c; j++) xb[i * c + j] = src[i * ncol + cols[j]];
    /* the order of the separate calls: broadband, sigma out of the broadband, the
     * quadrature sums and amplitude, their moving RMS, then alpha out of the broadband */
    sos_block(s->bank[0], xb, xb, n);
    rms_block(s->bank[0], xb, eb, n);
    sos_block(s->bank[1], xb, xs, n);
    rms_block(s->bank[1], xs, es, n);
    quadrature_rows(xs, xb, s->xs_last, 0.5 / sin(0.5 * w0), 0.5 / cos(0.5 * w0),
                    n, c, sums, amp);
    rms_block(s->bank[2], sums, pmo, n);
    rms_block(s->bank[3], amp, env, n);
    if (s->n_banks == 5) {
        sos_block(s->bank[4], xb, xa, n);
        rms_block(s->bank[4], xa, ea, n);
    }
    if (rules) {
        /* RobustBaseline.process for a block without an update point: the statistics in
         * force copied per row, the decimated envelope pushed unless above the exclusion */
        const double *excl = s->excl, *med = s->med, *sd = s->sd;
        double *ring = s->ring;
        long long *count = s->count;
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
        long long *st = s->runstate, *iw = s->iwork;
        spindle_rules(&s->rl, env, eb, es, pmo, s->n_banks == 5 ? ea : NULL, mo, so, n, c, st,
                      st + c, iw, iw + cap * c, best, n_fire, s->tally);
    }
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

/* ------------------------------------------------------------------ SpindlePlan */

/* The spindle detector's fused chunk with its arguments bound once: the plan holds the
 * banks and a view of every buffer for its whole life, checked when it is built; run()
 * checks only the chunk (and the ring positions, which Python code may also move). */
enum { P_WORK, P_IWORK, P_LAST, P_STATE, P_RING, P_POS, P_COUNT, P_EXCL, P_MED, P_SD, P_NB };

typedef struct {
    PyObject_HEAD
    SpindleBind s;
    PyObject *keep[5];          /* the banks, referenced for the plan's life */
    Py_buffer v[P_NB];
    int have[P_NB];
    Py_ssize_t *cols;           /* owned copy of the column indices */
    Py_ssize_t max_col;
    long long *lp;              /* scratch copy of the ring positions */
    int busy;
} SpindlePlan;

static void
plan_clear(SpindlePlan *self)
{
    for (int b = 0; b < P_NB; b++) {
        if (self->have[b]) PyBuffer_Release(&self->v[b]);
        self->have[b] = 0;
    }
    for (int b = 0; b < 5; b++) Py_CLEAR(self->keep[b]);
    PyMem_Free(self->cols);
    PyMem_Free(self->lp);
    self->cols = NULL;
    self->lp = NULL;
    memset(&self->s, 0, sizeof(self->s));
}

static void
SpindlePlan_dealloc(SpindlePlan *self)
{
    plan_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
SpindlePlan_init(SpindlePlan *self, PyObject *args, PyObject *kwds)
{
    static const char *fn = "SpindlePlan";
    if (kwds != NULL && PyDict_Size(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "SpindlePlan takes no keyword arguments");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "SpindlePlan is running in another thread");
        return -1;
    }
    plan_clear(self);
    if (PyTuple_GET_SIZE(args) != 27) {
        PyErr_SetString(PyExc_TypeError,
                        "SpindlePlan(cols, broad, sigma, alpha, pm, env, w0, xs_last, work, "
                        "iwork, runstate, step, ring, pos, count, excl, median, sd, k_lo, "
                        "k_hi, rel_min, corr_min, alpha_max, min_n, max_n, k_art, hold_n) "
                        "takes 27 arguments");
        return -1;
    }
    PyObject *const *a = &PyTuple_GET_ITEM(args, 0);
    SpindleBind *s = &self->s;
    double w0;
    Py_ssize_t step;
    SpindleRules rl;
    if (arg_double(a[6], fn, "w0", &w0) < 0 || arg_ssize(a[11], fn, "step", &step) < 0
        || arg_spindle_rules(a + 18, fn, &rl) < 0) return -1;
    if (!(w0 > 0.0 && w0 < Py_MATH_PI) || step < 1) {
        PyErr_Format(PyExc_ValueError, "SpindlePlan: w0 must be in (0, pi) radians per sample "
                     "and step >= 1, got w0 %R, step %zd", a[6], step);
        return -1;
    }
    if (!PyObject_TypeCheck(a[1], &FilterBankType)) {
        PyErr_Format(PyExc_TypeError, "SpindlePlan: broad must be a FilterBank, got %.100s",
                     Py_TYPE(a[1])->tp_name);
        return -1;
    }
    const Py_ssize_t c = ((FilterBank *)a[1])->n_channels;
    static const char *bank_name[5] = {"broad", "sigma", "pm", "env", "alpha"};
    static const int bank_arg[5] = {1, 2, 4, 5, 3};
    const int n_banks = a[3] == Py_None ? 4 : 5;
    FilterBank *bank[5] = {NULL, NULL, NULL, NULL, NULL};
    for (int b = 0; b < n_banks; b++) {
        bank[b] = spindle_bank(a[bank_arg[b]], fn, bank_name[b], b == 2 ? 4 * c : c,
                               b == 2 || b == 3);
        if (bank[b] == NULL) return -1;
        for (int o = 0; o < b; o++) {
            if (bank[o] == bank[b]) {
                PyErr_Format(PyExc_ValueError, "SpindlePlan: %s and %s must be distinct "
                             "FilterBanks (each keeps its own state)", bank_name[o],
                             bank_name[b]);
                return -1;
            }
        }
    }
    {
        Py_buffer cv;
        if (get_vector(a[0], &cv, 1, "cols") < 0) return -1;
        if (cv.shape[0] != c) {
            PyErr_Format(PyExc_ValueError, "SpindlePlan: cols must hold %zd column indices, "
                         "got %zd", c, cv.shape[0]);
            PyBuffer_Release(&cv);
            return -1;
        }
        self->cols = PyMem_Malloc((size_t)(c > 0 ? c : 1) * sizeof(Py_ssize_t));
        self->lp = PyMem_Malloc((size_t)(c > 0 ? c : 1) * sizeof(long long));
        if (self->cols == NULL || self->lp == NULL) {
            PyBuffer_Release(&cv);
            plan_clear(self);
            PyErr_NoMemory();
            return -1;
        }
        self->max_col = -1;
        for (Py_ssize_t j = 0; j < c; j++) {
            const long long cj = ((const long long *)cv.buf)[j];
            if (cj < 0) {
                PyErr_Format(PyExc_ValueError, "SpindlePlan: cols[%zd] = %lld is negative", j,
                             cj);
                PyBuffer_Release(&cv);
                plan_clear(self);
                return -1;
            }
            self->cols[j] = (Py_ssize_t)cj;
            if (self->cols[j] > self->max_col) self->max_col = self->cols[j];
        }
        PyBuffer_Release(&cv);
    }
    /* the buffers, each checked once: argument index, writable, int64, rows, name */
    static const int arg_of[P_NB] = {8, 9, 7, 10, 12, 13, 14, 15, 16, 17};
    static const int writable[P_NB] = {1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
    static const int is_int[P_NB] = {0, 1, 0, 1, 0, 1, 1, 0, 0, 0};
    static const char *name[P_NB] = {"work", "iwork", "xs_last", "runstate", "ring", "pos",
                                     "count", "excl", "median", "sd"};
    Py_ssize_t cap = 0, length = 0;
    for (int b = 0; b < P_NB; b++) {
        Py_ssize_t rows = 1;
        if (b == P_WORK) rows = -1;
        else if (b == P_IWORK) rows = 2 * cap;
        else if (b == P_STATE) rows = -1;
        if (b == P_RING) {
            length = get_ring(a[arg_of[b]], &self->v[b], c, "SpindlePlan: ", "");
            if (length < 0) { plan_clear(self); return -1; }
        } else if (get_rule_buf(a[arg_of[b]], &self->v[b], writable[b], is_int[b], rows, c,
                                name[b]) < 0) {
            plan_clear(self);
            return -1;
        }
        self->have[b] = 1;
        if (b == P_STATE) {
            const Py_buffer *st = &self->v[b];
            const Py_ssize_t sr = st->ndim == 2 ? st->shape[0] : 1;
            if (sr != 2 && sr != 2 + T_ROWS) {
                PyErr_Format(PyExc_ValueError, "SpindlePlan: runstate must have shape (2, %zd) "
                             "or (%d, %zd)", c, 2 + T_ROWS, c);
                plan_clear(self);
                return -1;
            }
        }
        if (b == P_WORK) {
            const Py_buffer *w = &self->v[b];
            cap = w->ndim == 2 ? w->shape[0] / SPINDLE_WORK_ROWS : 0;
            if (w->ndim != 2 || w->shape[0] % SPINDLE_WORK_ROWS || cap < 1) {
                PyErr_Format(PyExc_ValueError, "SpindlePlan: work must have shape (%d * cap, "
                             "%zd) with cap >= 1 samples", SPINDLE_WORK_ROWS, c);
                plan_clear(self);
                return -1;
            }
        }
    }
    /* no written buffer may share memory with another buffer */
    for (int i = 0; i < P_NB; i++) {
        const char *a0 = (const char *)self->v[i].buf, *a1 = a0 + self->v[i].len;
        for (int j = i + 1; j < P_NB; j++) {
            const char *b0 = (const char *)self->v[j].buf, *b1 = b0 + self->v[j].len;
            if ((writable[i] || writable[j]) && b0 < a1 && a0 < b1) {
                PyErr_Format(PyExc_ValueError, "SpindlePlan: %s and %s share memory", name[i],
                             name[j]);
                plan_clear(self);
                return -1;
            }
        }
    }
    for (int b = 0; b < n_banks; b++) {
        Py_INCREF((PyObject *)bank[b]);
        self->keep[b] = (PyObject *)bank[b];
        s->bank[b] = bank[b];
    }
    s->n_banks = n_banks;
    s->c = c; s->cap = cap; s->length = length; s->step = step; s->cols = self->cols;
    s->w0 = w0; s->rl = rl;
    s->work = (double *)self->v[P_WORK].buf;
    s->iwork = (long long *)self->v[P_IWORK].buf;
    s->xs_last = (double *)self->v[P_LAST].buf;
    s->runstate = (long long *)self->v[P_STATE].buf;
    s->tally = (self->v[P_STATE].ndim == 2 && self->v[P_STATE].shape[0] == 2 + T_ROWS)
               ? s->runstate + 2 * c : NULL;
    s->ring = (double *)self->v[P_RING].buf;
    s->count = (long long *)self->v[P_COUNT].buf;
    s->excl = (const double *)self->v[P_EXCL].buf;
    s->med = (const double *)self->v[P_MED].buf;
    s->sd = (const double *)self->v[P_SD].buf;
    return 0;
}

PyDoc_STRVAR(plan_run_doc,
"run(samples, first, rules) -> (longest, n_fire) or None\n\n"
"One chunk of the spindle detector in one call, the same operations in the same order as\n"
"its separate steps, on the bound arguments. samples (n, C) float64 C-contiguous volts,\n"
"n <= cap, with every bound column; first: the absolute index of its first sample (>= 0).\n"
"With c = broad.n_channels and cap = len(work) / 18, work (18 cap, c) float64 holds, each\n"
"C-contiguous and filled in its first n rows, the blocks xb, eb, xs, es (cap, c), sums, pm\n"
"(cap, 4c), amp, env, xa, ea, med, sd (cap, c); iwork (2 cap, c) int64 holds runs, fire\n"
"(cap, c). Steps:\n"
"- pick: column j of the bank input is samples[:, cols[j]] (cols (c,) int64);\n"
"- broad.process_rms(picked, xb, eb); sigma.process_rms(xb, xs, es);\n"
"- quadrature_sums(xs, xb, xs_last, w0, sums, amp) (w0 radians per sample, xs_last (c,)\n"
"  float64 updated);\n"
"- pm.process_rms(sums, sums, pm) (pm: 4c channels, no sections); env.process_rms(amp, amp,\n"
"  env) (c channels, no sections);\n"
"- unless alpha is None, alpha.process_rms(xb, xa, ea).\n"
"The filter banks keep their state as with the separate calls. When rules is false that is\n"
"all and None is returned. Else, for a block with no baseline update point\n"
"(RobustBaseline.process with absolute=False): med/sd rows = median, sd (c,) float64;\n"
"every sample whose absolute index first + i is a multiple of `step` is pushed per channel\n"
"into ring (c, L) at pos (advancing it, count += 1; pos, count (c,) int64) unless env >\n"
"excl (c,) (NaN is not kept); then spindle_runs(env, eb, es, pm, ea (None without alpha),\n"
"med, sd, k_lo, ..., hold_n, runstate[0], runstate[1:], runs, fire) with runstate (2, c)\n"
"int64 = carry, hold, or (6, c) with rows 2-5 spindle_runs' counts of what the gates\n"
"passed over. Returns (largest run, number of fire samples).");

static PyObject *
SpindlePlan_run(SpindlePlan *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *fn = "SpindlePlan.run";
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "SpindlePlan.run(samples, first, rules) takes 3 "
                                         "arguments");
        return NULL;
    }
    const SpindleBind *s = &self->s;
    if (s->cols == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "SpindlePlan.__init__ was not called");
        return NULL;
    }
    Py_ssize_t first;
    if (arg_ssize(args[1], fn, "first", &first) < 0) return NULL;
    const int rules = PyObject_IsTrue(args[2]);
    if (rules < 0) return NULL;
    if (rules && first < 0) {
        PyErr_Format(PyExc_ValueError, "SpindlePlan.run: first must be >= 0, got %zd", first);
        return NULL;
    }
    Py_buffer sv;
    if (PyObject_GetBuffer(args[0], &sv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "SpindlePlan.run: samples must be a C-contiguous "
                        "float64 array");
        return NULL;
    }
    const Py_ssize_t c = s->c;
    PyObject *result = NULL;
    int entered = 0;
    if (!is_8byte(&sv, 0) || sv.ndim != 2) {
        PyErr_SetString(PyExc_TypeError, "SpindlePlan.run: samples must be a 2-D float64 "
                        "array (n_samples, n_columns)");
        goto done;
    }
    const Py_ssize_t n = sv.shape[0], ncol = sv.shape[1];
    if (self->max_col >= ncol || n > s->cap) {
        PyErr_Format(PyExc_ValueError, "SpindlePlan.run: samples (%zd, %zd) must have at most "
                     "%zd rows (the plan's work) and column %zd", n, ncol, s->cap,
                     self->max_col);
        goto done;
    }
    {
        const char *s0 = (const char *)sv.buf, *s1 = s0 + sv.len;
        const char *w0p = (const char *)self->v[P_WORK].buf;
        const char *w1p = w0p + self->v[P_WORK].len;
        if (w0p < s1 && s0 < w1p) {
            PyErr_SetString(PyExc_ValueError, "SpindlePlan.run: samples must not share "
                            "memory with work");
            goto done;
        }
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "SpindlePlan is already running in another "
                                            "thread; use one plan per thread");
        goto done;
    }
    if (rules) {
        /* the ring positions are copied and checked (Python code moves them too) */
        memcpy(self->lp, self->v[P_POS].buf, (size_t)c * sizeof(long long));
        for (Py_ssize_t j = 0; j < c; j++) {
            if (self->lp[j] < 0 || self->lp[j] >= s->length) {
                PyErr_Format(PyExc_ValueError, "SpindlePlan.run: pos[%zd] = %lld is outside "
                             "the ring (0..%zd)", j, self->lp[j], s->length - 1);
                goto done;
            }
        }
    }
    /* a bound bank's __init__ may have been called again: its arrays must still have the
     * shape the plan was checked against */
    for (int b = 0; b < s->n_banks; b++) {
        const FilterBank *bk = s->bank[b];
        if (bk->coef == NULL || bk->n_channels != (b == 2 ? 4 * c : c) || bk->window < 1
            || ((b == 2 || b == 3) && bk->n_sections != 0)) {
            PyErr_Format(PyExc_RuntimeError, "SpindlePlan.run: a bound bank (%d of broad, "
                         "sigma, pm, env, alpha) was re-initialised with another shape since "
                         "the plan was built; build a new plan", b);
            goto done;
        }
    }
    for (; entered < s->n_banks; entered++)
        if (enter(s->bank[entered]) < 0) goto done;
    self->busy = 1;
    long long best = 0, n_fire = 0;
    WORK_BEGIN(n * c)
    spindle_compute(s, (const double *)sv.buf, n, ncol, first, rules, self->lp, &best,
                    &n_fire);
    WORK_END
    self->busy = 0;
    if (rules) {
        memcpy(self->v[P_POS].buf, self->lp, (size_t)c * sizeof(long long));
        result = Py_BuildValue("(LL)", best, n_fire);
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
done:
    for (int b = 0; b < entered; b++) s->bank[b]->busy = 0;
    PyBuffer_Release(&sv);
    return result;
}

static PyObject *
SpindlePlan_get_cap(SpindlePlan *self, void *Py_UNUSED(c))
{
    return PyLong_FromSsize_t(self->s.cap);
}

static PyMethodDef SpindlePlan_methods[] = {
    {"run", (PyCFunction)(void (*)(void))SpindlePlan_run, METH_FASTCALL, plan_run_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef SpindlePlan_getset[] = {
    {"cap", (getter)SpindlePlan_get_cap, NULL, "the most samples one run takes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject SpindlePlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engramloop.decoders._filters.SpindlePlan",
    .tp_basicsize = sizeof(SpindlePlan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SpindlePlan(cols, broad, sigma, alpha, pm, env, w0, xs_last, work, iwork, "
              "runstate, step, ring, pos, count, excl, median, sd, k_lo, k_hi, rel_min, "
              "corr_min, alpha_max, min_n, max_n, k_art, hold_n): the spindle detector's "
              "fused chunk with its banks and buffers checked and bound once (alpha None: no "
              "alpha veto); run(samples, first, rules) per chunk.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SpindlePlan_init,
    .tp_dealloc = (destructor)SpindlePlan_dealloc,
    .tp_methods = SpindlePlan_methods,
    .tp_getset = SpindlePlan_getset,
};

PyMethodDef spindle_functions[] = {
    {"spindle_runs", (PyCFunction)(void (*)(void))filters_spindle_runs, METH_FASTCALL,
     spindle_runs_doc},
    {"quadrature_sums", (PyCFunction)(void (*)(void))filters_quadrature_sums, METH_FASTCALL,
     quadrature_sums_doc},
    {NULL, NULL, 0, NULL},
};
