#include "arrays.h"

#include <string>
#include <vector>

#include "dlpack_abi.h"

namespace wmenv {
namespace {

// The NumPy dtype for a DLPack element type, or null when NumPy has none.
PyObject* numpy_dtype(const dlpack::DataType& t) {
    if (t.lanes != 1) return nullptr;
    const char* code = nullptr;
    int slot = -1;
    switch (t.code) {
        case dlpack::kFloat: code = "f"; slot = 0; break;
        case dlpack::kInt: code = "i"; slot = 1; break;
        case dlpack::kUInt: code = "u"; slot = 2; break;
        case dlpack::kComplex: code = "c"; slot = 3; break;
        case dlpack::kBool: code = "?"; slot = 4; break;
        default: return nullptr;
    }
    int width;
    switch (t.bits) {
        case 8: width = 0; break;
        case 16: width = 1; break;
        case 32: width = 2; break;
        case 64: width = 3; break;
        case 128: width = 4; break;
        default: return nullptr;
    }
    const bool valid = (slot == 0 && width >= 1 && width <= 3) || (slot == 1 && width <= 3) ||
                       (slot == 2 && width <= 3) || (slot == 3 && width >= 3) || (slot == 4 && width == 0);
    if (!valid) return nullptr;
    // Descriptors of builtin types live forever: cache one per (code, width).
    static PyObject* cache[5][5] = {{nullptr}};
    PyObject*& entry = cache[slot][width];
    if (entry == nullptr) {
        std::string spec = slot == 4 ? std::string("?") : std::string(code) + std::to_string(t.bits / 8);
        entry = py::dtype(spec).release().ptr();
    }
    return entry;
}

void delete_managed(PyObject* capsule) {
    auto* managed = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule, dlpack::kUsedCapsuleName));
    if (managed == nullptr) {
        PyErr_Clear();
        return;
    }
    if (managed->deleter != nullptr) managed->deleter(managed);
}

// An array viewing the capsule's CPU tensor, owning it through its base;
// null (no error set) when the tensor is not on the CPU or has a dtype NumPy
// lacks, so that the caller takes the framework's own path.
py::object array_from_capsule(py::handle capsule) {
    auto* managed = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), dlpack::kCapsuleName));
    if (managed == nullptr) {
        PyErr_Clear();
        return py::object();
    }
    const dlpack::Tensor& t = managed->dl_tensor;
    if (t.device.device_type != dlpack::kCPU && t.device.device_type != dlpack::kCUDAHost) return py::object();
    PyObject* descr = numpy_dtype(t.dtype);
    if (descr == nullptr) return py::object();
    const Py_ssize_t itemsize = t.dtype.bits / 8;
    std::vector<Py_ssize_t> shape(t.ndim), strides(t.ndim);
    Py_ssize_t running = itemsize;
    for (int i = t.ndim - 1; i >= 0; --i) {
        shape[i] = static_cast<Py_ssize_t>(t.shape[i]);
        strides[i] = t.strides != nullptr ? static_cast<Py_ssize_t>(t.strides[i]) * itemsize : running;
        running *= shape[i];
    }
    char* data = static_cast<char*>(t.data) + t.byte_offset;
    // The base owns the tensor from here on: rename the producer's capsule
    // first, so that exactly one of the two ever calls the deleter.
    if (PyCapsule_SetName(capsule.ptr(), dlpack::kUsedCapsuleName) != 0) throw py::error_already_set();
    py::object owner = steal(PyCapsule_New(managed, dlpack::kUsedCapsuleName, delete_managed));
    py::dtype dtype = py::reinterpret_borrow<py::dtype>(descr);
    return py::array(dtype, std::move(shape), std::move(strides), data, owner);
}

py::object tensor_to_numpy(py::handle x) {
    Refs& r = refs();
    py::object tensor = borrow(x);
    if (truthy(getattr(tensor, r.s_requires_grad))) tensor = call_method(tensor, r.s_detach);
    PyObject* capsule = PyObject_CallOneArg(r.to_dlpack, tensor.ptr());
    if (capsule != nullptr) {
        py::object owned = py::reinterpret_steal<py::object>(capsule);
        py::object array = array_from_capsule(owned);
        if (array) return array;
    } else {
        PyErr_Clear();  // e.g. a conjugated view: torch's own path reports it
    }
    if (!truthy(getattr(tensor, r.s_is_cpu))) tensor = call_method(tensor, r.s_cpu);
    return call_method(tensor, r.s_numpy);
}

}  // namespace

py::object to_numpy(py::handle x) {
    Refs& r = refs();
    PyTypeObject* type = Py_TYPE(x.ptr());
    if (type == r.ndarray) return borrow(x);
    if (is_tensor(x)) return tensor_to_numpy(x);
    if (PyType_IsSubtype(type, r.ndarray)) return borrow(x);
    if (PyObject_HasAttr(x.ptr(), r.s_dlpack) && PyObject_HasAttr(x.ptr(), r.s_dlpack_device)) {
        py::object device = call_method(x, r.s_dlpack_device);
        py::object kind = steal(PySequence_GetItem(device.ptr(), 0));
        int equal = PyObject_RichCompareBool(kind.ptr(), py::int_(static_cast<int>(dlpack::kCPU)).ptr(), Py_EQ);
        if (equal < 0) throw py::error_already_set();
        if (equal == 1) return steal(PyObject_CallOneArg(r.from_dlpack, x.ptr()));
    }
    return steal(PyObject_CallOneArg(r.asarray, x.ptr()));
}

}  // namespace wmenv
