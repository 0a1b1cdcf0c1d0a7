/* The trivial guest call and the engine -> Python host call in C: mvactors.vm._fastcall.
 *
 * The product's hot path is calling a guest function with a few small
 * arguments and getting a small int back.  Through ctypes its floor is one
 * ctypes call (~1 us here) plus the Python frame of GuestFunction.__call__;
 * this module does the same work in one C function: encode the arguments
 * (int14, undefined, true, false), make the raw wasm call, decode an int14,
 * undefined, true or false result.  Everything else (other argument types, other results, errors,
 * traps, a VM on its slow path) goes back to the Python code in _calls.py, so
 * behaviour and error messages stay that code's.
 *
 * It links nothing from wasmtime: _calls.py passes the address of
 * wasmtime_func_call_unchecked taken from the library wasmtime-py loaded, so it
 * always matches the pinned wheel.  Built on the limited API (abi3, 3.11+).
 *
 * Measured with bench/peers.py (3 alternated MVACTORS_PURE=1 / C process pairs, each the
 * median of 21 interleaved batches, 2 shared cores): the trivial call 1.81 us -> 0.50 us,
 * the guest -> host round trip 1.38 us -> 0.29 us (quickjs: 0.17 us and 0.12 us).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef void *(*call_unchecked_t)(void *ctx, const void *func, void *args_and_results, size_t n, void **trap);

#define MAX_ARGS_C 64

/* One attribute read or written through its class's data descriptor (a __slots__ member):
 * calling the descriptor directly skips the attribute lookup, and for writes the name's
 * interning that PyObject_SetAttr does on every call (~150 ns of the ~600 ns call in perf).
 * Resolved again whenever the object's type differs from the last one's. */
typedef struct {
    PyObject *type;   /* the type the descriptor was found on (strong), or NULL */
    PyObject *descr;  /* strong */
    descrgetfunc get;
    descrsetfunc set;
} Field;

static void
field_clear(Field *f)
{
    Py_CLEAR(f->type);
    Py_CLEAR(f->descr);
    f->get = NULL;
    f->set = NULL;
}

/* Point `f` at the descriptor of `name` on type(obj); leaves get/set NULL when it is not a data descriptor. */
static void
field_resolve(Field *f, PyObject *obj, PyObject *name)
{
    PyObject *type = (PyObject *)Py_TYPE(obj);
    field_clear(f);
    PyObject *descr = PyObject_GetAttr(type, name);
    if (descr == NULL) {
        PyErr_Clear();
        return;
    }
    PyTypeObject *dtype = Py_TYPE(descr);
    descrgetfunc get = (descrgetfunc)PyType_GetSlot(dtype, Py_tp_descr_get);
    descrsetfunc set = (descrsetfunc)PyType_GetSlot(dtype, Py_tp_descr_set);
    if (get == NULL || set == NULL) {  /* not a data descriptor: the generic path decides */
        PyErr_Clear();
        Py_DECREF(descr);
        return;
    }
    Py_INCREF(type);
    f->type = type;
    f->descr = descr;
    f->get = get;
    f->set = set;
}

static PyObject *
field_get(Field *f, PyObject *obj, PyObject *name)
{
    if ((PyObject *)Py_TYPE(obj) != f->type)
        field_resolve(f, obj, name);
    if (f->get == NULL)
        return PyObject_GenericGetAttr(obj, name);
    return f->get(f->descr, obj, f->type);
}

static int
field_set(Field *f, PyObject *obj, PyObject *name, PyObject *value)
{
    if ((PyObject *)Py_TYPE(obj) != f->type)
        field_resolve(f, obj, name);
    if (f->set == NULL)
        return PyObject_GenericSetAttr(obj, name, value);
    return f->set(f->descr, obj, value);
}

static int
field_traverse(Field *f, visitproc visit, void *arg)
{
    Py_VISIT(f->type);
    Py_VISIT(f->descr);
    return 0;
}

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
    /* The instance of the last call and its memory base and export address: a VM calling again
     * (the common case) skips two attribute reads and conversions.  Holding the instance is free:
     * engine instances are pooled for the process's lifetime, never freed. */
    PyObject *last_inst;
    uintptr_t last_base, last_func;
    Field f_heap, f_slot, f_slow, f_inst, f_current, f_pending, f_breakpoint_exception;
} FastCall;

