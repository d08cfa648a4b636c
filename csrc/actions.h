// A policy's action as the model receives it (see _core_py.convert_action).
#pragma once

#include "common.h"

namespace wmenv {

py::object convert_action(py::handle action, py::handle spec);

}  // namespace wmenv
