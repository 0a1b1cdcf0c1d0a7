/* The trivial guest call in C: mvactors.vm._fastcall.
 *
 * The product's hot path is calling a guest function with a few small
 * arguments and getting a small int back.  Through ctypes its floor is one
 * ctypes call (~1 us here) plus the Python frame of GuestFunction.__call__;
 * this module does the same work in one C function: encode the arguments
 * (int14, undefined, true, false), make the raw wasm call, decode an int14
 * result.  Everything else (other argument types, other results, errors,
 * traps, a VM on its slow path) goes back to the Python code in _calls.py, so
 * behaviour and error messages stay that code's.
 *
 * It links nothing from wasmtime: _calls.py passes the address of
 * wasmtime_func_call_unchecked taken from the library wasmtime-py loaded, so it
 * always matches the pinned wheel.  Built on the limited API (abi3, 3.11+).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef void *(*call_unchecked_t)(void *ctx, const void *func, void *args_and_results, size_t n, void **trap);

#define MAX_ARGS_C 64

typedef struct {
    PyObject_HEAD
    PyObject *fallback;        /* the Python __call__(self, *args): every case this code does not handle */
    PyObject *raise_trapped;   /* raise_trapped(vm, error address or None): raises the VM's trap exception */
    PyObject *entry;           /* the engine's Entry: whose code runs, for the hard stop */
    call_unchecked_t call;
    void *ctx;
    int32_t *raw;              /* the shared raw value buffer: slot 0 carries the parameter and the result */
    void **trap;               /* the shared trap slot */
    Py_ssize_t arg0;           /* byte address of the first argument handle in linear memory */
    Py_ssize_t stride;         /* bytes between argument handles */
    Py_ssize_t max_args;
    int32_t guard, argc_shift, trapped_below;
    long small_min, small_max;
    int32_t tag, sign, bias;
    uint16_t undefined, true_value, false_value;
} FastCall;

/* Attribute names, interned once. */
static PyObject *s_heap, *s_slot, *s_slow, *s_base, *s_call_address, *s_inst, *s_current, *s_call_result;

static int
fastcall_traverse(FastCall *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->raise_trapped);
    Py_VISIT(self->entry);
    return 0;
}

static int
fastcall_clear(FastCall *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->raise_trapped);
    Py_CLEAR(self->entry);
    return 0;
}

static void
fastcall_dealloc(FastCall *self)
{
    PyTypeObject *tp = Py_TYPE((PyObject *)self);
    PyObject_GC_UnTrack(self);
    fastcall_clear(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
fastcall_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fallback", "raise_trapped", "entry", "call_address", "ctx", "raw", "trap",
                             "arg0", "stride", "max_args", "guard", "argc_shift", "trapped_below",
                             "small_min", "small_max", "tag", "sign", "bias", "undefined", "true_value",
                             "false_value", NULL};
    PyObject *fallback, *raise_trapped, *entry;
    unsigned long long call, ctx, raw, trap;
    Py_ssize_t arg0, stride, max_args;
    int guard, argc_shift, trapped_below, tag, sign, bias;
    long small_min, small_max;
    unsigned int undefined, true_value, false_value;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOKKKKnnniiilliiiIII:FastCall", kwlist, &fallback,
                                     &raise_trapped, &entry, &call, &ctx, &raw, &trap, &arg0, &stride, &max_args,
                                     &guard, &argc_shift, &trapped_below, &small_min, &small_max, &tag, &sign,
                                     &bias, &undefined, &true_value, &false_value))
        return NULL;
    if (!call || !ctx || !raw || !trap) {
        PyErr_SetString(PyExc_ValueError, "FastCall needs the addresses of the raw call, store, buffer and trap slot");
        return NULL;
    }
    if (max_args < 0 || max_args > MAX_ARGS_C) {
        PyErr_Format(PyExc_ValueError, "FastCall handles at most %d arguments, the engine allows %zd; "
                     "raise MAX_ARGS_C in _fastcall.c", MAX_ARGS_C, max_args);
        return NULL;
    }
    allocfunc tp_alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    FastCall *self = (FastCall *)tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(raise_trapped);
    self->raise_trapped = raise_trapped;
    Py_INCREF(entry);
    self->entry = entry;
    self->call = (call_unchecked_t)(uintptr_t)call;
    self->ctx = (void *)(uintptr_t)ctx;
    self->raw = (int32_t *)(uintptr_t)raw;
    self->trap = (void **)(uintptr_t)trap;
    self->arg0 = arg0;
    self->stride = stride;
    self->max_args = max_args;
    self->guard = guard;
    self->argc_shift = argc_shift;
    self->trapped_below = trapped_below;
    self->small_min = small_min;
    self->small_max = small_max;
    self->tag = tag;
    self->sign = sign;
    self->bias = bias;
    self->undefined = (uint16_t)undefined;
    self->true_value = (uint16_t)true_value;
    self->false_value = (uint16_t)false_value;
    return (PyObject *)self;
}

