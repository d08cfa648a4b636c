#include "scalars.h"

#include "arrays.h"

#include <climits>
#include <cstdint>
#include <cstring>

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
    py::object value = call_method(array, r.s_item);
    const char kind =
        py::detail::array_descriptor_proxy(is_ndarray(array) ? py::detail::array_proxy(array.ptr())->descr
                                                             : getattr(array, py::str("dtype").ptr()).ptr())
            ->kind;
    if (kind == 'U' || kind == 'S' || kind == 'V' || PyUnicode_Check(value.ptr()) || PyBytes_Check(value.ptr())) {
        throw py::value_error(name + " must be a number or a one-element array of numbers, got " +
                              std::string(py::repr(x)));
    }
    return value;
}

// The twin's _check_numbers: strings are no numbers ("False" would be True).
void check_numbers(py::handle array, const std::string& name) {
    auto* descr = py::detail::array_descriptor_proxy(py::detail::array_proxy(array.ptr())->descr);
    bool text = descr->kind == 'U' || descr->kind == 'S' || descr->kind == 'V';
    if (!text && descr->kind == 'O') {
        py::object iterator = steal(PyObject_GetIter(getattr(array, py::str("flat").ptr()).ptr()));
        while (PyObject* item = PyIter_Next(iterator.ptr())) {
            text = PyUnicode_Check(item) || PyBytes_Check(item);
            Py_DECREF(item);
            if (text) break;
        }
        if (PyErr_Occurred()) throw py::error_already_set();
    }
    if (text) {
        throw py::value_error(name + " must hold numbers, one per env, got an array of dtype " +
                              std::string(py::str(getattr(array, py::str("dtype").ptr()))));
    }
}

// The twin's _not_a_flag.
[[noreturn]] void not_a_flag(const std::string& name, py::handle value) {
    throw py::value_error(name + " is " + std::string(py::repr(value)) +
                          ", a float that is neither 0 nor 1: a termination head that gives a probability would end "
                          "every episode where it is nonzero; threshold it with terminated_threshold=0.5 (an env "
                          "option), or return a bool");
}

}  // namespace

