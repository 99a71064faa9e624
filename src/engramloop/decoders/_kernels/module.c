/*
 * engramloop C kernels, the module `engramloop.decoders._filters`: registers the types
 * FilterBank (filterbank.c) and SpindlePlan (spindle.c) and the module-level kernels of
 * baseline.c, ripple.c, spindle.c, so.c and echt.c (kernels.h says what each file holds).
 */
#include "kernels.h"

static struct PyModuleDef filters_module = {
    PyModuleDef_HEAD_INIT, "_filters",
    "engramloop C kernels: the FilterBank (SOS cascades and moving RMS) and the fused "
    "per-detector kernels (GIL released for large blocks).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__filters(void)
{
    PyMethodDef *tables[] = {baseline_functions, ripple_functions, spindle_functions,
                             so_functions, echt_functions};
    if (PyType_Ready(&FilterBankType) < 0 || PyType_Ready(&SpindlePlanType) < 0) return NULL;
    PyObject *m = PyModule_Create(&filters_module);
    if (m == NULL) return NULL;
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        if (PyModule_AddFunctions(m, tables[i]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    PyTypeObject *types[] = {&FilterBankType, &SpindlePlanType};
    const char *names[] = {"FilterBank", "SpindlePlan"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
