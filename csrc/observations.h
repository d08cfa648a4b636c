// Observations conformed to a precompiled observation spec (see _core_py).
#pragma once

#include <string>

#include "common.h"

namespace wmenv {

// Where in a nested observation an error happened; the message is built only
// when one is raised.
struct Path {
    const Path* parent = nullptr;
    const std::string* root = nullptr;  // set on the root only
    PyObject* key = nullptr;            // a Dict key, or null for a Tuple index
    Py_ssize_t index = 0;
    std::string str() const;
};

// protect: copy tensor leaves whose memory torch did not allocate (see _core_py).
py::object conform_observation(py::handle obs, py::handle spec, const std::string& root, bool protect,
                               py::handle cast_hook);
// items with the observation at items[index] made safe to hand out: every
// leaf whose memory anything else still references copied (see _core_py).
py::tuple secure_observation(py::handle items, Py_ssize_t index);
bool matches_structure(py::handle x, py::handle spec);

// Observation-tree nesting limit: deeper is a ValueError, never a stack overflow.
inline constexpr int kMaxDepth = 64;
[[noreturn]] void too_deep();

// tuple(x): a snapshot read through x's own iteration (an exact tuple as is).
py::object snapshot(py::handle x);

}  // namespace wmenv
