#include "common.h"

#include "arrays.h"

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#define WMENV_HAVE_DLFCN 1
#endif

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
    r.s_resizable = intern("resizable");
    r.s_cdata = intern("_cdata");
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
    r.s_dtype = intern("dtype");
    r.s_device = intern("device");
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

namespace {

using IsEnabled = bool (*)();
using SetEnabled = void (*)(bool);

// c10::GradMode::is_enabled() and c10::GradMode::set_enabled(bool), the two
// functions torch.is_grad_enabled and torch._C._set_grad_enabled call.
constexpr const char* kIsEnabled = "_ZN3c108GradMode10is_enabledEv";
constexpr const char* kSetEnabled = "_ZN3c108GradMode11set_enabledEb";

// A symbol of the libc10 that torch has already loaded (never a library of
// its own: RTLD_NOLOAD), or null. The extension does not link torch.
void* torch_symbol(const char* name, const std::string& library) {
#ifdef WMENV_HAVE_DLFCN
    if (void* found = dlsym(RTLD_DEFAULT, name)) return found;
    if (library.empty()) return nullptr;
    void* handle = dlopen(library.c_str(), RTLD_LAZY | RTLD_NOLOAD);  // kept open while the symbol is used
    return handle == nullptr ? nullptr : dlsym(handle, name);
#else
    (void)name;
    (void)library;
    return nullptr;
#endif
}

// <dirname(module.__file__)>/lib/libc10.<so|dylib>, or "" when the module has no file.
std::string libc10_path(py::handle module) {
    PyObject* file = PyObject_GetAttrString(module.ptr(), "__file__");
    if (file == nullptr || !PyUnicode_Check(file)) {
        PyErr_Clear();
        Py_XDECREF(file);
        return "";
    }
    const char* text = PyUnicode_AsUTF8(file);
    std::string path = text == nullptr ? "" : text;
    PyErr_Clear();
    Py_DECREF(file);
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return "";
#ifdef __APPLE__
    return path.substr(0, slash) + "/lib/libc10.dylib";
#else
    return path.substr(0, slash) + "/lib/libc10.so";
#endif
}

// Whether the C functions and the Python callables read and set the same
// switch: both ways, from either state; the state is restored whatever happens.
bool agree(PyObject* py_is, PyObject* py_set, IsEnabled c_is, SetEnabled c_set) {
    auto py_read = [py_is](bool& out) {
        PyObject* value = PyObject_CallNoArgs(py_is);
        if (value == nullptr) return false;
        const int truth = PyObject_IsTrue(value);
        Py_DECREF(value);
        out = truth == 1;
        return truth >= 0;
    };
    bool before = false, seen = false;
    if (!py_read(before)) {
        PyErr_Clear();
        return false;
    }
    bool ok = c_is() == before;
    if (ok) {
        c_set(!before);
        ok = py_read(seen) && seen == !before && c_is() == !before;
    }
    PyObject* restored = PyObject_CallOneArg(py_set, before ? Py_True : Py_False);
    ok = ok && restored != nullptr && c_is() == before && py_read(seen) && seen == before;
    Py_XDECREF(restored);
    if (c_is() != before) c_set(before);
    PyErr_Clear();
    return ok;
}

// The registered module's grad switch: its Python callables, and the C
// functions when found and in agreement with them.
void register_grad_mode(Refs& r, py::handle module) {
    PyObject* old_is = r.is_grad_enabled;
    PyObject* old_set = r.set_grad_enabled;
    r.is_grad_enabled = r.set_grad_enabled = nullptr;
    r.grad_is_enabled = nullptr;
    r.grad_set_enabled = nullptr;
    Py_XDECREF(old_is);
    Py_XDECREF(old_set);
    if (module.is_none()) return;
    const py::str is_name("is_grad_enabled"), c_name("_C"), set_name("_set_grad_enabled");
    py::object is_fn = optional_attr(module, is_name.ptr());
    py::object c_module = optional_attr(module, c_name.ptr());
    py::object set_fn = c_module.is_none() ? py::object(py::none()) : optional_attr(c_module, set_name.ptr());
    if (!PyCallable_Check(is_fn.ptr()) || !PyCallable_Check(set_fn.ptr())) return;
    r.is_grad_enabled = is_fn.release().ptr();
    r.set_grad_enabled = set_fn.release().ptr();
    const std::string library = libc10_path(module);
    auto c_is = reinterpret_cast<IsEnabled>(torch_symbol(kIsEnabled, library));
    auto c_set = reinterpret_cast<SetEnabled>(torch_symbol(kSetEnabled, library));
    if (c_is == nullptr || c_set == nullptr) return;
    if (!agree(r.is_grad_enabled, r.set_grad_enabled, c_is, c_set)) return;
    r.grad_is_enabled = c_is;
    r.grad_set_enabled = c_set;
}

// torch's storage use count, and its reading for memory only one converted
// array views (this core's conversion, and torch's own numpy()), measured on
// probes; left unset where torch cannot tell.
void register_use_count(Refs& r, py::handle module) {
    PyObject* old_count = r.use_count;
    PyObject* old_type = reinterpret_cast<PyObject*>(r.storage_type);
    r.use_count = nullptr;
    r.storage_type = nullptr;
    r.alone_storage = r.alone_tensor = -1;
    Py_XDECREF(old_count);
    Py_XDECREF(old_type);
    if (module.is_none()) return;
    const py::str c_name("_C"), count_name("_storage_Use_Count"), type_name_("UntypedStorage"), zeros_name("zeros");
    py::object c_module = optional_attr(module, c_name.ptr());
    py::object count = c_module.is_none() ? py::object(py::none()) : optional_attr(c_module, count_name.ptr());
    py::object storage_type = optional_attr(module, type_name_.ptr());
    py::object zeros = optional_attr(module, zeros_name.ptr());
    if (!PyCallable_Check(count.ptr()) || !PyType_Check(storage_type.ptr()) || !PyCallable_Check(zeros.ptr())) return;
    try {
        r.use_count = count.ptr();
        r.storage_type = reinterpret_cast<PyTypeObject*>(storage_type.ptr());
        py::object mine = to_numpy(steal(PyObject_CallOneArg(zeros.ptr(), py::int_(2).ptr())));
        py::object theirs = call_method(steal(PyObject_CallOneArg(zeros.ptr(), py::int_(2).ptr())), r.s_numpy);
        const long storage_count = base_use_count(mine.ptr());
        const long tensor_count = base_use_count(theirs.ptr());
        r.use_count = nullptr;
        r.storage_type = nullptr;
        if (storage_count < 0 || tensor_count < 0) return;
        r.use_count = count.release().ptr();
        r.storage_type = reinterpret_cast<PyTypeObject*>(storage_type.release().ptr());
        r.alone_storage = storage_count;
        r.alone_tensor = tensor_count;
    } catch (py::error_already_set&) {  // a torch-like module without storages
        r.use_count = nullptr;
        r.storage_type = nullptr;
    }
}

}  // namespace

