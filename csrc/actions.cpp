#include "actions.h"

#include <string>

namespace wmenv {
namespace {

struct ActionSpec {
    PyObject* shape;
    Py_ssize_t size;
    PyObject* dtype;
    PyObject* low;   // Python ints: the range check is exact at any magnitude
    PyObject* high;  // low + n, owned by the caller's holder
    bool discrete;
    bool multi;  // MultiDiscrete/MultiBinary: low and n are arrays, one range per entry
    PyObject* n;
    PyObject* space_repr;
    PyObject* torch_dtype;
    PyObject* device;
    bool to_torch;
    bool integral;
};

ActionSpec unpack(py::handle spec, py::object& high) {
    PyObject* s = spec.ptr();
    if (!PyTuple_Check(s) || PyTuple_GET_SIZE(s) != 10) throw py::type_error("action spec must be a 10-tuple or None");
    ActionSpec out;
    out.shape = PyTuple_GET_ITEM(s, 0);
    out.size = PyLong_AsSsize_t(PyTuple_GET_ITEM(s, 1));
    if (out.size == -1 && PyErr_Occurred()) throw py::error_already_set();
    out.dtype = PyTuple_GET_ITEM(s, 2);
    out.low = PyTuple_GET_ITEM(s, 3);
    PyObject* n = PyTuple_GET_ITEM(s, 4);
    out.n = n;
    out.multi = false;
    if (n == Py_None) {
        out.discrete = false;
    } else if (is_ndarray(n)) {
        out.discrete = false;
        out.multi = true;
    } else if (PyLong_CheckExact(n)) {  // n >= 0, without making a 0 to compare with
        int overflow = 0;
        long long value = PyLong_AsLongLongAndOverflow(n, &overflow);
        if (value == -1 && PyErr_Occurred()) throw py::error_already_set();
        out.discrete = overflow > 0 || (overflow == 0 && value >= 0);
    } else {
        int negative = PyObject_RichCompareBool(n, py::int_(0).ptr(), Py_LT);
        if (negative < 0) throw py::error_already_set();
        out.discrete = negative == 0;
    }
    out.high = nullptr;
    if (out.discrete) {
        high = steal(PyNumber_Add(out.low, n));
        out.high = high.ptr();
    }
    out.space_repr = PyTuple_GET_ITEM(s, 5);
    out.torch_dtype = PyTuple_GET_ITEM(s, 6);
    out.device = PyTuple_GET_ITEM(s, 7);
    out.to_torch = truthy(PyTuple_GET_ITEM(s, 8));
    out.integral = truthy(PyTuple_GET_ITEM(s, 9));
    return out;
}

[[noreturn]] void wrong_count(const ActionSpec& spec, py::handle shape) {
    throw py::value_error("action must hold " + std::to_string(spec.size) + " element" + (spec.size == 1 ? "" : "s") +
                          " for " + std::string(py::str(spec.space_repr)) + ", got shape " + format_shape(shape));
}

bool compare(PyObject* a, PyObject* b, int op) {
    int result = PyObject_RichCompareBool(a, b, op);
    if (result < 0) throw py::error_already_set();
    return result == 1;
}

// int(x.item()) checked against a Discrete space's range, in Python ints.
void check_discrete(const ActionSpec& spec, py::handle x) {
    py::object value = steal(PyNumber_Long(call_method(x, refs().s_item).ptr()));
    if (compare(value.ptr(), spec.low, Py_LT) || compare(value.ptr(), spec.high, Py_GE)) {
        py::object last = steal(PyNumber_Subtract(spec.high, py::int_(1).ptr()));
        throw py::value_error("action " + std::string(py::str(value)) + " is outside " +
                              std::string(py::str(spec.space_repr)) + " (valid: " + std::string(py::str(spec.low)) +
                              " to " + std::string(py::str(last)) + ")");
    }
}

[[noreturn]] void not_integral(py::handle action, const ActionSpec& spec) {
    throw py::value_error("action " + std::string(py::repr(action)) + " is not an integer, as " +
                          std::string(py::str(spec.space_repr)) + " requires");
}

bool all_of(py::handle x) { return truthy(call_method(x, refs().s_all)); }

// The twin's _check_integral_tensor.
void check_integral_tensor(py::handle action, py::handle tensor, const ActionSpec& spec) {
    Refs& r = refs();
    if (truthy(call_method(tensor, r.s_is_complex))) not_integral(action, spec);
    if (truthy(call_method(tensor, r.s_is_floating_point))) {
        if (!all_of(call_method(tensor, r.s_isfinite))) not_integral(action, spec);
        py::object floor = call_method(tensor, r.s_floor);
        if (!all_of(steal(PyObject_RichCompare(floor.ptr(), tensor.ptr(), Py_EQ)))) not_integral(action, spec);
    }
}

// Whether every element of an object array is a Python int (not a subclass).
bool all_python_ints(py::handle raw) {
    py::object flat = getattr(raw, py::str("flat").ptr());
    py::object iterator = steal(PyObject_GetIter(flat.ptr()));
    bool any = false;
    while (PyObject* item = PyIter_Next(iterator.ptr())) {
        const bool is_int = PyLong_CheckExact(item);
        Py_DECREF(item);
        if (!is_int) return false;
        any = true;
    }
    if (PyErr_Occurred()) throw py::error_already_set();
    return any;
}

// The twin's _check_integral_array.
void check_integral_array(py::handle action, py::handle raw, const ActionSpec& spec) {
    Refs& r = refs();
    char kind = py::detail::array_descriptor_proxy(py::detail::array_proxy(raw.ptr())->descr)->kind;
    if (kind == 'b' || kind == 'i' || kind == 'u') return;
    if (kind == 'O' && all_python_ints(raw)) return;  // beyond int64: the range check says where they fall
    if (kind != 'f') not_integral(action, spec);
    if (!all_of(steal(PyObject_CallOneArg(r.np_isfinite, raw.ptr())))) not_integral(action, spec);
    py::object floor = steal(PyObject_CallOneArg(r.np_floor, raw.ptr()));
    if (!all_of(steal(PyObject_RichCompare(floor.ptr(), raw.ptr(), Py_EQ)))) not_integral(action, spec);
}

// The twin's _check_multi: each entry of the action within its own range.
void check_multi(const ActionSpec& spec, py::handle values) {
    static PyObject* flatnonzero = py::object(py::module_::import("numpy").attr("flatnonzero")).release().ptr();
    const py::int_ minus_one(-1);
    py::object flat = call_method(values, refs().s_reshape, minus_one);
    py::object lows = call_method(spec.low, refs().s_reshape, minus_one);
    py::object highs = steal(PyNumber_Add(lows.ptr(), call_method(spec.n, refs().s_reshape, minus_one).ptr()));
    py::object below = steal(PyObject_RichCompare(flat.ptr(), lows.ptr(), Py_LT));
    py::object above = steal(PyObject_RichCompare(flat.ptr(), highs.ptr(), Py_GE));
    py::object bad = steal(PyObject_CallOneArg(flatnonzero, steal(PyNumber_Or(below.ptr(), above.ptr())).ptr()));
    if (PyObject_Length(bad.ptr()) == 0) return;
    py::object index = steal(PySequence_GetItem(bad.ptr(), 0));
    auto number = [&index](py::handle array) {
        return std::string(py::str(steal(PyNumber_Long(steal(PyObject_GetItem(array.ptr(), index.ptr())).ptr()))));
    };
    py::object last =
        steal(PyNumber_Subtract(steal(PyObject_GetItem(highs.ptr(), index.ptr())).ptr(), py::int_(1).ptr()));
    throw py::value_error("action " + std::string(py::str(call_method(values, py::str("tolist").ptr()))) +
                          " is outside " + std::string(py::str(spec.space_repr)) + ": entry " +
                          std::string(py::str(steal(PyNumber_Long(index.ptr())))) + " is " + number(flat) +
                          " (valid: " + number(lows) + " to " + std::string(py::str(steal(PyNumber_Long(last.ptr())))) +
                          ")");
}

// The twin's _check_range, on the action's values as given.
void check_range(const ActionSpec& spec, py::handle values) {
    if (spec.discrete) check_discrete(spec, values);
    if (spec.multi) check_multi(spec, values);
}

bool same_shape(py::handle shape, PyObject* expected) {
    int equal = PyObject_RichCompareBool(shape.ptr(), expected, Py_EQ);
    if (equal < 0) throw py::error_already_set();
    return equal == 1;
}

// arr.shape == shape for a tuple of Python ints, without making arr.shape.
bool has_dims(py::detail::PyArray_Proxy* arr, PyObject* shape) {
    if (!PyTuple_CheckExact(shape)) return same_shape(getattr(reinterpret_cast<PyObject*>(arr), refs().s_shape), shape);
    Py_ssize_t n = PyTuple_GET_SIZE(shape);
    if (arr->nd != n) return false;
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* d = PyTuple_GET_ITEM(shape, i);
        if (!PyLong_CheckExact(d)) return same_shape(getattr(reinterpret_cast<PyObject*>(arr), refs().s_shape), shape);
        Py_ssize_t value = PyLong_AsSsize_t(d);
        if (value == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return false;  // beyond any dimension
        }
        if (arr->dimensions[i] != value) return false;
    }
    return true;
}

py::object tensor_action(py::handle action, const ActionSpec& spec) {
    Refs& r = refs();
    // A tensor action is detached (a graph never reaches the model through
    // it); perf: only one that carries a graph, since detach() is an op.
    py::object tensor = truthy(getattr(action, r.s_requires_grad)) ? call_method(action, r.s_detach) : borrow(action);
    py::object plain = tensor;
    if (spec.integral) check_integral_tensor(action, plain, spec);
    long long numel = PyLong_AsLongLong(call_method(tensor, r.s_numel).ptr());
    if (numel == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (numel != spec.size) wrong_count(spec, getattr(tensor, r.s_shape));
    if (spec.integral) check_range(spec, call_method(call_method(plain, r.s_cpu), r.s_numpy));
    if (!spec.to_torch) return borrow(action);
    // torch.Size is a tuple: equal to the spec's shape tuple when it matches.
    if (!same_shape(getattr(tensor, r.s_shape), spec.shape)) tensor = call_method(tensor, r.s_reshape, spec.shape);
    // perf: no .to() when the dtype and the device already are the spec's
    // (a device of None keeps the tensor where it is)
    const bool same_dtype = getattr(tensor, r.s_dtype).ptr() == spec.torch_dtype;
    bool same_device = spec.device == Py_None;
    if (!same_device) {
        const int eq = PyObject_RichCompareBool(getattr(tensor, r.s_device).ptr(), spec.device, Py_EQ);
        if (eq < 0) throw py::error_already_set();
        same_device = eq == 1;
    }
    if (same_dtype && same_device) return tensor;
    py::dict kwargs;
    kwargs["device"] = py::handle(spec.device);
    kwargs["dtype"] = py::handle(spec.torch_dtype);
    py::object to = getattr(tensor, r.s_to);
    return steal(PyObject_Call(to.ptr(), py::tuple(0).ptr(), kwargs.ptr()));
}

}  // namespace

py::object convert_action(py::handle action, py::handle spec_obj) {
    if (spec_obj.is_none()) return borrow(action);
    Refs& r = refs();
    py::object high;
    const ActionSpec spec = unpack(spec_obj, high);
    if (is_tensor(action)) return tensor_action(action, spec);
    py::object array;
    PyObject* p = action.ptr();
    if (spec.integral) {  // checked on the values as given: a cast to int64 could wrap them
        py::object raw = Py_TYPE(p) == r.ndarray ? borrow(action) : steal(PyObject_CallOneArg(r.asarray, p));
        check_integral_array(action, raw, spec);
        auto* raw_proxy = py::detail::array_proxy(raw.ptr());
        Py_ssize_t raw_size = 1;
        for (int i = 0; i < raw_proxy->nd; ++i) raw_size *= raw_proxy->dimensions[i];
        if (raw_size != spec.size) wrong_count(spec, getattr(raw, r.s_shape));
        check_range(spec, raw);
    }
    if (Py_TYPE(p) == r.ndarray && reinterpret_cast<PyObject*>(py::detail::array_proxy(p)->descr) == spec.dtype) {
        array = borrow(action);  // np.asarray would hand back the same object
    } else {
        // np.asarray(action, dtype=dtype)
        static PyObject* kwnames = py::make_tuple("dtype").release().ptr();
        PyObject* call_args[] = {p, spec.dtype};
        array = steal(PyObject_Vectorcall(r.asarray, call_args, 1, kwnames));
    }
    auto* proxy = py::detail::array_proxy(array.ptr());
    Py_ssize_t size = 1;
    for (int i = 0; i < proxy->nd; ++i) size *= proxy->dimensions[i];
    if (size != spec.size) wrong_count(spec, getattr(array, r.s_shape));
    if (!spec.to_torch) return borrow(action);
    if (!has_dims(proxy, spec.shape)) array = call_method(array, r.s_reshape, spec.shape);
    proxy = py::detail::array_proxy(array.ptr());
    if ((proxy->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) == 0) array = call_method(array, r.s_copy);
    PyObject* tensor = PyObject_CallOneArg(r.from_numpy, array.ptr());
    if (tensor == nullptr) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) throw py::error_already_set();
        PyErr_Clear();  // negative strides: torch cannot view them
        py::object copy = call_method(array, r.s_copy);
        tensor = PyObject_CallOneArg(r.from_numpy, copy.ptr());
    }
    py::object result = steal(tensor);
    if (spec.device != Py_None) result = call_method(result, r.s_to, spec.device);
    return result;
}

}  // namespace wmenv