py::object as_reward(py::handle x) {
    PyObject* p = x.ptr();
    if (PyFloat_CheckExact(p)) return borrow(x);
    if (PyLong_CheckExact(p) || PyBool_Check(p)) return steal(PyNumber_Float(p));
    if (Py_TYPE(p) == refs().tensor) {
        // float(t.item()): what the twin computes for a one-element tensor (a
        // complex one included, which float() refuses; item() does not warn
        // about requires_grad as float(t) does); any failure of item() goes
        // the twin's way for its error.
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
    py::object value;
    if (Py_TYPE(x.ptr()) == refs().tensor) {
        PyObject* item = PyObject_CallMethodNoArgs(x.ptr(), refs().s_item);  // the twin's x.item()
        if (item != nullptr) {
            value = py::reinterpret_steal<py::object>(item);
        } else {
            if (!PyErr_ExceptionMatches(PyExc_RuntimeError)) throw py::error_already_set();
            PyErr_Clear();
        }
    }
    if (!value) value = one_element(x, name);
    if (PyFloat_CheckExact(value.ptr())) {
        const double v = PyFloat_AS_DOUBLE(value.ptr());
        if (v != 0.0 && v != 1.0) not_a_flag(name, value);
    }
    return py::bool_(truthy(value));
}

py::object as_batch(py::handle x, Py_ssize_t num_envs, py::handle dtype_like, const std::string& name) {
    Refs& r = refs();
    // np.dtype(dtype_like) first, as the twin: anything else is NumPy's error.
    const py::object dtype = py::isinstance<py::dtype>(dtype_like)
                                 ? borrow(dtype_like)
                                 : py::object(py::dtype::from_args(borrow(dtype_like)));
    const std::string count = std::to_string(num_envs);
    if (x.is_none()) throw py::type_error(name + " must be an array of " + count + " values, got None");
    py::object array;
    if (Py_TYPE(x.ptr()) == r.tensor) {
        py::object values = copy_tensor_values(x, num_envs, dtype.ptr());
        if (values) return values;
        // The values are copied below, so the view needs no owner of its own:
        // torch's numpy() is enough (anything unusual takes to_numpy's path).
        PyObject* view = PyObject_CallMethodNoArgs(x.ptr(), r.s_numpy);
        if (view == nullptr) PyErr_Clear();
        array = py::reinterpret_steal<py::object>(view);
        if (view != nullptr && !is_exact_ndarray(array)) array = py::object();
    }
    if (!array) array = to_numpy(x);
    auto* a = py::detail::array_proxy(array.ptr());
    Py_ssize_t size = 1;
    for (int i = 0; i < a->nd; ++i) size *= a->dimensions[i];
    if (size != num_envs) {
        throw py::value_error(name + " must hold " + count + " values, one per env (shape (" + count +
                              ",)), got shape " + format_shape(getattr(array, r.s_shape)));
    }
    check_numbers(array, name);
    auto* want = py::detail::array_descriptor_proxy(dtype.ptr());
    auto* have = py::detail::array_descriptor_proxy(py::detail::array_proxy(array.ptr())->descr);
    if (want->type_num == py::detail::npy_api::NPY_BOOL_ && have->kind == 'f') {  // the twin's flag check
        static PyObject* flatnonzero = py::object(py::module_::import("numpy").attr("flatnonzero")).release().ptr();
        py::object flat = call_method(array, r.s_reshape, py::int_(num_envs));
        py::object zero = steal(PyObject_RichCompare(flat.ptr(), py::int_(0).ptr(), Py_NE));
        py::object one = steal(PyObject_RichCompare(flat.ptr(), py::int_(1).ptr(), Py_NE));
        py::object bad = steal(PyObject_CallOneArg(flatnonzero, steal(PyNumber_And(zero.ptr(), one.ptr())).ptr()));
        if (PyObject_Length(bad.ptr()) > 0) {
            py::object first = steal(PySequence_GetItem(bad.ptr(), 0));
            py::object value = steal(PyNumber_Float(steal(PyObject_GetItem(flat.ptr(), first.ptr())).ptr()));
            not_a_flag(name + " of env " + std::string(py::str(steal(PyNumber_Long(first.ptr())))), value);
        }
    }
    // arr.reshape(num_envs).astype(dtype): one new C-contiguous array, cast on the way.
    if (a->nd != 1) array = call_method(array, r.s_reshape, py::int_(num_envs));
    auto& api = py::detail::npy_api::get();
    Py_INCREF(dtype.ptr());              // PyArray_FromAny steals the descriptor
    constexpr int kEnsureCopy = 0x0020;  // NPY_ARRAY_ENSURECOPY (NumPy's public ABI; pybind11 names no constant)
    using api_t = py::detail::npy_api;
    const int flags = kEnsureCopy | api_t::NPY_ARRAY_C_CONTIGUOUS_ | api_t::NPY_ARRAY_ALIGNED_ |
                      api_t::NPY_ARRAY_WRITEABLE_ | api_t::NPY_ARRAY_FORCECAST_;
    return steal(api.PyArray_FromAny_(array.ptr(), dtype.ptr(), 0, 0, flags, nullptr));
}

namespace {

void check_counter(py::handle x, const char* name, char code, const char* kind, Py_ssize_t n) {
    bool ok = is_exact_ndarray(x) && py::detail::array_proxy(x.ptr())->nd == 1;
    if (ok) {
        auto dtype =
            py::reinterpret_borrow<py::dtype>(reinterpret_cast<PyObject*>(py::detail::array_proxy(x.ptr())->descr));
        ok = dtype.kind() == code && dtype.itemsize() == (code == 'b' ? 1 : 8) && dtype.byteorder() != '>';
    }
    if (!ok) {
        throw py::type_error(std::string(name) + " must be a 1-d " + kind + " array, got " + type_name(x));
    }
    Py_ssize_t got = py::detail::array_proxy(x.ptr())->dimensions[0];
    if (n >= 0 && got != n) {
        throw py::value_error(std::string(name) + " must have " + std::to_string(n) + " entries, got " +
                              std::to_string(got));
    }
}

// The elements of a checked 1-d array: its data and its stride, read once.
struct Strided {
    char* data;
    Py_ssize_t stride;
    explicit Strided(py::handle x)
        : data(py::detail::array_proxy(x.ptr())->data), stride(py::detail::array_proxy(x.ptr())->strides[0]) {}
    char* operator[](Py_ssize_t i) const { return data + i * stride; }
};

}  // namespace

py::tuple count_steps(py::handle elapsed, py::handle terminated, py::handle truncated, py::handle max_episode_steps) {
    using api = py::detail::npy_api;
    check_counter(elapsed, "elapsed", 'i', "int64", -1);
    const Py_ssize_t n = py::detail::array_proxy(elapsed.ptr())->dimensions[0];
    check_counter(terminated, "terminated", 'b', "bool", n);
    check_counter(truncated, "truncated", 'b', "bool", n);
    if (!(py::detail::array_proxy(truncated.ptr())->flags & api::NPY_ARRAY_WRITEABLE_)) {
        throw py::value_error("truncated must be writeable");
    }
    bool limited = !max_episode_steps.is_none();
    long long limit = 0;
    if (limited) {
        int overflow = 0;
        limit = PyLong_AsLongLongAndOverflow(max_episode_steps.ptr(), &overflow);
        if (limit == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (overflow > 0) limited = false;  // beyond int64: never reached
        if (overflow < 0) limit = LLONG_MIN;
    }
    static PyObject* int64 = py::dtype::of<int64_t>().release().ptr();
    static PyObject* boolean = py::dtype::of<bool>().release().ptr();
    py::object next = new_vector(int64, n);
    py::object ended = new_vector(boolean, n);
    auto* out = reinterpret_cast<int64_t*>(py::detail::array_proxy(next.ptr())->data);
    auto* done = reinterpret_cast<bool*>(py::detail::array_proxy(ended.ptr())->data);
    const Strided before(elapsed), term(terminated), trunc(truncated);
    for (Py_ssize_t i = 0; i < n; ++i) {  // checked before anything is written
        int64_t count;
        std::memcpy(&count, before[i], sizeof count);
        if (count == INT64_MAX) {
            throw py::value_error("a step counter is at its largest value (2**63 - 1) and cannot count another step");
        }
    }
    for (Py_ssize_t i = 0; i < n; ++i) {
        int64_t count;
        std::memcpy(&count, before[i], sizeof count);
        out[i] = count + 1;
        // NumPy bools are read as bytes: any nonzero byte is true, as NumPy reads it
        if (limited && out[i] >= limit) *trunc[i] = 1;
        done[i] = *term[i] != 0 || *trunc[i] != 0;
    }
    return py::make_tuple(std::move(next), std::move(ended));
}

}  // namespace wmenv