/* Attribute names, interned once. */
static PyObject *s_heap, *s_slot, *s_slow, *s_base, *s_call_address, *s_inst, *s_current, *s_call_result;
static PyObject *s_pending, *s_breakpoint_exception;

static int
fastcall_traverse(FastCall *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->raise_trapped);
    Py_VISIT(self->entry);
    Py_VISIT(self->last_inst);
    Field *fields[] = {&self->f_heap, &self->f_slot, &self->f_slow, &self->f_inst, &self->f_current,
                       &self->f_pending, &self->f_breakpoint_exception};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        int err = field_traverse(fields[i], visit, arg);
        if (err)
            return err;
    }
    return 0;
}

static int
fastcall_clear(FastCall *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->raise_trapped);
    Py_CLEAR(self->entry);
    Py_CLEAR(self->last_inst);
    field_clear(&self->f_heap);
    field_clear(&self->f_slot);
    field_clear(&self->f_slow);
    field_clear(&self->f_inst);
    field_clear(&self->f_current);
    field_clear(&self->f_pending);
    field_clear(&self->f_breakpoint_exception);
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
read_address(Field *f, PyObject *obj, PyObject *name, uintptr_t *out)
{
    PyObject *value = f ? field_get(f, obj, name) : PyObject_GenericGetAttr(obj, name);
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
    /* The fields read here are __slots__ of GuestFunction and VM: the generic lookup skips
     * GuestFunction.__getattr__'s hook (one type lookup per read, ~8% of the call in perf). */
    PyObject *fn = PyTuple_GetItem(args, 0);
    PyObject *vm = field_get(&self->f_heap, fn, s_heap);
    if (vm == NULL)
        return NULL;
    PyObject *result = NULL, *inst = NULL, *outer = NULL;
    PyObject *slow = field_get(&self->f_slow, vm, s_slow);
    if (slow == NULL)
        goto done;
    int is_slow = slow == Py_False ? 0 : PyObject_IsTrue(slow);
    Py_DECREF(slow);
    if (is_slow < 0)
        goto done;
    if (is_slow) {  /* no instance, promises awaited, breakpoints: VM.call handles those */
        result = fall_back(self, args, kwds);
        goto done;
    }
    uintptr_t base, func, slot;
    if (read_address(&self->f_slot, fn, s_slot, &slot) < 0)
        goto done;
    inst = field_get(&self->f_inst, vm, s_inst);
    if (inst == NULL)
        goto done;
    if (inst == self->last_inst) {
        base = self->last_base;
        func = self->last_func;
    } else {
        /* The VM's copies of its instance's base and export address (VM._use_instance). */
        if (read_address(NULL, vm, s_base, &base) < 0 || read_address(NULL, vm, s_call_address, &func) < 0)
            goto done;
        PyObject *previous = self->last_inst;
        Py_INCREF(inst);
        self->last_inst = inst;
        Py_XDECREF(previous);
        self->last_base = base;
        self->last_func = func;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        memcpy((char *)base + self->arg0 + i * self->stride, &encoded[i], sizeof(uint16_t));
    self->raw[0] = (int32_t)((uint32_t)self->guard | (uint32_t)slot | ((uint32_t)n << self->argc_shift));
    /* The engine's entry names the instance running, for the hard stop (see _wasm.Entry). */
    outer = field_get(&self->f_current, self->entry, s_current);
    if (outer == NULL || field_set(&self->f_current, self->entry, s_current, inst) < 0)
        goto done;
    void *error;
    /* The GIL is released as ctypes does: the hard stop's ticker thread runs Python to advance
     * the epoch while a long guest call runs. */
    Py_BEGIN_ALLOW_THREADS
    error = self->call(self->ctx, (const void *)func, self->raw, 1, self->trap);
    Py_END_ALLOW_THREADS
    if (field_set(&self->f_current, self->entry, s_current, outer) < 0)
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
    /* undefined, true, false: VM._call_result's answer when no promise is awaited and no breakpoint
     * hook raised (both are checked after the call, as there); one Python method call fewer. */
    if (r == self->undefined || r == self->true_value || r == self->false_value) {
        PyObject *pending = field_get(&self->f_pending, vm, s_pending);
        if (pending == NULL)
            goto done;
        int busy = PyObject_IsTrue(pending);
        Py_DECREF(pending);
        if (busy < 0)
            goto done;
        if (!busy) {
            PyObject *raised = field_get(&self->f_breakpoint_exception, vm, s_breakpoint_exception);
            if (raised == NULL)
                goto done;
            Py_DECREF(raised);
            if (raised == Py_None) {
                result = r == self->undefined ? Py_None : r == self->true_value ? Py_True : Py_False;
                Py_INCREF(result);
                goto done;
            }
        }
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

/* ---- the engine -> Python host call ----
 *
 * The engine's "mvh.call" import, defined with this C callback instead of a ctypes one (a
 * ctypes callback's entry costs ~1 us).  For a synchronous import whose arguments are all
 * int14/undefined/true/false it reads the arguments, calls the host function and writes an
 * int14/undefined/true/false result itself; any other case goes to the VM's on_host_call
 * before anything happened, and any other result to its _host_returned, so what the guest
 * sees and what Python raises are the Python path's.
 */

typedef struct {
    PyObject_HEAD
    PyObject *hosts;       /* the engine's cookie -> host (a VM) */
    PyObject *bases;       /* the engine's cookie -> linear memory base */
    Py_ssize_t call_info;  /* byte address of the glue's CALL_INFO words; 0 until the layout is known */
    int cookie_shift;
    int64_t max_id;
    int32_t tag, sign, bias, host_error;
    long small_min, small_max;
    uint16_t undefined, true_value, false_value;
    int info_args, info_argc, info_result, info_async;
    Field f_imports, f_inst, f_host_exception;
} HostDispatch;

static PyObject *s_on_host_call, *s_host_returned, *s_imports, *s_host_exception;

static int
dispatch_traverse(HostDispatch *self, visitproc visit, void *arg)
{
    Py_VISIT(self->hosts);
    Py_VISIT(self->bases);
    Field *fields[] = {&self->f_imports, &self->f_inst, &self->f_host_exception};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        int err = field_traverse(fields[i], visit, arg);
        if (err)
            return err;
    }
    return 0;
}

static int
dispatch_clear(HostDispatch *self)
{
    Py_CLEAR(self->hosts);
    Py_CLEAR(self->bases);
    field_clear(&self->f_imports);
    field_clear(&self->f_inst);
    field_clear(&self->f_host_exception);
    return 0;
}

static void
dispatch_dealloc(HostDispatch *self)
{
    PyTypeObject *tp = Py_TYPE((PyObject *)self);
    PyObject_GC_UnTrack(self);
    dispatch_clear(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
dispatch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"hosts", "bases", "cookie_shift", "max_id", "tag", "sign", "bias", "host_error",
                             "small_min", "small_max", "undefined", "true_value", "false_value", "info_args",
                             "info_argc", "info_result", "info_async", NULL};
    PyObject *hosts, *bases;
    int cookie_shift, tag, sign, bias, host_error, info_args, info_argc, info_result, info_async;
    long long max_id;
    long small_min, small_max;
    unsigned int undefined, true_value, false_value;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!iLiiiillIIIiiii:HostDispatch", kwlist, &PyDict_Type, &hosts,
                                     &PyDict_Type, &bases, &cookie_shift, &max_id, &tag, &sign, &bias, &host_error,
                                     &small_min, &small_max, &undefined, &true_value, &false_value, &info_args,
                                     &info_argc, &info_result, &info_async))
        return NULL;
    allocfunc tp_alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    HostDispatch *self = (HostDispatch *)tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(hosts);
    self->hosts = hosts;
    Py_INCREF(bases);
    self->bases = bases;
    self->call_info = 0;
    self->cookie_shift = cookie_shift;
    self->max_id = max_id;
    self->tag = tag;
    self->sign = sign;
    self->bias = bias;
    self->host_error = host_error;
    self->small_min = small_min;
    self->small_max = small_max;
    self->undefined = (uint16_t)undefined;
    self->true_value = (uint16_t)true_value;
    self->false_value = (uint16_t)false_value;
    self->info_args = info_args;
    self->info_argc = info_argc;
    self->info_result = info_result;
    self->info_async = info_async;
    return (PyObject *)self;
}

