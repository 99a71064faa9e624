/*
 * engramloop C kernels, buffers.c. Argument and buffer checks shared by every kernel: the
 * buffer protocol with C-contiguous / writable / format flags, each failure a TypeError or
 * ValueError naming the argument; nothing is held on an error.
 *
 * Also the plans' shared bank handling (plan_bank and friends).
 *
 * Shared declarations: kernels.h.
 */
#include "kernels.h"

/* ---------------------------------------------------------------- helpers */

/* 1 if the buffer holds native 8-byte items: float64 ('d'), or int64 ('q'/'l') when
 * is_int (a leading byte-order mark '<', '=' or '@' is accepted). */
int
is_8byte(const Py_buffer *view, int is_int)
{
    const char *fmt = view->format;
    if (fmt && (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@')) fmt++;
    if (fmt == NULL || view->itemsize != 8) return 0;
    return is_int ? (strcmp(fmt, "q") == 0 || strcmp(fmt, "l") == 0) : strcmp(fmt, "d") == 0;
}

int
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

int
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

int
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

/* ------------------------------------------------- detector rule kernels (module level) */

/* Scalar and length arguments of the rule kernels, each failure a TypeError naming the
 * kernel and the argument (the bare C-API messages, "must be real number, not str" or
 * "object of type 'NoneType' has no len()", name neither). */
int
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

int
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
Py_ssize_t
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
int
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
Py_ssize_t
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

int
overlap(const Py_buffer *a, const Py_buffer *b)
{
    const char *a0 = (const char *)a->buf, *a1 = a0 + a->len;
    const char *b0 = (const char *)b->buf, *b1 = b0 + b->len;
    return a->len > 0 && b->len > 0 && b0 < a1 && a0 < b1;
}

/* ------------------------------------------------------------------ plans' banks */

int
plan_bank(PlanBank *pb, PyObject *obj, const char *fn, const char *name, Py_ssize_t n_ch,
          int needs_window)
{
    if (!PyObject_TypeCheck(obj, &FilterBankType)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a FilterBank, got %.100s", fn, name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    FilterBank *b = (FilterBank *)obj;
    if (check_ready(b) < 0) return -1;
    if (b->n_channels != n_ch || (needs_window && b->window < 1)) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be a FilterBank of %zd channel%s%s, got "
                     "%zd channels, window %zd", fn, name, n_ch, n_ch == 1 ? "" : "s",
                     needs_window ? " with a moving-RMS window" : "", b->n_channels,
                     b->window);
        return -1;
    }
    Py_INCREF(obj);
    FilterBank *old = pb->bank;
    pb->bank = b;
    Py_XDECREF(old);
    pb->n_channels = n_ch;
    pb->needs_window = needs_window;
    pb->name = name;
    return 0;
}

void
plan_bank_clear(PlanBank *pb)
{
    Py_CLEAR(pb->bank);
}

int
plan_banks_distinct(const PlanBank *banks, int n, const char *fn)
{
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (banks[i].bank != NULL && banks[i].bank == banks[j].bank) {
                PyErr_Format(PyExc_ValueError, "%s: %s and %s must be distinct FilterBanks "
                             "(each keeps its own state)", fn, banks[i].name, banks[j].name);
                return -1;
            }
    return 0;
}

int
plan_banks_enter(PlanBank *banks, int n, const char *fn)
{
    for (int i = 0; i < n; i++) {
        const FilterBank *b = banks[i].bank;
        if (b == NULL) continue;
        if (b->coef == NULL || b->n_channels != banks[i].n_channels
            || (banks[i].needs_window && b->window < 1)) {
            PyErr_Format(PyExc_RuntimeError, "%s: the bank %s was re-initialised with another "
                         "shape since the plan was built; build a new plan", fn, banks[i].name);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        if (banks[i].bank == NULL) continue;
        if (enter(banks[i].bank) < 0) {
            plan_banks_leave(banks, i);
            return -1;
        }
    }
    return 0;
}

void
plan_banks_leave(PlanBank *banks, int n)
{
    for (int i = 0; i < n; i++)
        if (banks[i].bank != NULL) banks[i].bank->busy = 0;
}
