#include "observations.h"

#include "arrays.h"

namespace wmenv {

void too_deep() {
    throw py::value_error("an observation nests containers more than " + std::to_string(kMaxDepth) +
                          " levels deep; a list or dict that contains itself cannot be converted");
}

py::object snapshot(py::handle x) { return steal(PySequence_Tuple(x.ptr())); }

namespace {

// The twin's _pairs: mapping.items() as a tuple of checked (key, value) pairs.
py::object pairs_of(py::handle mapping) {
    py::object pairs = snapshot(call_method(mapping, refs().s_items));
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pairs.ptr()); ++i) {
        PyObject* pair = PyTuple_GET_ITEM(pairs.ptr(), i);
        bool ok = (PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2) ||
                  (PyList_CheckExact(pair) && PyList_GET_SIZE(pair) == 2);
        if (!ok) {
            throw py::type_error(type_name(mapping) + ".items() must give (key, value) pairs, got " +
                                 std::string(py::repr(pair)));
        }
    }
    return pairs;
}

PyObject* pair_item(PyObject* pair, Py_ssize_t i) {
    return PyTuple_CheckExact(pair) ? PyTuple_GET_ITEM(pair, i) : PyList_GET_ITEM(pair, i);
}

py::object to_numpy_tree(py::handle x, int depth, bool protect) {
    if (x.is_none()) return py::none();
    if (depth > kMaxDepth) too_deep();
    if (is_mapping(x)) {
        py::object pairs = pairs_of(x);
        py::dict out;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pairs.ptr()); ++i) {
            PyObject* pair = PyTuple_GET_ITEM(pairs.ptr(), i);
            py::object key = borrow(pair_item(pair, 0));
            py::object value = borrow(pair_item(pair, 1));  // held: the pair may be a list
            py::object converted = to_numpy_tree(value, depth + 1, protect);
            if (PyDict_SetItem(out.ptr(), key.ptr(), converted.ptr()) != 0) throw py::error_already_set();
        }
        return std::move(out);
    }
    const bool is_tuple = PyTuple_Check(x.ptr());
    if (is_tuple || PyList_Check(x.ptr())) {
        py::object items = snapshot(x);  // a leaf's conversion may change the container
        Py_ssize_t n = PyTuple_GET_SIZE(items.ptr());
        py::object out = steal(is_tuple ? PyTuple_New(n) : PyList_New(n));
        for (Py_ssize_t i = 0; i < n; ++i) {
            py::object converted = to_numpy_tree(PyTuple_GET_ITEM(items.ptr(), i), depth + 1, protect);
            if (is_tuple) {
                PyTuple_SET_ITEM(out.ptr(), i, converted.release().ptr());
            } else {
                PyList_SET_ITEM(out.ptr(), i, converted.release().ptr());
            }
        }
        return out;
    }
    return leaf_to_numpy(x, protect);
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
    py::object shape = optional_attr(x, refs().s_shape);
    if (!shape.is_none()) {
        PyObject* seq = PySequence_Tuple(shape.ptr());
        if (seq == nullptr) {
            if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                return py::none();
            }
            throw py::error_already_set();
        }
        py::object dims = py::reinterpret_steal<py::object>(seq);
        Py_ssize_t n = PyTuple_GET_SIZE(seq);
        py::object out = steal(PyTuple_New(n));
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* d = PyNumber_Long(PyTuple_GET_ITEM(seq, i));  // int(d)
            if (d == nullptr) {
                if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
                    PyErr_Clear();
                    return py::none();
                }
                throw py::error_already_set();
            }
            PyTuple_SET_ITEM(out.ptr(), i, d);
        }
        return out;
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
            int overflow = 0;
            long k = PyLong_AsLongAndOverflow(kind, &overflow);
            Py_ssize_t n = PyTuple_GET_SIZE(s);
            if (overflow == 0 && k == 0 && n == 3 && PyTuple_CheckExact(PyTuple_GET_ITEM(s, 1)) &&
                py::isinstance<py::dtype>(PyTuple_GET_ITEM(s, 2))) {
                return 0;
            }
            if (overflow == 0 && k == 1 && n == 3 && PyTuple_CheckExact(PyTuple_GET_ITEM(s, 1)) &&
                PyTuple_CheckExact(PyTuple_GET_ITEM(s, 2)) &&
                PyTuple_GET_SIZE(PyTuple_GET_ITEM(s, 1)) == PyTuple_GET_SIZE(PyTuple_GET_ITEM(s, 2))) {
                return 1;
            }
            if (overflow == 0 && k == 2 && n == 2 && PyTuple_CheckExact(PyTuple_GET_ITEM(s, 1))) return 2;
        }
    }
    throw py::type_error("observation spec must be None or a tuple made by wmenv._spaces.observation_spec, got " +
                         std::string(py::repr(spec)));
}

