// Observations conformed to a precompiled observation spec (see _core_py).
#pragma once

#include <string>
#include <vector>

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

// The memory handed out by the previous conversion and by this one (the
// twin's _HandOut): a leaf viewing memory handed out last time is copied.
class HandOut {
public:
    explicit HandOut(py::handle handed_out);
    // Records arr's address; true when the previous call handed it out too.
    bool seen(py::handle arr);
    // Writes this call's addresses into the caller's list (unchanged entries stay).
    void commit();

private:
    std::vector<void*> previous_;
    std::vector<void*> current_;
    PyObject* list_;  // the caller's list
};

// handed_out: None or the caller's list of addresses (see conform_observation).
py::object conform_observation(py::handle obs, py::handle spec, const std::string& root, py::handle handed_out,
                               py::handle cast_hook);
bool matches_structure(py::handle x, py::handle spec);

// Observation-tree nesting limit: deeper is a ValueError, never a stack overflow.
inline constexpr int kMaxDepth = 64;
[[noreturn]] void too_deep();

// tuple(x): a snapshot read through x's own iteration (an exact tuple as is).
py::object snapshot(py::handle x);

}  // namespace wmenv
