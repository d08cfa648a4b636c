// Step and reset results in every accepted form, parsed into fixed tuples.
#pragma once

#include "common.h"

namespace wmenv {

// (next_state, obs, reward, terminated, truncated, info) as the result gives
// them; reward and terminated are None when it has none.
py::tuple parse_step(py::handle result, py::handle state);

py::tuple normalize_step(py::handle result, py::handle state, py::handle action, py::handle obs_spec,
                         py::handle reward_fn, py::handle terminal_fn, py::handle elapsed_steps, bool info_model_state,
                         bool protect, py::handle cast_hook);

// convert_action, the transition, normalize_step and the time limit in one
// call, autograd off around them as the plan says (see _core_py.run_step).
py::tuple run_step(py::handle plan, py::handle state, py::handle action, py::handle elapsed_steps);

py::tuple normalize_step_batch(py::handle result, py::handle state, py::handle action, py::handle obs_spec,
                               py::handle reward_fn, py::handle terminal_fn, Py_ssize_t num_envs, bool protect,
                               py::handle cast_hook);

// convert_action, action_check, the transition, normalize_step_batch and
// count_steps in one call (see _core_py.run_step_batch).
py::tuple run_step_batch(py::handle plan, py::handle state, py::handle action, py::handle elapsed);

py::tuple normalize_reset(py::handle result, py::handle obs_spec, py::handle default_state, py::handle default_obs,
                          bool protect, py::handle cast_hook);

}  // namespace wmenv