static PyObject *
dispatch_set_call_info(HostDispatch *self, PyObject *arg)
{
    Py_ssize_t address = PyLong_AsSsize_t(arg);
    if (address == -1 && PyErr_Occurred())
        return NULL;
    self->call_info = address;
    Py_RETURN_NONE;
}

/* A Python int from an mvm_TeError returned by a host method; host_error when it failed. */
static int64_t
code_of(HostDispatch *self, PyObject *ret)
{
    if (ret == NULL) {  /* the Python methods catch everything: this is a bug, not the guest's doing */
        PyErr_WriteUnraisable(NULL);
        return self->host_error;
    }
    long long code = PyLong_AsLongLong(ret);
    Py_DECREF(ret);
    if (code == -1 && PyErr_Occurred()) {
        PyErr_WriteUnraisable(NULL);
        return self->host_error;
    }
    return code;
}

/* The VM's Python path for the whole call: host.on_host_call(import_id). */
static int64_t
dispatch_python(HostDispatch *self, PyObject *host, PyObject *id)
{
    return code_of(self, PyObject_CallMethodObjArgs(host, s_on_host_call, id, NULL));
}

/* Records the exception a host function raised on its VM, as on_host_call does; host_error. */
static int64_t
host_raised(HostDispatch *self, PyObject *host, PyObject *id)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL)
        PyException_SetTraceback(value, traceback);
    PyObject *pair = PyTuple_Pack(2, id, value ? value : Py_None);
    if (pair == NULL || field_set(&self->f_host_exception, host, s_host_exception, pair) < 0)
        PyErr_WriteUnraisable(NULL);
    Py_XDECREF(pair);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return self->host_error;
}

