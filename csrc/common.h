// Objects the core functions look up once (NumPy, collections.abc, torch when
// registered) and small helpers shared by every concern.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

namespace py = pybind11;

namespace wmenv {

struct Refs {
    // NumPy and the standard library: set at import.
    PyTypeObject* ndarray = nullptr;
    PyTypeObject* generic = nullptr;
    PyObject* asarray = nullptr;
    PyObject* from_dlpack = nullptr;
    PyObject* np_shape = nullptr;
    PyObject* np_isfinite = nullptr;
    PyObject* np_floor = nullptr;
    PyObject* mapping_abc = nullptr;
    // torch: set by set_torch(); null when torch is absent. Owned references,
    // released when another module is registered.
    PyTypeObject* tensor = nullptr;
    PyObject* from_numpy = nullptr;
    PyObject* to_dlpack = nullptr;  // torch._C._to_dlpack, or null
    // torch._C._storage_Use_Count and torch.UntypedStorage (null where torch
    // lacks them: every tensor leaf then counts as shared), and what they
    // read for memory that only one converted array views (see
    // secure_observation), measured on a probe at registration.
    PyObject* use_count = nullptr;
    PyTypeObject* storage_type = nullptr;
    long alone_storage = -1;  // the array's base is the storage (this core's conversion)
    long alone_tensor = -1;   // the array's base is a tensor (torch's numpy())
    // torch.is_grad_enabled and torch._C._set_grad_enabled of the registered
    // module, and the two c10::GradMode functions behind them when they could
    // be found in the libc10 torch has loaded and answered a self-test (null
    // otherwise: the switch then goes through the Python callables).
    PyObject* is_grad_enabled = nullptr;
    PyObject* set_grad_enabled = nullptr;
    bool (*grad_is_enabled)() = nullptr;
    void (*grad_set_enabled)(bool) = nullptr;
    // Interned attribute and keyword names.
    PyObject* s_requires_grad = nullptr;
    PyObject* s_detach = nullptr;
    PyObject* s_is_cpu = nullptr;
    PyObject* s_cpu = nullptr;
    PyObject* s_numpy = nullptr;
    PyObject* s_is_conj = nullptr;
    PyObject* s_is_neg = nullptr;
    PyObject* s_resolve_conj = nullptr;
    PyObject* s_resolve_neg = nullptr;
    PyObject* s_untyped_storage = nullptr;
    PyObject* s_resizable = nullptr;
    PyObject* s_cdata = nullptr;
    PyObject* s_Tensor = nullptr;
    PyObject* s_all = nullptr;
    PyObject* s_is_complex = nullptr;
    PyObject* s_is_floating_point = nullptr;
    PyObject* s_isfinite = nullptr;
    PyObject* s_floor = nullptr;
    PyObject* s_from_numpy = nullptr;
    PyObject* s_numel = nullptr;
    PyObject* s_item = nullptr;
    PyObject* s_shape = nullptr;
    PyObject* s_size = nullptr;
    PyObject* s_astype = nullptr;
    PyObject* s_reshape = nullptr;
    PyObject* s_copy = nullptr;
    PyObject* s_to = nullptr;
    PyObject* s_dtype = nullptr;
    PyObject* s_device = nullptr;
    PyObject* s_get = nullptr;
    PyObject* s_items = nullptr;
    PyObject* s_dlpack = nullptr;
    PyObject* s_dlpack_device = nullptr;
    PyObject* s_state = nullptr;
    PyObject* s_next_state = nullptr;
    PyObject* s_reward = nullptr;
    PyObject* s_terminated = nullptr;
    PyObject* s_done = nullptr;
    PyObject* s_truncated = nullptr;
    PyObject* s_info = nullptr;
    PyObject* s_model_state = nullptr;
    PyObject* s_elapsed_steps = nullptr;
    PyObject* observation_keys = nullptr;  // tuple of str, first present wins
};

// Process-wide; lives as long as the interpreter (never freed, so nothing is
// released after the interpreter is gone).
Refs& refs();
void init_refs();
void set_torch(py::handle module);
// Whether the autograd switch goes straight to c10::GradMode (see Refs).
bool native_grad_mode();
// torch's use count of the storage an array's base (a storage or a tensor)
// holds; -1 for any other base or where torch cannot tell.
long base_use_count(PyObject* array);

// Ownership helpers over the C API.
inline py::object steal(PyObject* p) {
    if (p == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(p);
}
inline py::object borrow(py::handle h) { return py::reinterpret_borrow<py::object>(h); }

inline bool is_ndarray(py::handle x) {
    PyTypeObject* t = Py_TYPE(x.ptr());
    return t == refs().ndarray || PyType_IsSubtype(t, refs().ndarray);
}

inline bool is_tensor(py::handle x) {
    PyTypeObject* tensor = refs().tensor;
    if (tensor == nullptr) return false;
    PyTypeObject* t = Py_TYPE(x.ptr());
    return t == tensor || PyType_IsSubtype(t, tensor);
}

bool is_mapping(py::handle x);
// hasattr(x, name): only AttributeError means "absent"; any other error raised
// while looking the attribute up propagates.
bool has_attr(py::handle x, PyObject* name);
// getattr(x, name, None) with the same rule.
py::object optional_attr(py::handle x, PyObject* name);
bool is_exact_ndarray(py::handle x);
bool truthy(py::handle x);
py::object getattr(py::handle x, PyObject* name);
py::object call_method(py::handle x, PyObject* name);
py::object call_method(py::handle x, PyObject* name, py::handle arg);

// Python's str(tuple(int(d) for d in shape)): "()", "(3,)", "(1, 2)".
std::string format_shape(py::handle shape);
std::string type_name(py::handle x);

}  // namespace wmenv
