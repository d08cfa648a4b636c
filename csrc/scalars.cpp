#include "scalars.h"

#include "arrays.h"

namespace wmenv {
namespace {

[[noreturn]] void not_one_element(const std::string& name, py::handle shape) {
    throw py::value_error(name + " must hold one element, got shape " + format_shape(shape) +
                          "; use WorldModelVectorEnv for batches");
}

// The single element of x as a Python scalar (x.item()), or an error naming
// the shape when x holds another number of elements.
py::object one_element(py::handle x, const std::string& name) {
    Refs& r = refs();
    if (x.is_none()) throw py::type_error(name + " must be a number or a one-element array, got None");
    if (is_tensor(x)) {
        py::object numel = call_method(x, r.s_numel);
        long long n = PyLong_AsLongLong(numel.ptr());
        if (n == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (n != 1) not_one_element(name, getattr(x, r.s_shape));
        py::object value = borrow(x);
        if (truthy(getattr(x, r.s_requires_grad))) value = call_method(x, r.s_detach);  // no autograd warning
        return call_method(value, r.s_item);
    }
    py::object array = borrow(x);
    if (!is_ndarray(x) && !PyObject_TypeCheck(x.ptr(), r.generic)) {
        array = steal(PyObject_CallOneArg(r.asarray, x.ptr()));
    }
    py::object size = getattr(array, r.s_size);
    long long n = PyLong_AsLongLong(size.ptr());
    if (n == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (n != 1) not_one_element(name, getattr(array, r.s_shape));
    return call_method(array, r.s_item);
}

}  // namespace

py::object as_reward(py::handle x) {
    PyObject* p = x.ptr();
    if (PyFloat_CheckExact(p)) return borrow(x);
    if (PyLong_CheckExact(p) || PyBool_Check(p)) return steal(PyNumber_Float(p));
    if (Py_TYPE(p) == refs().tensor && !truthy(getattr(x, refs().s_requires_grad))) {
        // float(t.item()): what the twin computes for a one-element tensor (a
        // complex one included, which float() refuses); any failure of item()
        // goes the twin's way for its error.
        PyObject* value = PyObject_CallMethodNoArgs(p, refs().s_item);
        if (value != nullptr) {
            py::object item = py::reinterpret_steal<py::object>(value);
            return steal(PyNumber_Float(item.ptr()));
        }
        PyErr_Clear();
    }
    return steal(PyNumber_Float(one_element(x, "reward").ptr()));
}

py::object as_flag(py::handle x, const std::string& name) {
    if (PyBool_Check(x.ptr())) return borrow(x);
    if (Py_TYPE(x.ptr()) == refs().tensor && !truthy(getattr(x, refs().s_requires_grad))) {
        int value = PyObject_IsTrue(x.ptr());  // bool(t), as bool(t.item())
        if (value >= 0) return py::bool_(value == 1);
        PyErr_Clear();
    }
    return py::bool_(truthy(one_element(x, name)));
}

py::object as_batch(py::handle x, Py_ssize_t num_envs, py::handle dtype, const std::string& name) {
    Refs& r = refs();
    const std::string count = std::to_string(num_envs);
    if (x.is_none()) throw py::type_error(name + " must be an array of " + count + " values, got None");
    py::object array = to_numpy(x);
    Py_ssize_t size = PyLong_AsSsize_t(getattr(array, r.s_size).ptr());
    if (size == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (size != num_envs) {
        throw py::value_error(name + " must hold " + count + " values, one per env (shape (" + count +
                              ",)), got shape " + format_shape(getattr(array, r.s_shape)));
    }
    py::object flat = call_method(array, r.s_reshape, py::int_(num_envs));
    return call_method(flat, r.s_astype, dtype);
}

}  // namespace wmenv
