#include "observations.h"

#include "arrays.h"

namespace wmenv {
namespace {

py::object to_numpy_tree(py::handle x) {
    if (x.is_none()) return py::none();
    if (is_mapping(x)) {
        py::dict out;
        py::object items = call_method(x, refs().s_items);
        for (py::handle item : items) {
            py::tuple pair = py::reinterpret_borrow<py::tuple>(item);
            out[pair[0]] = to_numpy_tree(pair[1]);
        }
        return std::move(out);
    }
    if (PyTuple_Check(x.ptr())) {
        Py_ssize_t n = PyTuple_GET_SIZE(x.ptr());
        py::tuple out(n);
        for (Py_ssize_t i = 0; i < n; ++i) out[i] = to_numpy_tree(PyTuple_GET_ITEM(x.ptr(), i));
        return std::move(out);
    }
    if (PyList_Check(x.ptr())) {
        Py_ssize_t n = PyList_GET_SIZE(x.ptr());
        py::list out(n);
        for (Py_ssize_t i = 0; i < n; ++i) out[i] = to_numpy_tree(PyList_GET_ITEM(x.ptr(), i));
        return std::move(out);
    }
    return to_numpy(x);
}

bool same_shape(py::handle array, py::handle expected) {
    auto* arr = py::detail::array_proxy(array.ptr());
    Py_ssize_t n = PyTuple_GET_SIZE(expected.ptr());
    if (arr->nd != n) return false;
    for (Py_ssize_t i = 0; i < n; ++i) {
        Py_ssize_t d = PyLong_AsSsize_t(PyTuple_GET_ITEM(expected.ptr(), i));
        if (d == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (arr->dimensions[i] != d) return false;
    }
    return true;
}

// The twin's _leaf_shape: () for Python numbers, tuple(x.shape) when there
// is one, np.shape(x) for lists and tuples, None otherwise.
py::object leaf_shape(py::handle x) {
    PyObject* p = x.ptr();
    if (PyBool_Check(p) || PyLong_Check(p) || PyFloat_Check(p)) return py::tuple(0);
    PyObject* shape = PyObject_GetAttr(p, refs().s_shape);
    if (shape == nullptr) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
        PyErr_Clear();
    } else if (shape != Py_None) {
        py::object owned = py::reinterpret_steal<py::object>(shape);
        PyObject* seq = PySequence_Tuple(shape);
        if (seq == nullptr) {
            if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                return py::none();
            }
            throw py::error_already_set();
        }
        py::tuple dims = py::reinterpret_steal<py::tuple>(seq);
        py::tuple out(dims.size());
        for (size_t i = 0; i < dims.size(); ++i) {
            PyObject* d = PyNumber_Long(dims[i].ptr());  // int(d)
            if (d == nullptr) {
                if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
                    PyErr_Clear();
                    return py::none();
                }
                throw py::error_already_set();
            }
            out[i] = py::reinterpret_steal<py::object>(d);
        }
        return std::move(out);
    } else {
        Py_DECREF(shape);
    }
    if (PyList_Check(p) || PyTuple_Check(p)) {
        PyObject* result = PyObject_CallOneArg(refs().np_shape, p);
        if (result == nullptr) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                return py::none();
            }
            throw py::error_already_set();
        }
        return py::reinterpret_steal<py::object>(result);
    }
    return py::none();
}

bool contains(py::handle mapping, py::handle key) {
    int found = PySequence_Contains(mapping.ptr(), key.ptr());
    if (found < 0) throw py::error_already_set();
    return found == 1;
}

// The kind of a well-formed observation spec (the twin's _spec_kind).
long spec_kind(py::handle spec) {
    PyObject* s = spec.ptr();
    if (PyTuple_CheckExact(s) && PyTuple_GET_SIZE(s) > 0) {
        PyObject* kind = PyTuple_GET_ITEM(s, 0);
        if (PyLong_CheckExact(kind)) {
            long k = PyLong_AsLong(kind);
            Py_ssize_t n = PyTuple_GET_SIZE(s);
            if (k == 0 && n == 3 && PyTuple_CheckExact(PyTuple_GET_ITEM(s, 1)) &&
                py::isinstance<py::dtype>(PyTuple_GET_ITEM(s, 2))) {
                return 0;
            }
            if (k == 1 && n == 3 && PyTuple_CheckExact(PyTuple_GET_ITEM(s, 1)) &&
                PyTuple_CheckExact(PyTuple_GET_ITEM(s, 2)) &&
                PyTuple_GET_SIZE(PyTuple_GET_ITEM(s, 1)) == PyTuple_GET_SIZE(PyTuple_GET_ITEM(s, 2))) {
                return 1;
            }
            if (k == 2 && n == 2 && PyTuple_CheckExact(PyTuple_GET_ITEM(s, 1))) return 2;
        }
        if (PyErr_Occurred()) PyErr_Clear();
    }
    throw py::type_error("observation spec must be None or a tuple made by wmenv._spaces.observation_spec, got " +
                         std::string(py::repr(spec)));
}

}  // namespace