/* The Python path for this call: fallback(fn, *args). */
static PyObject *
fall_back(FastCall *self, PyObject *args, PyObject *kwds)
{
    return PyObject_Call(self->fallback, args, kwds);
}

/* Read attribute `name` of `obj` as a C integer of pointer width; -1 with an exception set on error. */
static int
read_address(PyObject *obj, PyObject *name, uintptr_t *out)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    void *p = PyLong_AsVoidPtr(value);
    Py_DECREF(value);
    if (p == NULL && PyErr_Occurred())
        return -1;
    *out = (uintptr_t)p;
    return 0;
}

/* fastcall(fn, *args): called as GuestFunction.__call__ (the type is a method descriptor, so
 * Python passes the function object first without making a bound method). */
static PyObject *
fastcall_call(FastCall *self, PyObject *args, PyObject *kwds)
{
    Py_ssize_t total = PyTuple_Size(args);
    if (total < 1 || (kwds != NULL && PyObject_Length(kwds) != 0))
        return fall_back(self, args, kwds);
    Py_ssize_t n = total - 1;
    if (n > self->max_args)
        return fall_back(self, args, kwds);
    uint16_t encoded[MAX_ARGS_C];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *arg = PyTuple_GetItem(args, i + 1);
        if (PyLong_CheckExact(arg)) {
            int overflow = 0;
            long value = PyLong_AsLongAndOverflow(arg, &overflow);
            if (overflow || value < self->small_min || value > self->small_max)
                return fall_back(self, args, kwds);  /* a heap number: the glue allocates it */
            encoded[i] = (uint16_t)((((unsigned long)value) << 2) | (unsigned long)self->tag);
        } else if (arg == Py_None) {
            encoded[i] = self->undefined;
        } else if (arg == Py_True) {
            encoded[i] = self->true_value;
        } else if (arg == Py_False) {
            encoded[i] = self->false_value;
        } else {
            return fall_back(self, args, kwds);  /* floats, strings, containers, guest values */
        }
    }
    PyObject *fn = PyTuple_GetItem(args, 0);
    PyObject *vm = PyObject_GetAttr(fn, s_heap);
    if (vm == NULL)
        return NULL;
    PyObject *result = NULL, *inst = NULL, *outer = NULL;
    PyObject *slow = PyObject_GetAttr(vm, s_slow);
    if (slow == NULL)
        goto done;
    int is_slow = PyObject_IsTrue(slow);
    Py_DECREF(slow);
    if (is_slow < 0)
        goto done;
    if (is_slow) {  /* no instance, promises awaited, breakpoints: VM.call handles those */
        result = fall_back(self, args, kwds);
        goto done;
    }
    uintptr_t base, func, slot;
    if (read_address(vm, s_base, &base) < 0 || read_address(vm, s_call_address, &func) < 0
        || read_address(fn, s_slot, &slot) < 0)
        goto done;
    inst = PyObject_GetAttr(vm, s_inst);
    if (inst == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++)
        memcpy((char *)base + self->arg0 + i * self->stride, &encoded[i], sizeof(uint16_t));
    self->raw[0] = (int32_t)((uint32_t)self->guard | (uint32_t)slot | ((uint32_t)n << self->argc_shift));
    /* The engine's entry names the instance running, for the hard stop (see _wasm.Entry). */
    outer = PyObject_GetAttr(self->entry, s_current);
    if (outer == NULL || PyObject_SetAttr(self->entry, s_current, inst) < 0)
        goto done;
    void *error;
    /* The GIL is released as ctypes does: the hard stop's ticker thread runs Python to advance
     * the epoch while a long guest call runs. */
    Py_BEGIN_ALLOW_THREADS
    error = self->call(self->ctx, (const void *)func, self->raw, 1, self->trap);
    Py_END_ALLOW_THREADS
    if (PyObject_SetAttr(self->entry, s_current, outer) < 0)
        goto done;
    if (error != NULL) {
        PyObject *address = PyLong_FromVoidPtr(error);
        if (address != NULL) {
            result = PyObject_CallFunctionObjArgs(self->raise_trapped, vm, address, NULL);
            Py_DECREF(address);
        }
        goto done;
    }
    int32_t r = self->raw[0];
    if (r >= 0 && (r & self->tag) == self->tag) {
        long value = (r & self->sign) ? (long)(r >> 2) - self->bias : (long)(r >> 2);
        result = PyLong_FromLong(value);
        goto done;
    }
    /* A trap leaves the guard bit of the parameter in place, which no result equals. */
    if (r < self->trapped_below || *self->trap != NULL) {
        result = PyObject_CallFunctionObjArgs(self->raise_trapped, vm, Py_None, NULL);
        goto done;
    }
    PyObject *code = PyLong_FromLong(r);
    if (code != NULL) {
        result = PyObject_CallMethodObjArgs(vm, s_call_result, code, NULL);
        Py_DECREF(code);
    }