static int64_t
dispatch_call(HostDispatch *self, int64_t packed)
{
    int64_t code = self->host_error;
    PyObject *key = PyLong_FromLongLong(packed >> self->cookie_shift);
    PyObject *id = PyLong_FromLongLong(packed & self->max_id);
    PyObject *host, *base_obj, *imports = NULL, *fn = NULL, *call_args = NULL;
    if (key == NULL || id == NULL) {
        PyErr_WriteUnraisable(NULL);
        goto done;
    }
    host = PyDict_GetItemWithError(self->hosts, key);  /* borrowed */
    if (host == NULL) {
        if (PyErr_Occurred())
            PyErr_WriteUnraisable(NULL);
        goto done;  /* no host for this instance: what the Python callback's KeyError gave */
    }
    Py_INCREF(host);
    base_obj = self->call_info ? PyDict_GetItemWithError(self->bases, key) : NULL;
    if (base_obj == NULL) {
        PyErr_Clear();
        code = dispatch_python(self, host, id);
        goto done_host;
    }
    char *base = (char *)PyLong_AsVoidPtr(base_obj);
    const uint32_t *info = (const uint32_t *)(base + self->call_info);
    uint32_t argc = info[self->info_argc];
    imports = field_get(&self->f_imports, host, s_imports);
    if (imports == NULL || info[self->info_async] || !PyDict_Check(imports)) {
        PyErr_Clear();
        code = dispatch_python(self, host, id);
        goto done_host;
    }
    fn = PyDict_GetItemWithError(imports, id);
    if (fn == NULL) {
        PyErr_Clear();
        code = dispatch_python(self, host, id);
        goto done_host;
    }
    Py_INCREF(fn);
    call_args = PyTuple_New((Py_ssize_t)argc);
    if (call_args == NULL) {
        PyErr_Clear();
        code = dispatch_python(self, host, id);
        goto done_host;
    }
    const uint16_t *arg = (const uint16_t *)(base + info[self->info_args]);
    for (uint32_t i = 0; i < argc; i++) {
        uint16_t v = arg[i];
        PyObject *item;
        if ((v & self->tag) == self->tag) {
            long x = (v & self->sign) ? (long)(v >> 2) - self->bias : (long)(v >> 2);
            item = PyLong_FromLong(x);
        } else if (v == self->undefined) {
            item = Py_None;
            Py_INCREF(item);
        } else if (v == self->true_value) {
            item = Py_True;
            Py_INCREF(item);
        } else if (v == self->false_value) {
            item = Py_False;
            Py_INCREF(item);
        } else {  /* a heap value, null, NaN, -0: the Python path converts it */
            code = dispatch_python(self, host, id);
            goto done_host;
        }
        if (item == NULL || PyTuple_SetItem(call_args, (Py_ssize_t)i, item) < 0) {
            PyErr_Clear();
            code = dispatch_python(self, host, id);
            goto done_host;
        }
    }
    PyObject *ret = PyObject_Call(fn, call_args, NULL);
    if (ret == NULL) {
        code = host_raised(self, host, id);
        goto done_host;
    }
    uint16_t encoded;
    int simple = 1;
    if (ret == Py_None) {
        encoded = self->undefined;
    } else if (ret == Py_True) {
        encoded = self->true_value;
    } else if (ret == Py_False) {
        encoded = self->false_value;
    } else if (PyLong_CheckExact(ret)) {
        int overflow = 0;
        long x = PyLong_AsLongAndOverflow(ret, &overflow);
        simple = !overflow && x >= self->small_min && x <= self->small_max;
        encoded = (uint16_t)((((unsigned long)x) << 2) | (unsigned long)self->tag);
    } else {
        simple = 0;
    }
    if (simple) {  /* still the VM's instance?  (a host function may close its VM) */
        PyObject *inst = field_get(&self->f_inst, host, s_inst);
        simple = inst != NULL && inst != Py_None;
        if (inst == NULL)
            PyErr_Clear();
        Py_XDECREF(inst);
    }
    if (simple) {
        /* The result address is read after the call, as the Python path does. */
        memcpy(base + info[self->info_result], &encoded, sizeof(uint16_t));
        code = 0;
        Py_DECREF(ret);
    } else {
        code = code_of(self, PyObject_CallMethodObjArgs(host, s_host_returned, id, ret, NULL));
        Py_DECREF(ret);
    }
done_host:
    Py_XDECREF(call_args);
    Py_XDECREF(fn);
    Py_XDECREF(imports);
    Py_DECREF(host);
done:
    Py_XDECREF(key);
    Py_XDECREF(id);
    return code;
}