std::string Path::str() const {
    if (root != nullptr) return *root;
    std::string out = parent->str() + "[";
    if (key != nullptr) {
        out += std::string(py::repr(key));
    } else {
        out += std::to_string(index);
    }
    return out + "]";
}

py::object conform_observation(py::handle obs, py::handle spec, const std::string& root) {
    Path path;
    path.root = &root;
    return conform_observation(obs, spec, path);
}

py::object conform_observation(py::handle obs, py::handle spec, const Path& path) {
    if (obs.is_none()) return py::none();
    if (spec.is_none()) return to_numpy_tree(obs);
    PyObject* s = spec.ptr();
    long kind = spec_kind(spec);
    if (kind == 0) {
        py::object array = to_numpy(obs);
        py::handle shape = PyTuple_GET_ITEM(s, 1);
        if (!same_shape(array, shape)) {
            throw py::value_error(path.str() + " must have shape " + format_shape(shape) + ", got " +
                                  format_shape(getattr(array, refs().s_shape)));
        }
        PyObject* want = PyTuple_GET_ITEM(s, 2);
        PyObject* have = reinterpret_cast<PyObject*>(py::detail::array_proxy(array.ptr())->descr);
        if (have != want && !py::reinterpret_borrow<py::dtype>(have).equal(py::reinterpret_borrow<py::dtype>(want))) {
            array = call_method(array, refs().s_astype, want);
        }
        return array;
    }
    if (kind == 1) {
        if (!is_mapping(obs)) {
            throw py::type_error(path.str() + " must be a mapping for a Dict space, got " + type_name(obs));
        }
        PyObject* keys = PyTuple_GET_ITEM(s, 1);
        PyObject* subs = PyTuple_GET_ITEM(s, 2);
        py::dict out;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keys); ++i) {
            PyObject* key = PyTuple_GET_ITEM(keys, i);
            if (!contains(obs, key)) {
                throw py::value_error(path.str() + " lacks the key " + std::string(py::repr(key)) +
                                      " that the Dict space requires");
            }
            py::object value = steal(PyObject_GetItem(obs.ptr(), key));
            Path child;
            child.parent = &path;
            child.key = key;
            PyDict_SetItem(out.ptr(), key, conform_observation(value, PyTuple_GET_ITEM(subs, i), child).ptr());
        }
        return std::move(out);
    }
    PyObject* subs = PyTuple_GET_ITEM(s, 1);
    if (!PyTuple_Check(obs.ptr()) && !PyList_Check(obs.ptr())) {
        throw py::type_error(path.str() + " must be a tuple for a Tuple space, got " + type_name(obs));
    }
    py::object seq = steal(PySequence_Fast(obs.ptr(), "observation must be a sequence"));
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
    Py_ssize_t expected = PyTuple_GET_SIZE(subs);
    if (n != expected) {
        throw py::value_error(path.str() + " must have " + std::to_string(expected) + " items for a Tuple space, got " +
                              std::to_string(n));
    }
    py::tuple out(n);
    for (Py_ssize_t i = 0; i < n; ++i) {
        Path child;
        child.parent = &path;
        child.index = i;
        out[i] = conform_observation(PySequence_Fast_GET_ITEM(seq.ptr(), i), PyTuple_GET_ITEM(subs, i), child);
    }
    return std::move(out);
}

bool matches_structure(py::handle x, py::handle spec) {
    if (spec.is_none()) return true;
    PyObject* s = spec.ptr();
    long kind = spec_kind(spec);
    if (kind == 0) {
        py::object shape = leaf_shape(x);
        int equal = PyObject_RichCompareBool(shape.ptr(), PyTuple_GET_ITEM(s, 1), Py_EQ);
        if (equal < 0) throw py::error_already_set();
        return equal == 1;
    }
    if (kind == 1) {
        if (!is_mapping(x)) return false;
        PyObject* keys = PyTuple_GET_ITEM(s, 1);
        PyObject* subs = PyTuple_GET_ITEM(s, 2);
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keys); ++i) {
            PyObject* key = PyTuple_GET_ITEM(keys, i);
            if (!contains(x, key)) return false;
            py::object value = steal(PyObject_GetItem(x.ptr(), key));
            if (!matches_structure(value, PyTuple_GET_ITEM(subs, i))) return false;
        }
        return true;
    }
    if (!PyTuple_Check(x.ptr()) && !PyList_Check(x.ptr())) return false;
    PyObject* subs = PyTuple_GET_ITEM(s, 1);
    Py_ssize_t n = PySequence_Size(x.ptr());
    if (n != PyTuple_GET_SIZE(subs)) return false;
    for (Py_ssize_t i = 0; i < n; ++i) {
        py::object item = steal(PySequence_GetItem(x.ptr(), i));
        if (!matches_structure(item, PyTuple_GET_ITEM(subs, i))) return false;
    }
    return true;
}

}  // namespace wmenv
