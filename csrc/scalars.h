// One-element rewards and flags as Python float and bool.
#pragma once

#include "common.h"

namespace wmenv {

py::object as_reward(py::handle x);
py::object as_flag(py::handle x, const std::string& name);

}  // namespace wmenv
