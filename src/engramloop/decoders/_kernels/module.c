/*
 * engramloop C kernels, the module `engramloop.decoders._filters`: registers the types --
 * FilterBank (filterbank.c) and the plans RipplePlan (ripple.c), SpindlePlan (spindle.c),
 * SoPlan (so.c), EchtPlan (echt.c) -- and the module-level kernels of baseline.c, ripple.c
 * and spindle.c (kernels.h says what each file holds).
 */
#include "kernels.h"

static struct PyModuleDef filters_module = {
    PyModuleDef_HEAD_INIT, "_filters",
    "engramloop C kernels: the FilterBank (SOS cascades and moving RMS), the detectors' "
    "rule kernels and one plan per fused kernel (RipplePlan, SpindlePlan, SoPlan, "
    "EchtPlan: banks and buffers bound once, run per chunk).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__filters(void)
{
    PyMethodDef *tables[] = {baseline_functions, ripple_functions, spindle_functions};
    PyTypeObject *types[] = {&FilterBankType, &RipplePlanType, &SpindlePlanType, &SoPlanType,
                             &EchtPlanType};
    const char *names[] = {"FilterBank", "RipplePlan", "SpindlePlan", "SoPlan", "EchtPlan"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (PyType_Ready(types[i]) < 0) return NULL;
    PyObject *m = PyModule_Create(&filters_module);
    if (m == NULL) return NULL;
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        if (PyModule_AddFunctions(m, tables[i]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
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