// The twin's _batch_hint: said when the shape is the expected one behind a leading 1.
std::string batch_hint(py::handle array, py::handle expected) {
    auto* arr = py::detail::array_proxy(array.ptr());
    Py_ssize_t n = PyTuple_GET_SIZE(expected.ptr());
    if (arr->nd != n + 1 || arr->dimensions[0] != 1) return "";
    for (Py_ssize_t i = 0; i < n; ++i) {
        Py_ssize_t d = PyLong_AsSsize_t(PyTuple_GET_ITEM(expected.ptr(), i));
        if (d == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (arr->dimensions[i + 1] != d) return "";
    }
    return ": a leading batch of one; pass batched_model=True when the model always works on batches";
}

py::object conform(py::handle obs, py::handle spec, const Path& path, int depth, bool protect, py::handle cast_hook) {
    if (obs.is_none()) return py::none();
    if (spec.is_none()) return to_numpy_tree(obs, depth, protect);
    if (depth > kMaxDepth) too_deep();
    PyObject* s = spec.ptr();
    long kind = spec_kind(spec);
    if (kind == 0) {
        py::object array = leaf_to_numpy(obs, protect);
        py::handle shape = PyTuple_GET_ITEM(s, 1);
        if (!same_shape(array, shape)) {
            throw py::value_error(path.str() + " must have shape " + format_shape(shape) + ", got " +
                                  format_shape(getattr(array, refs().s_shape)) + batch_hint(array, shape));
        }
        PyObject* want = PyTuple_GET_ITEM(s, 2);
        PyObject* have = reinterpret_cast<PyObject*>(py::detail::array_proxy(array.ptr())->descr);
        if (have != want && !py::reinterpret_borrow<py::dtype>(have).equal(py::reinterpret_borrow<py::dtype>(want))) {
            if (!cast_hook.is_none()) {
                py::str where(path.str());
                PyObject* args[] = {where.ptr(), array.ptr(), want};
                steal(PyObject_Vectorcall(cast_hook.ptr(), args, 3, nullptr));
            }
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
            py::object converted = conform(value, PyTuple_GET_ITEM(subs, i), child, depth + 1, protect, cast_hook);
            if (PyDict_SetItem(out.ptr(), key, converted.ptr()) != 0) throw py::error_already_set();
        }
        return std::move(out);
    }
    PyObject* subs = PyTuple_GET_ITEM(s, 1);
    if (!PyTuple_Check(obs.ptr()) && !PyList_Check(obs.ptr())) {
        throw py::type_error(path.str() + " must be a tuple for a Tuple space, got " + type_name(obs));
    }
    py::object items = snapshot(obs);
    Py_ssize_t n = PyTuple_GET_SIZE(items.ptr());
    Py_ssize_t expected = PyTuple_GET_SIZE(subs);
    if (n != expected) {
        throw py::value_error(path.str() + " must have " + std::to_string(expected) + " items for a Tuple space, got " +
                              std::to_string(n));
    }
    py::object out = steal(PyTuple_New(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
        Path child;
        child.parent = &path;
        child.index = i;
        py::object converted =
            conform(PyTuple_GET_ITEM(items.ptr(), i), PyTuple_GET_ITEM(subs, i), child, depth + 1, protect, cast_hook);
        PyTuple_SET_ITEM(out.ptr(), i, converted.release().ptr());
    }
    return out;
}

bool matches(py::handle x, py::handle spec, int depth) {
    if (spec.is_none()) return true;
    if (depth > kMaxDepth) too_deep();
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
            if (!matches(value, PyTuple_GET_ITEM(subs, i), depth + 1)) return false;
        }
        return true;
    }
    if (!PyTuple_Check(x.ptr()) && !PyList_Check(x.ptr())) return false;
    PyObject* subs = PyTuple_GET_ITEM(s, 1);
    py::object items = snapshot(x);
    Py_ssize_t n = PyTuple_GET_SIZE(items.ptr());
    if (n != PyTuple_GET_SIZE(subs)) return false;
    for (Py_ssize_t i = 0; i < n; ++i) {
        if (!matches(PyTuple_GET_ITEM(items.ptr(), i), PyTuple_GET_ITEM(subs, i), depth + 1)) return false;
    }
    return true;
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

py::object conform_observation(py::handle obs, py::handle spec, const std::string& root, bool protect,
                               py::handle cast_hook) {
    Path path;
    path.root = &root;
    return conform(obs, spec, path, 0, protect, cast_hook);
}

namespace {

// The twin's _exclusive: nothing but arr (itself referenced only by its
// container) references the memory it views, along its chain of bases.
bool exclusive(PyObject* arr) {
    const Refs& r = refs();
    while (true) {
        PyObject* base = py::detail::array_proxy(arr)->base;
        if (base == nullptr) return true;
        if (Py_REFCNT(base) != 1) return false;
        if (Py_TYPE(base) == r.ndarray) {
            arr = base;
            continue;
        }
        if (r.use_count != nullptr && Py_TYPE(base) == r.storage_type) {
            return base_use_count(arr) == r.alone_storage;
        }
        if (r.use_count != nullptr && Py_TYPE(base) == r.tensor) return base_use_count(arr) == r.alone_tensor;
        return false;  // memory of another library: who else holds it is unknown
    }
}

// x (alone: referenced only by its container) with every shared leaf copied;
// a null object when nothing needs a copy (the twin's _SAME).
py::object secured(PyObject* x, bool alone, int depth) {
    PyTypeObject* t = Py_TYPE(x);
    if (t == refs().ndarray) {
        auto* a = py::detail::array_proxy(x);
        for (int i = 0; i < a->nd; ++i) {
            if (a->dimensions[i] == 0) return py::object();
        }
        if (alone && exclusive(x)) return py::object();
        // arr.copy() (C order), without the method call
        return steal(py::detail::npy_api::get().PyArray_NewCopy_(x, 0 /* NPY_CORDER */));
    }
    if (depth > kMaxDepth) too_deep();
    if (t == &PyDict_Type) {
        py::object out;
        py::object keys = steal(PySequence_Tuple(x));
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keys.ptr()); ++i) {
            PyObject* key = PyTuple_GET_ITEM(keys.ptr(), i);
            PyObject* value = PyDict_GetItemWithError(x, key);  // borrowed
            if (value == nullptr) {
                if (PyErr_Occurred()) throw py::error_already_set();
                continue;
            }
            py::object fresh = secured(value, Py_REFCNT(value) == 1, depth + 1);
            if (!fresh) continue;
            if (!out) out = steal(PyDict_Copy(x));
            if (PyDict_SetItem(out.ptr(), key, fresh.ptr()) != 0) throw py::error_already_set();
        }
        return out;
    }
    if (t == &PyTuple_Type || t == &PyList_Type) {
        const bool is_tuple = t == &PyTuple_Type;
        py::object items;  // a list, made on the first change
        Py_ssize_t n = is_tuple ? PyTuple_GET_SIZE(x) : PyList_GET_SIZE(x);
        for (Py_ssize_t i = 0; i < n; ++i) {
            if (!is_tuple && i >= PyList_GET_SIZE(x)) break;
            PyObject* item = is_tuple ? PyTuple_GET_ITEM(x, i) : PyList_GET_ITEM(x, i);
            py::object fresh = secured(item, Py_REFCNT(item) == 1, depth + 1);
            if (!fresh) continue;
            if (!items) items = steal(PySequence_List(x));
            if (PyList_SetItem(items.ptr(), i, fresh.release().ptr()) != 0) throw py::error_already_set();
        }
        if (!items || !is_tuple) return items;
        return steal(PyList_AsTuple(items.ptr()));
    }
    return py::object();
}

}  // namespace