long base_use_count(PyObject* array) {
    const Refs& r = refs();
    PyObject* base = py::detail::array_proxy(array)->base;
    if (r.use_count == nullptr || base == nullptr) return -1;
    py::object storage;
    if (Py_TYPE(base) == r.storage_type) {
        storage = borrow(base);
    } else if (Py_TYPE(base) == r.tensor) {
        storage = call_method(base, r.s_untyped_storage);
    } else {
        return -1;
    }
    py::object cdata = getattr(storage, r.s_cdata);
    py::object count = steal(PyObject_CallOneArg(r.use_count, cdata.ptr()));
    long value = PyLong_AsLong(count.ptr());
    if (value == -1 && PyErr_Occurred()) throw py::error_already_set();
    return value;
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
    PyObject* old_to_dlpack = r.to_dlpack;
    r.to_dlpack = nullptr;
    Py_XDECREF(old_to_dlpack);
    if (!module.is_none()) {
        const py::str c_name("_C"), to_dlpack_name("_to_dlpack");
        py::object c_module = optional_attr(module, c_name.ptr());
        py::object to_dlpack =
            c_module.is_none() ? py::object(py::none()) : optional_attr(c_module, to_dlpack_name.ptr());
        if (PyCallable_Check(to_dlpack.ptr())) r.to_dlpack = to_dlpack.release().ptr();
    }
    register_grad_mode(r, module);
    register_use_count(r, module);
}

bool native_grad_mode() { return refs().grad_is_enabled != nullptr; }

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

py::object call_method(py::handle x, PyObject* name) { return steal(PyObject_CallMethodNoArgs(x.ptr(), name)); }

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
