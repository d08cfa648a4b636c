// One leaf to a NumPy array, sharing memory with CPU tensors and with any
// object that speaks DLPack or the array interface.
#pragma once

#include "common.h"

namespace wmenv {

py::object to_numpy(py::handle x);

}  // namespace wmenv
