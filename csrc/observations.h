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

// A list of addresses that lives on the stack while it is short (the usual
// observation has one leaf) and on the heap beyond that.
class Addresses {
public:
    size_t size() const { return size_; }
    void* operator[](size_t i) const { return i < kInline ? inline_[i] : spill_[i - kInline]; }
    void push_back(void* address) {
        if (size_ < kInline) {
            inline_[size_] = address;
        } else {
            spill_.push_back(address);
        }
        ++size_;
    }

private:
    static constexpr size_t kInline = 4;
    void* inline_[kInline] = {};
    std::vector<void*> spill_;
    size_t size_ = 0;
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
    Addresses previous_;
    Addresses current_;
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
