/*
 * engramloop C kernels: what the files of the one extension module `_filters` share.
 *
 * The module is split by kernel (setup.py lists the files, compiled into one extension):
 *   buffers.c     argument and buffer checks (the helpers declared below)
 *   filterbank.c  the FilterBank type: SOS cascades with per-channel state, moving RMS
 *   baseline.c    detector baselines and rules: threshold_runs, baseline_runs,
 *                 baseline_push, median_mad, running_median_mad, first_at_or_after
 *   ripple.c      the ripple detector: RipplePlan (its fused chunk), ripple_candidate,
 *                 rearm_index
 *   spindle.c     the spindle detector: SpindlePlan (its fused chunk), spindle_runs,
 *                 quadrature_sums
 *   so.c          the slow-oscillation detector: SoPlan (its fused block)
 *   echt.c        the ECHT phase estimator: EchtPlan (push a chunk, estimate the phase)
 *   module.c      the module: registers the types and every file's function table
 *
 * A fused kernel is a plan type: built once when a detector is set up, its banks and
 * buffers bound and checked then, `plan.run(samples, ...)` per chunk (see "plans" below).
 *
 * No NumPy C API: the buffer protocol is enough, so one binary serves NumPy 1 and 2.
 * Names shared between files are hidden from other shared objects (KERNEL_API).
 */
#ifndef ENGRAMLOOP_KERNELS_H
#define ENGRAMLOOP_KERNELS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#if defined(__GNUC__)
#define KERNEL_API __attribute__((visibility("hidden")))
#else
#define KERNEL_API
#endif

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

/* Stack room for per-channel scratch arrays; larger channel counts allocate. */
#define PICK_STACK 32

/* ---------------------------------------------------------- buffers.c */

/* 1 if the buffer holds native 8-byte items: float64 ('d'), or int64 ('q'/'l') when is_int. */
KERNEL_API int is_8byte(const Py_buffer *view, int is_int);
/* A C-contiguous float64 (n_samples, n_channels) buffer named `name`, or -1 with an error. */
KERNEL_API int get_block(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t n_channels,
                         const char *name);
/* A C-contiguous float64 buffer of exactly n values, or -1 with an error. */
KERNEL_API int get_flat(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t n,
                        const char *name);
/* Mark a bank busy (one thread at a time), or -1 with a RuntimeError. */
KERNEL_API int enter(FilterBank *self);
KERNEL_API int arg_double(PyObject *obj, const char *fn, const char *name, double *out);
KERNEL_API int arg_ssize(PyObject *obj, const char *fn, const char *name, Py_ssize_t *out);
KERNEL_API Py_ssize_t arg_len(PyObject *obj, const char *fn, const char *name);
KERNEL_API int get_rule_buf(PyObject *obj, Py_buffer *view, int writable, int is_int,
                            Py_ssize_t rows, Py_ssize_t cols, const char *name);
KERNEL_API Py_ssize_t get_ring(PyObject *obj, Py_buffer *view, Py_ssize_t rows,
                               const char *prefix, const char *note);
/* 1 if the two buffers' memory ranges overlap. */
KERNEL_API int overlap(const Py_buffer *a, const Py_buffer *b);

/* ---------------------------------------------------------- plans (ripple, spindle, so, echt)
 *
 * A plan binds a fused kernel's fixed arguments once: it references its FilterBanks and
 * holds a view of every buffer until it is freed, each checked when it is built, so its
 * per-chunk call checks only the chunk. A bound bank's __init__ can be called again (it
 * refuses while the bank is busy); the plan remembers the channel count and window each
 * bank had and refuses to run on a bank that changed them. */
typedef struct {
    FilterBank *bank;       /* a strong reference, or NULL */
    Py_ssize_t n_channels;
    int needs_window;
    const char *name;
} PlanBank;

/* Bind obj as a ready FilterBank of n_ch channels (with an RMS window when needs_window)
 * into *pb, or -1 with a TypeError or ValueError naming fn and name. */
KERNEL_API int plan_bank(PlanBank *pb, PyObject *obj, const char *fn, const char *name,
                         Py_ssize_t n_ch, int needs_window);
KERNEL_API void plan_bank_clear(PlanBank *pb);
/* Claim banks[0..n) (skipping unbound ones) for one run, or -1 with the error set and
 * none left claimed: a bank re-initialised with another shape, or busy in another thread. */
KERNEL_API int plan_banks_enter(PlanBank *banks, int n, const char *fn);
KERNEL_API void plan_banks_leave(PlanBank *banks, int n);
/* Refuse a bank bound twice (each keeps its own state), or -1 with a ValueError. */
KERNEL_API int plan_banks_distinct(const PlanBank *banks, int n, const char *fn);

/* ---------------------------------------------------------- filterbank.c */

KERNEL_API extern PyTypeObject FilterBankType;
KERNEL_API int check_ready(FilterBank *self);
KERNEL_API int get_vector(PyObject *obj, Py_buffer *view, int is_int, const char *name);
KERNEL_API void sos_block(FilterBank *self, const double *x, double *out, Py_ssize_t n_samples);
KERNEL_API void rms_block(FilterBank *self, const double *sig, double *env, Py_ssize_t n_samples);
KERNEL_API void pick_filter_rms(FilterBank *self, const double *src, Py_ssize_t ncol,
                                Py_ssize_t n, const Py_ssize_t *cols, const double *w,
                                Py_ssize_t nw, double *f, double *e);

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

/* ---------------------------------------------------------- baseline.c, spindle.c */

/* baseline_runs' work on raw arrays (also the tail of RipplePlan.run). */
KERNEL_API long long baseline_block(const double *f, Py_ssize_t n, Py_ssize_t c,
                                    Py_ssize_t first, Py_ssize_t step, double *ring,
                                    Py_ssize_t length, long long *lp, long long *count,
                                    const double *excl, const double *med, const double *sd,
                                    double k, long long *carry, double *mo, double *so,
                                    double *thr, long long *runs);
/* quadrature_sums' work on raw arrays (also inside SpindlePlan.run). */
KERNEL_API void quadrature_rows(const double *xs, const double *xb, double *last, double g,
                                double gi, Py_ssize_t n, Py_ssize_t c, double *o, double *amp);

/* ---------------------------------------------------------- each file's functions */

KERNEL_API extern PyMethodDef baseline_functions[];
KERNEL_API extern PyMethodDef ripple_functions[];
KERNEL_API extern PyMethodDef spindle_functions[];

/* the plan types: ripple.c, spindle.c, so.c, echt.c */
KERNEL_API extern PyTypeObject RipplePlanType;
KERNEL_API extern PyTypeObject SpindlePlanType;
KERNEL_API extern PyTypeObject SoPlanType;
KERNEL_API extern PyTypeObject EchtPlanType;

#endif