/* wasmtime_func_unchecked_callback_t for the engine's "mvh.call" import: the raw buffer
 * carries cookie << 16 | import id and takes the mvm_TeError.  Runs with the GIL released
 * (the guest call released it), so it takes the GIL as a ctypes callback would. */
static void *
host_call_callback(void *env, void *caller, int64_t *raw, size_t n)
{
    HostDispatch *self = (HostDispatch *)env;
    PyGILState_STATE gil = PyGILState_Ensure();
    raw[0] = dispatch_call(self, raw[0]);
    PyGILState_Release(gil);
    return NULL;
}

static PyObject *
dispatch_callback_address(HostDispatch *self, PyObject *unused)
{
    return PyLong_FromVoidPtr((void *)(uintptr_t)&host_call_callback);
}

static PyMethodDef dispatch_methods[] = {
    {"set_call_info", (PyCFunction)dispatch_set_call_info, METH_O,
     "Byte address of the glue's CALL_INFO words (the engine's Layout.call_info)."},
    {"callback_address", (PyCFunction)dispatch_callback_address, METH_NOARGS,
     "Address of the C callback to define as the engine's mvh.call import, with this object as env."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot dispatch_slots[] = {
    {Py_tp_new, dispatch_new},
    {Py_tp_dealloc, dispatch_dealloc},
    {Py_tp_traverse, dispatch_traverse},
    {Py_tp_clear, dispatch_clear},
    {Py_tp_methods, dispatch_methods},
    {Py_tp_doc, "HostDispatch(hosts, bases, ...): the engine's host-call import in C (see _wasm.py)."},
    {0, NULL},
};

static PyType_Spec dispatch_spec = {
    .name = "mvactors.vm._fastcall.HostDispatch",
    .basicsize = sizeof(HostDispatch),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = dispatch_slots,
};

/* ---- the glue's operations (Instance._op) ----
 *
 * Snapshots, collections, restores and the other glue operations are one raw call each;
 * through ctypes its floor is ~1.8 us where the snapshot op itself runs ~0.1 us, and a
 * cluster worker takes one snapshot per committed turn.  op() makes the same call as
 * Instance._op: arguments in the shared raw buffer, the engine's entry set around it, the
 * instance's fail() (which raises) on an error or a trap.
 */

static call_unchecked_t op_call;
static int32_t *op_raw;
static void **op_trap;
static Field f_op_current;
static PyObject *s_fail;

/* configure_ops(call_address, raw, trap): the raw-call function and the shared buffers (once, at import). */
static PyObject *
ops_configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "configure_ops(call_address, raw, trap) takes 3 arguments");
        return NULL;
    }
    void *call = PyLong_AsVoidPtr(args[0]), *raw = PyLong_AsVoidPtr(args[1]), *trap = PyLong_AsVoidPtr(args[2]);
    if (PyErr_Occurred())
        return NULL;
    op_call = (call_unchecked_t)call;
    op_raw = (int32_t *)raw;
    op_trap = (void **)trap;
    Py_RETURN_NONE;
}

