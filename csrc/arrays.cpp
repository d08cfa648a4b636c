#include "arrays.h"

#include <string>

namespace wmenv {
namespace {

// arr, or an array over arr's memory, whose base is owner. An array only this
// call holds (torch's numpy() just made it) gets its base replaced in place;
// any other gets a new view.
py::object view_owned_by(py::object arr, py::object owner) {
    auto* a = py::detail::array_proxy(arr.ptr());
    if (Py_REFCNT(arr.ptr()) == 1 && is_exact_ndarray(arr)) {
        PyObject* old = a->base;
        a->base = owner.release().ptr();
        Py_XDECREF(old);
        return arr;
    }
    auto& api = py::detail::npy_api::get();
    Py_INCREF(a->descr);  // PyArray_NewFromDescr steals the descriptor
    PyObject* view = api.PyArray_NewFromDescr_(api.PyArray_Type_, a->descr, a->nd, a->dimensions, a->strides,
                                               a->data, a->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_, nullptr);
    if (view == nullptr) throw py::error_already_set();
    py::object out = py::reinterpret_steal<py::object>(view);
    if (api.PyArray_SetBaseObject_(view, owner.release().ptr()) != 0) throw py::error_already_set();
    return out;
}

[[noreturn]] void not_an_ndarray(const std::string& name, py::handle got) {
    throw py::type_error(name + ".numpy() returned a " + type_name(got) + ", not a numpy.ndarray");
}

// The twin's _tensor_to_numpy, call for call: subclasses may override any of
// these methods, so they all go through Python's method lookup.
py::object tensor_to_numpy_general(py::handle x) {
    Refs& r = refs();
    const std::string name = type_name(x);
    py::object tensor = call_method(x, r.s_detach);
    if (!truthy(getattr(tensor, r.s_is_cpu))) tensor = call_method(tensor, r.s_cpu);
    if (truthy(call_method(tensor, r.s_is_conj))) tensor = call_method(tensor, r.s_resolve_conj);
    if (truthy(call_method(tensor, r.s_is_neg))) tensor = call_method(tensor, r.s_resolve_neg);
    py::object array = call_method(tensor, r.s_numpy);
    if (!is_exact_ndarray(array)) not_an_ndarray(name, array);
    return array;
}

// A plain torch.Tensor. When numpy() succeeds the tensor is a CPU tensor
// without autograd, conjugate or negative bits, so the twin's detach() would
// change nothing: numpy() has marked the storage non-resizable and the view
// is owned by the storage itself, which no later set_() or .data = on the
// tensor object can free. Anything else takes the twin's path.
py::object tensor_to_numpy(py::handle x) {
    Refs& r = refs();
    if (Py_TYPE(x.ptr()) != r.tensor) return tensor_to_numpy_general(x);
    PyObject* array = PyObject_CallMethodNoArgs(x.ptr(), r.s_numpy);
    if (array == nullptr) {
        PyErr_Clear();
        return tensor_to_numpy_general(x);
    }
    py::object owned = py::reinterpret_steal<py::object>(array);
    if (!is_exact_ndarray(owned)) return tensor_to_numpy_general(x);
    return view_owned_by(std::move(owned), call_method(x, r.s_untyped_storage));
}

// x.__dlpack_device__()[0], checked to come from a (device_type, device_id) tuple.
py::object dlpack_device_type(py::handle x) {
    py::object device = call_method(x, refs().s_dlpack_device);
    if (!PyTuple_CheckExact(device.ptr()) || PyTuple_GET_SIZE(device.ptr()) != 2) {
        throw py::type_error(type_name(x) + ".__dlpack_device__() must return a (device_type, device_id) tuple, got " +
                             std::string(py::repr(device)));
    }
    return borrow(PyTuple_GET_ITEM(device.ptr(), 0));
}

}  // namespace

py::object to_numpy(py::handle x) {
    Refs& r = refs();
    PyTypeObject* type = Py_TYPE(x.ptr());
    if (type == r.ndarray) return borrow(x);
    if (is_tensor(x)) return tensor_to_numpy(x);
    if (PyType_IsSubtype(type, r.ndarray)) return borrow(x);
    if (has_attr(x, r.s_dlpack) && has_attr(x, r.s_dlpack_device)) {
        py::object kind = dlpack_device_type(x);
        static PyObject* cpu = PyLong_FromLong(1);  // kDLCPU
        int equal = PyObject_RichCompareBool(kind.ptr(), cpu, Py_EQ);
        if (equal < 0) throw py::error_already_set();
        if (equal == 1) return steal(PyObject_CallOneArg(r.from_dlpack, x.ptr()));
    }
    return steal(PyObject_CallOneArg(r.asarray, x.ptr()));
}

}  // namespace wmenv
