// One leaf to a NumPy array, sharing memory with CPU tensors and with any
// object that speaks DLPack or the array interface.
#pragma once

#include "common.h"

namespace wmenv {

py::object to_numpy(py::handle x);
// to_numpy(x); with protect, a tensor whose memory torch did not allocate
// (its storage is not resizable: a tensor over a NumPy array or another
// library's buffer, or memory already viewed as NumPy) comes back copied.
py::object leaf_to_numpy(py::handle x, bool protect);

// A new uninitialized, C-contiguous, writeable (n,) array of descr (borrowed).
py::object new_vector(PyObject* descr, Py_ssize_t n);

// A new (n,) array of descr (float32 or bool) holding the n values of a plain
// CPU torch tensor x, read in C order and cast as NumPy's astype would: the
// same dtype is copied, and bool takes `value != 0` from bool, integer and
// float32/float64 sources. A null object where this cannot be done directly
// (not a plain torch.Tensor, another device or dtype pair, not n values, a
// negative view, an export torch refuses), leaving the caller's general path
// to answer.
py::object copy_tensor_values(py::handle x, Py_ssize_t n, PyObject* descr);

}  // namespace wmenv
