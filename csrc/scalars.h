// One-element rewards and flags as Python float and bool.
#pragma once

#include "common.h"

namespace wmenv {

py::object as_reward(py::handle x);
py::object as_flag(py::handle x, const std::string& name);

// A new (num_envs,) array of dtype holding one value per env.
py::object as_batch(py::handle x, Py_ssize_t num_envs, py::handle dtype, const std::string& name);

// The vector env's per-step counters (see _core_py.count_steps).
py::tuple count_steps(py::handle elapsed, py::handle terminated, py::handle truncated, py::handle max_episode_steps);

}  // namespace wmenv