py::tuple secure_observation(py::handle items, Py_ssize_t index) {
    PyObject* p = items.ptr();
    if (!PyTuple_CheckExact(p)) throw py::type_error("items must be a tuple, got " + type_name(items));
    const Py_ssize_t n = PyTuple_GET_SIZE(p);
    if (index < -n || index >= n) {
        throw py::index_error("index " + std::to_string(index) + " is outside a tuple of " + std::to_string(n) +
                              " items");
    }
    if (index < 0) index += n;
    PyObject* obs = PyTuple_GET_ITEM(p, index);
    py::object fresh = secured(obs, Py_REFCNT(obs) == 1, 0);
    if (!fresh) return py::reinterpret_borrow<py::tuple>(items);
    if (Py_REFCNT(p) == 1) {  // only the caller's one reference: replace in place
        PyTuple_SET_ITEM(p, index, fresh.release().ptr());
        Py_DECREF(obs);
        return py::reinterpret_borrow<py::tuple>(items);
    }
    py::object out = steal(PyTuple_New(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* item = i == index ? fresh.ptr() : PyTuple_GET_ITEM(p, i);
        Py_INCREF(item);
        PyTuple_SET_ITEM(out.ptr(), i, item);
    }
    return py::reinterpret_steal<py::tuple>(out.release());
}

bool matches_structure(py::handle x, py::handle spec) { return matches(x, spec, 0); }

}  // namespace wmenv
