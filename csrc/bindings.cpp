// wmenv._core: the compiled twin of wmenv._core_py. Same names, signatures,
// results, error types and messages; the docstrings are the twin's.
#include "actions.h"
#include "arrays.h"
#include "common.h"
#include "observations.h"
#include "results.h"
#include "scalars.h"

namespace {

const char* kModuleDoc = "Compiled per-step work of wmenv; twin of wmenv._core_py.";

}  // namespace

PYBIND11_MODULE(_core, m) {
    using namespace wmenv;
    m.doc() = kModuleDoc;
    init_refs();

    m.def("set_torch", &wmenv::set_torch, py::arg("module"),
          "Registers the torch module (or None) whose tensors get fast paths.");
    m.def("_native_grad_mode", &native_grad_mode,
          "Whether the autograd switch calls c10::GradMode directly (found in the libc10 the registered torch "
          "loaded, and checked against torch's own functions), rather than through Python.");
    m.def("to_numpy", &to_numpy, py::arg("x"),
          "One leaf as a NumPy array; CPU tensors and DLPack/array-interface objects share their memory "
          "with the result.");
    m.def(
        "conform_observation",
        [](py::handle obs, py::handle spec, const std::string& path, py::handle protect, py::handle cast_hook) {
            return conform_observation(obs, spec, path, truthy(protect), cast_hook);
        },
        py::arg("obs"), py::arg("spec"), py::arg("path") = "observation", py::arg("protect") = false,
        py::arg("cast_hook") = py::none(), "Converts obs to NumPy and makes it fit spec.");
    m.def("secure_observation", &secure_observation, py::arg("items"), py::arg("index"),
          "items (a tuple) with the observation at items[index] made safe to hand to a user: every NumPy leaf "
          "that still shares its memory with anything else replaced by a copy.");
    m.def("matches_structure", &matches_structure, py::arg("x"), py::arg("spec"),
          "True when x has the structure and shape of spec (dtype and bounds are not looked at).");
    m.def("as_reward", &as_reward, py::arg("x"), "A one-element reward as a Python float, at full precision.");
    m.def("as_flag", &as_flag, py::arg("x"), py::arg("name"),
          "A one-element termination or truncation flag as a Python bool.");
    m.def(
        "normalize_step",
        [](py::handle result, py::handle state, py::handle action, py::handle obs_spec, py::handle reward_fn,
           py::handle terminal_fn, py::handle elapsed_steps, bool info_model_state, py::handle protect,
           py::handle cast_hook) {
            return normalize_step(result, state, action, obs_spec, reward_fn, terminal_fn, elapsed_steps,
                                  info_model_state, truthy(protect), cast_hook);
        },
        py::arg("result"), py::arg("state"), py::arg("action"), py::arg("obs_spec"), py::arg("reward_fn"),
        py::arg("terminal_fn"), py::arg("elapsed_steps"), py::arg("info_model_state"), py::arg("protect") = false,
        py::arg("cast_hook") = py::none(),
        "Parses one transition result into (next_state, obs, reward, terminated, truncated, info).");
    m.def("run_step", &run_step, py::arg("plan"), py::arg("state"), py::arg("action"), py::arg("elapsed_steps"),
          "One whole single-env step: convert_action, the transition, normalize_step and the time limit.");
    m.def("run_step_batch", &run_step_batch, py::arg("plan"), py::arg("state"), py::arg("action"), py::arg("elapsed"),
          "One whole vector-env step: convert_action, the transition, normalize_step_batch and count_steps.");
    m.def("parse_step", &parse_step, py::arg("result"), py::arg("state"),
          "The raw (next_state, obs, reward, terminated, truncated, info) of a step result; reward and "
          "terminated are None when it has none.");
    m.def("as_batch", &as_batch, py::arg("x"), py::arg("num_envs"), py::arg("dtype"), py::arg("name"),
          "A new (num_envs,) array of dtype holding one value per env.");
    m.def(
        "normalize_step_batch",
        [](py::handle result, py::handle state, py::handle action, py::handle obs_spec, py::handle reward_fn,
           py::handle terminal_fn, Py_ssize_t num_envs, py::handle protect, py::handle cast_hook) {
            return normalize_step_batch(result, state, action, obs_spec, reward_fn, terminal_fn, num_envs,
                                        truthy(protect), cast_hook);
        },
        py::arg("result"), py::arg("state"), py::arg("action"), py::arg("obs_spec"), py::arg("reward_fn"),
        py::arg("terminal_fn"), py::arg("num_envs"), py::arg("protect") = false, py::arg("cast_hook") = py::none(),
        "Parses a batched transition result into (next_state, obs, reward, terminated, truncated, info).");
    m.def(
        "normalize_reset",
        [](py::handle result, py::handle obs_spec, py::handle default_state, py::handle default_obs, py::handle protect,
           py::handle cast_hook) {
            return normalize_reset(result, obs_spec, default_state, default_obs, truthy(protect), cast_hook);
        },
        py::arg("result"), py::arg("obs_spec"), py::arg("default_state"), py::arg("default_obs"),
        py::arg("protect") = false, py::arg("cast_hook") = py::none(),
        "Parses a reset result into (state, obs, info).");
    m.def("convert_action", &convert_action, py::arg("action"), py::arg("spec"),
          "Turns a policy's action into what the model receives.");
    m.def("count_steps", &count_steps, py::arg("elapsed"), py::arg("terminated"), py::arg("truncated"),
          py::arg("max_episode_steps"), "The vector env's per-step bookkeeping.");
    m.attr("OBSERVATION_KEYS") = py::reinterpret_borrow<py::object>(refs().observation_keys);
    m.attr("__all__") =
        py::make_tuple("OBSERVATION_KEYS", "as_batch", "as_flag", "as_reward", "conform_observation", "convert_action",
                       "count_steps", "matches_structure", "normalize_reset", "normalize_step", "normalize_step_batch",
                       "parse_step", "run_step", "run_step_batch", "secure_observation", "set_torch", "to_numpy");
}