done:
    Py_XDECREF(outer);
    Py_XDECREF(inst);
    Py_DECREF(vm);
    return result;
}

/* As an attribute of an instance (``f.__call__``): the Python path's bound method, which behaves alike. */
static PyObject *
fastcall_get(FastCall *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF((PyObject *)self);
        return (PyObject *)self;
    }
    return PyObject_CallMethod(self->fallback, "__get__", "OO", obj, type ? type : Py_None);
}

static PyType_Slot fastcall_slots[] = {
    {Py_tp_new, fastcall_new},
    {Py_tp_dealloc, fastcall_dealloc},
    {Py_tp_traverse, fastcall_traverse},
    {Py_tp_clear, fastcall_clear},
    {Py_tp_call, fastcall_call},
    {Py_tp_descr_get, fastcall_get},
    {Py_tp_doc, "FastCall(fallback, raise_trapped, entry, call_address, ctx, raw, trap, ...): "
                "a GuestFunction.__call__ for int14/None/bool arguments and int14 results, in C."},
    {0, NULL},
};

static PyType_Spec fastcall_spec = {
    .name = "mvactors.vm._fastcall.FastCall",
    .basicsize = sizeof(FastCall),
    .itemsize = 0,
    /* METHOD_DESCRIPTOR: calling an instance of a class whose __call__ is this passes the
     * instance as the first argument, with no bound method made per call. */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .slots = fastcall_slots,
};

static int
fastcall_exec(PyObject *module)
{
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    INTERN(s_heap, "_heap");
    INTERN(s_slot, "_slot");
    INTERN(s_slow, "_slow");
    INTERN(s_base, "_base");
    INTERN(s_call_address, "_call_address");
    INTERN(s_inst, "_inst");
    INTERN(s_current, "current");
    INTERN(s_call_result, "_call_result");
#undef INTERN
    PyObject *type = PyType_FromSpec(&fastcall_spec);
    if (type == NULL)
        return -1;
    if (PyModule_AddObject(module, "FastCall", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot fastcall_module_slots[] = {
    {Py_mod_exec, fastcall_exec},
    {0, NULL},
};

static struct PyModuleDef fastcall_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mvactors.vm._fastcall",
    .m_doc = "The trivial guest call in C (see _calls.py); optional: the pure-Python path does the same.",
    .m_size = 0,
    .m_slots = fastcall_module_slots,
};

PyMODINIT_FUNC
PyInit__fastcall(void)
{
    return PyModuleDef_Init(&fastcall_module);
}
