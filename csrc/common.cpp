#include "common.h"

namespace wmenv {

Refs& refs() {
    static Refs* instance = new Refs();
    return *instance;
}

static PyObject* intern(const char* s) {
    PyObject* p = PyUnicode_InternFromString(s);
    if (p == nullptr) throw py::error_already_set();
    return p;
}

static PyObject* attr_of(const char* module, const char* name) {
    py::object m = py::module_::import(module);
    return py::object(m.attr(name)).release().ptr();
}

void init_refs() {
    Refs& r = refs();
    r.ndarray = reinterpret_cast<PyTypeObject*>(attr_of("numpy", "ndarray"));
    r.generic = reinterpret_cast<PyTypeObject*>(attr_of("numpy", "generic"));
    r.asarray = attr_of("numpy", "asarray");
    r.from_dlpack = attr_of("numpy", "from_dlpack");
    r.np_shape = attr_of("numpy", "shape");
    r.np_isfinite = attr_of("numpy", "isfinite");
    r.np_floor = attr_of("numpy", "floor");
    r.mapping_abc = attr_of("collections.abc", "Mapping");
    r.s_requires_grad = intern("requires_grad");
    r.s_detach = intern("detach");
    r.s_is_cpu = intern("is_cpu");
    r.s_cpu = intern("cpu");
    r.s_numpy = intern("numpy");
    r.s_is_conj = intern("is_conj");
    r.s_is_neg = intern("is_neg");
    r.s_resolve_conj = intern("resolve_conj");
    r.s_resolve_neg = intern("resolve_neg");
    r.s_untyped_storage = intern("untyped_storage");
    r.s_Tensor = intern("Tensor");
    r.s_all = intern("all");
    r.s_is_complex = intern("is_complex");
    r.s_is_floating_point = intern("is_floating_point");
    r.s_isfinite = intern("isfinite");
    r.s_floor = intern("floor");
    r.s_from_numpy = intern("from_numpy");
    r.s_numel = intern("numel");
    r.s_item = intern("item");
    r.s_shape = intern("shape");
    r.s_size = intern("size");
    r.s_astype = intern("astype");
    r.s_reshape = intern("reshape");
    r.s_copy = intern("copy");
    r.s_to = intern("to");
    r.s_get = intern("get");
    r.s_items = intern("items");
    r.s_dlpack = intern("__dlpack__");
    r.s_dlpack_device = intern("__dlpack_device__");
    r.s_state = intern("state");
    r.s_next_state = intern("next_state");
    r.s_reward = intern("reward");
    r.s_terminated = intern("terminated");
    r.s_done = intern("done");
    r.s_truncated = intern("truncated");
    r.s_info = intern("info");
    r.s_model_state = intern("model_state");
    r.s_elapsed_steps = intern("elapsed_steps");
    const char* keys[] = {"observation", "obs", "image", "pixels", "next_observation", "next_obs"};
    PyObject* tuple = PyTuple_New(6);
    if (tuple == nullptr) throw py::error_already_set();
    for (int i = 0; i < 6; ++i) PyTuple_SET_ITEM(tuple, i, intern(keys[i]));
    r.observation_keys = tuple;
}

void set_torch(py::handle module) {
    Refs& r = refs();
    PyObject* tensor = nullptr;
    PyObject* from_numpy = nullptr;
    if (!module.is_none()) {
        // Checked before anything changes: a half-usable module leaves the
        // previous registration whole.
        py::object t = optional_attr(module, r.s_Tensor);
        py::object f = optional_attr(module, r.s_from_numpy);
        if (!PyType_Check(t.ptr()) || !PyCallable_Check(f.ptr())) {
            throw py::type_error("set_torch needs the torch module or None, got " + std::string(py::repr(module)) +
                                 ", which lacks a Tensor type or from_numpy");
        }
        tensor = t.release().ptr();
        from_numpy = f.release().ptr();
    }
    PyObject* old_tensor = reinterpret_cast<PyObject*>(r.tensor);
    PyObject* old_from_numpy = r.from_numpy;
    r.tensor = reinterpret_cast<PyTypeObject*>(tensor);
    r.from_numpy = from_numpy;
    Py_XDECREF(old_tensor);
    Py_XDECREF(old_from_numpy);
}

bool is_mapping(py::handle x) {
    if (PyDict_Check(x.ptr())) return true;
    int result = PyObject_IsInstance(x.ptr(), refs().mapping_abc);
    if (result < 0) throw py::error_already_set();
    return result == 1;
}

bool has_attr(py::handle x, PyObject* name) {
    PyObject* value = PyObject_GetAttr(x.ptr(), name);
    if (value == nullptr) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
        PyErr_Clear();
        return false;
    }
    Py_DECREF(value);
    return true;
}

py::object optional_attr(py::handle x, PyObject* name) {
    PyObject* value = PyObject_GetAttr(x.ptr(), name);
    if (value == nullptr) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
        PyErr_Clear();
        return py::none();
    }
    return py::reinterpret_steal<py::object>(value);
}

bool is_exact_ndarray(py::handle x) { return Py_TYPE(x.ptr()) == refs().ndarray; }

bool truthy(py::handle x) {
    int result = PyObject_IsTrue(x.ptr());
    if (result < 0) throw py::error_already_set();
    return result == 1;
}

py::object getattr(py::handle x, PyObject* name) { return steal(PyObject_GetAttr(x.ptr(), name)); }

py::object call_method(py::handle x, PyObject* name) {
    return steal(PyObject_CallMethodNoArgs(x.ptr(), name));
}

py::object call_method(py::handle x, PyObject* name, py::handle arg) {
    return steal(PyObject_CallMethodOneArg(x.ptr(), name, arg.ptr()));
}

std::string format_shape(py::handle shape) {
    py::object seq = steal(PySequence_Fast(shape.ptr(), "shape must be a sequence"));
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
    PyObject** items = PySequence_Fast_ITEMS(seq.ptr());
    std::string out = "(";
    for (Py_ssize_t i = 0; i < n; ++i) {
        if (i > 0) out += ", ";
        long long d = PyLong_AsLongLong(items[i]);
        if (d == -1 && PyErr_Occurred()) throw py::error_already_set();
        out += std::to_string(d);
    }
    if (n == 1) out += ",";
    out += ")";
    return out;
}

std::string type_name(py::handle x) {
    return py::str(py::handle(reinterpret_cast<PyObject*>(Py_TYPE(x.ptr()))).attr("__name__"));
}

}  // namespace wmenv
