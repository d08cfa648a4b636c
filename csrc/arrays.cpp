#include "arrays.h"

#include <cstdint>
#include <cstring>
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
    PyObject* view = api.PyArray_NewFromDescr_(api.PyArray_Type_, a->descr, a->nd, a->dimensions, a->strides, a->data,
                                               a->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_, nullptr);
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

namespace {

// The twin's _foreign_memory: x.is_cpu and not x.untyped_storage().resizable();
// a tensor whose storage cannot be read counts as foreign.
bool foreign_memory(py::handle x) {
    const Refs& r = refs();
    try {
        if (!truthy(getattr(x, r.s_is_cpu))) return false;
        return !truthy(call_method(call_method(x, r.s_untyped_storage), r.s_resizable));
    } catch (py::error_already_set&) {
        return true;
    }
}

}  // namespace

py::object leaf_to_numpy(py::handle x, bool protect) {
    if (!protect) return to_numpy(x);
    Refs& r = refs();
    if (r.tensor != nullptr && Py_TYPE(x.ptr()) == r.tensor) {
        // The twin's fast path: the storage, whether torch allocated it, then numpy().
        PyObject* storage = PyObject_CallMethodNoArgs(x.ptr(), r.s_untyped_storage);
        if (storage != nullptr) {
            py::object held = py::reinterpret_steal<py::object>(storage);
            PyObject* resizable = PyObject_CallMethodNoArgs(storage, r.s_resizable);
            int fresh = resizable == nullptr ? -1 : PyObject_IsTrue(resizable);
            Py_XDECREF(resizable);
            PyObject* array = fresh < 0 ? nullptr : PyObject_CallMethodNoArgs(x.ptr(), r.s_numpy);
            if (array != nullptr) {
                py::object owned = py::reinterpret_steal<py::object>(array);
                if (is_exact_ndarray(owned)) {
                    if (fresh == 0) return call_method(owned, r.s_copy);
                    return view_owned_by(std::move(owned), std::move(held));
                }
            }
        }
        PyErr_Clear();  // the long way below raises what applies
    }
    if (is_tensor(x) && foreign_memory(x)) return call_method(to_numpy(x), r.s_copy);
    return to_numpy(x);
}

py::object new_vector(PyObject* descr, Py_ssize_t n) {
    auto& api = py::detail::npy_api::get();
    Py_INCREF(descr);  // PyArray_NewFromDescr steals the descriptor
    return steal(api.PyArray_NewFromDescr_(
        api.PyArray_Type_, descr, 1, &n, nullptr, nullptr,
        py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_WRITEABLE_, nullptr));
}

namespace {

// The DLPack C ABI (legacy "dltensor" capsules), as much of it as is read here.
namespace dl {
struct Device {
    int32_t device_type;
    int32_t device_id;
};
struct DataType {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
};
struct Tensor {
    void* data;
    Device device;
    int32_t ndim;
    DataType dtype;
    int64_t* shape;
    int64_t* strides;  // in elements; null means C-contiguous
    uint64_t byte_offset;
};
struct Managed {
    Tensor dl_tensor;
    void* manager_ctx;
    void (*deleter)(Managed*);
};
constexpr int32_t kCPU = 1;
constexpr uint8_t kInt = 0, kUInt = 1, kFloat = 2, kBool = 6;
constexpr int kMaxDims = 32;
}  // namespace dl

// visit(i, offset) for the n elements of t in C order; offset in elements.
template <typename Visit>
void each_element(const dl::Tensor& t, Py_ssize_t n, Visit&& visit) {
    const int ndim = t.ndim;
    int64_t strides[dl::kMaxDims];
    int64_t contiguous = 1;
    for (int d = ndim - 1; d >= 0; --d) {
        strides[d] = t.strides != nullptr ? t.strides[d] : contiguous;
        contiguous *= t.shape[d];
    }
    if (ndim == 1) {
        for (Py_ssize_t i = 0; i < n; ++i) visit(i, i * strides[0]);
        return;
    }
    int64_t index[dl::kMaxDims] = {};
    int64_t offset = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        visit(i, offset);
        for (int d = ndim - 1; d >= 0; --d) {
            if (++index[d] < t.shape[d]) {
                offset += strides[d];
                break;
            }
            offset -= strides[d] * (t.shape[d] - 1);
            index[d] = 0;
        }
    }
}

// Elements of T's size copied as they are.
template <typename T>
void copy_into(const dl::Tensor& t, const char* base, Py_ssize_t n, char* out) {
    each_element(t, n, [&](Py_ssize_t i, int64_t offset) {
        std::memcpy(out + i * static_cast<int64_t>(sizeof(T)), base + offset * static_cast<int64_t>(sizeof(T)),
                    sizeof(T));
    });
}