/* op(ctx, func, entry, instance, op, a, b, c) -> the op's int result. */
static PyObject *
ops_op(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "op(ctx, func, entry, instance, op, a, b, c) takes 8 arguments");
        return NULL;
    }
    if (op_call == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_ops() was not called");
        return NULL;
    }
    void *ctx = PyLong_AsVoidPtr(args[0]), *func = PyLong_AsVoidPtr(args[1]);
    if (PyErr_Occurred())
        return NULL;
    int32_t values[4];
    for (int i = 0; i < 4; i++) {
        long value = PyLong_AsLong(args[4 + i]);
        if (value == -1 && PyErr_Occurred())
            return NULL;
        values[i] = (int32_t)value;
    }
    PyObject *entry = args[2], *inst = args[3];
    PyObject *outer = field_get(&f_op_current, entry, s_current);
    if (outer == NULL)
        return NULL;
    if (field_set(&f_op_current, entry, s_current, inst) < 0) {
        Py_DECREF(outer);
        return NULL;
    }
    /* One wasmtime_val_raw_t (16 bytes) per argument: int32 words 0, 4, 8, 12. */
    for (int i = 0; i < 4; i++)
        op_raw[4 * i] = values[i];
    void *error;
    Py_BEGIN_ALLOW_THREADS
    error = op_call(ctx, func, op_raw, 4, op_trap);
    Py_END_ALLOW_THREADS
    int restored = field_set(&f_op_current, entry, s_current, outer);
    Py_DECREF(outer);
    if (error != NULL || *op_trap != NULL) {
        if (restored < 0)
            PyErr_Clear();  /* the trap is the news */
        PyObject *address = error != NULL ? PyLong_FromVoidPtr(error) : (Py_INCREF(Py_None), Py_None);
        if (address == NULL)
            return NULL;
        PyObject *failed = PyObject_CallMethodObjArgs(inst, s_fail, address, NULL);
        Py_DECREF(address);
        if (failed == NULL)
            return NULL;
        Py_DECREF(failed);
    } else if (restored < 0) {
        return NULL;
    }
    return PyLong_FromLong(op_raw[0]);
}

/* bytes_at(address, size) -> bytes: ctypes.string_at without its ~0.6 us of argument conversion. */
static PyObject *
ops_bytes_at(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "bytes_at(address, size) takes 2 arguments");
        return NULL;
    }
    void *address = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "bytes_at: negative size");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)address, size);
}

static PyMethodDef module_methods[] = {
    {"configure_ops", (PyCFunction)(void (*)(void))ops_configure, METH_FASTCALL,
     "configure_ops(call_address, raw, trap): the raw call and the shared buffers op() uses."},
    {"op", (PyCFunction)(void (*)(void))ops_op, METH_FASTCALL,
     "op(ctx, func, entry, instance, op, a, b, c) -> int: Instance._op's raw call in C."},
    {"bytes_at", (PyCFunction)(void (*)(void))ops_bytes_at, METH_FASTCALL,
     "bytes_at(address, size) -> bytes: a copy of memory."},
    {NULL, NULL, 0, NULL},
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
    INTERN(s_pending, "_pending");
    INTERN(s_breakpoint_exception, "_breakpoint_exception");
    INTERN(s_on_host_call, "on_host_call");
    INTERN(s_host_returned, "_host_returned");
    INTERN(s_imports, "_imports");
    INTERN(s_host_exception, "_host_exception");
    INTERN(s_fail, "fail");
#undef INTERN
    PyObject *type = PyType_FromSpec(&fastcall_spec);
    if (type == NULL)
        return -1;
    if (PyModule_AddObject(module, "FastCall", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    type = PyType_FromSpec(&dispatch_spec);
    if (type == NULL)
        return -1;
    if (PyModule_AddObject(module, "HostDispatch", type) < 0) {
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
    .m_methods = module_methods,
    .m_slots = fastcall_module_slots,
};

PyMODINIT_FUNC
PyInit__fastcall(void)
{
    return PyModuleDef_Init(&fastcall_module);
}
