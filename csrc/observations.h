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

py::object conform_observation(py::handle obs, py::handle spec, const Path& path);
py::object conform_observation(py::handle obs, py::handle spec, const std::string& root);
bool matches_structure(py::handle x, py::handle spec);

}  // namespace wmenv