template <typename Src>
void nonzero_into(const dl::Tensor& t, const char* base, Py_ssize_t n, bool* out) {
    each_element(t, n, [&](Py_ssize_t i, int64_t offset) {
        Src value;
        std::memcpy(&value, base + offset * static_cast<int64_t>(sizeof(Src)), sizeof(Src));
        out[i] = value != 0;
    });
}

// Floats as flags: false when a value is neither 0 nor 1 (a probability),
// which the general path then refuses with its message.
template <typename Src>
bool flags_into(const dl::Tensor& t, const char* base, Py_ssize_t n, bool* out) {
    bool ok = true;
    each_element(t, n, [&](Py_ssize_t i, int64_t offset) {
        Src value;
        std::memcpy(&value, base + offset * static_cast<int64_t>(sizeof(Src)), sizeof(Src));
        ok = ok && (value == 0 || value == 1);
        out[i] = value != 0;
    });
    return ok;
}

// Fills out (n values of descr's type) from t; false where the pair is not handled here.
bool fill(const dl::Tensor& t, Py_ssize_t n, int type_num, char* out) {
    const char* base = static_cast<const char*>(t.data) + t.byte_offset;
    const uint8_t code = t.dtype.code, bits = t.dtype.bits;
    const bool same = (type_num == py::detail::npy_api::NPY_FLOAT_ && code == dl::kFloat && bits == 32) ||
                      (type_num == py::detail::npy_api::NPY_BOOL_ && code == dl::kBool && bits == 8);
    if (same && bits == 32) return copy_into<uint32_t>(t, base, n, out), true;
    if (same) return copy_into<uint8_t>(t, base, n, out), true;
    if (type_num != py::detail::npy_api::NPY_BOOL_) return false;
    bool* flags = reinterpret_cast<bool*>(out);
    if (code == dl::kInt || code == dl::kUInt) {  // != 0 is the same test signed or not
        switch (bits) {
            case 8: return nonzero_into<uint8_t>(t, base, n, flags), true;
            case 16: return nonzero_into<uint16_t>(t, base, n, flags), true;
            case 32: return nonzero_into<uint32_t>(t, base, n, flags), true;
            case 64: return nonzero_into<uint64_t>(t, base, n, flags), true;
            default: return false;
        }
    }
    if (code == dl::kFloat && bits == 32) return flags_into<float>(t, base, n, flags);
    if (code == dl::kFloat && bits == 64) return flags_into<double>(t, base, n, flags);
    return false;
}

}  // namespace

py::object copy_tensor_values(py::handle x, Py_ssize_t n, PyObject* descr) {
    const Refs& r = refs();
    if (r.to_dlpack == nullptr || Py_TYPE(x.ptr()) != r.tensor) return py::object();
    const auto* d = py::detail::array_descriptor_proxy(descr);
    if ((d->type_num != py::detail::npy_api::NPY_FLOAT_ && d->type_num != py::detail::npy_api::NPY_BOOL_) ||
        (d->byteorder != '=' && d->byteorder != '|')) {
        return py::object();
    }
    // torch's exporter drops a view's negative bit (and conjugate bit, but
    // complex values are not read here): such a view takes the general path,
    // as does anything the exporter refuses, which answers with its own errors.
    if (truthy(call_method(x, r.s_is_neg))) return py::object();
    PyObject* capsule = PyObject_CallOneArg(r.to_dlpack, x.ptr());
    if (capsule == nullptr) {
        PyErr_Clear();
        return py::object();
    }
    py::object held = py::reinterpret_steal<py::object>(capsule);  // its destructor calls the deleter
    auto* managed = static_cast<dl::Managed*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (managed == nullptr) {
        PyErr_Clear();
        return py::object();
    }
    const dl::Tensor& t = managed->dl_tensor;
    if (t.device.device_type != dl::kCPU || t.dtype.lanes != 1 || t.ndim < 0 || t.ndim > dl::kMaxDims) {
        return py::object();
    }
    int64_t count = 1;
    for (int i = 0; i < t.ndim; ++i) count *= t.shape[i];
    if (count != n || (n > 0 && t.data == nullptr)) return py::object();
    py::object out = new_vector(descr, n);
    char* data = py::detail::array_proxy(out.ptr())->data;
    if (n > 0 && !fill(t, n, d->type_num, data)) return py::object();
    return out;
}

}  // namespace wmenv
