#include "results.h"

#include <cstring>
#include <string>

#include "actions.h"
#include "arrays.h"
#include "observations.h"
#include "scalars.h"

namespace wmenv {
namespace {

const char* kStepForms =
    "a mapping, (next_state, obs, reward, terminated, truncated, info), "
    "(obs, reward, terminated, truncated, info), (obs, reward, done, info), "
    "(next_state, obs, reward), (next_state, obs), (next_state,) or a bare next state";

const std::string kObservationRoot = "observation";

bool has_key(py::handle mapping, PyObject* key) {
    int found = PySequence_Contains(mapping.ptr(), key);
    if (found < 0) throw py::error_already_set();
    return found == 1;
}

py::object item(py::handle mapping, PyObject* key) { return steal(PyObject_GetItem(mapping.ptr(), key)); }

// mapping.get(key): None when absent.
py::object get(py::handle mapping, PyObject* key) {
    if (PyDict_CheckExact(mapping.ptr())) {
        PyObject* value = PyDict_GetItemWithError(mapping.ptr(), key);
        if (value == nullptr) {
            if (PyErr_Occurred()) throw py::error_already_set();
            return py::none();
        }
        return borrow(value);
    }
    return call_method(mapping, refs().s_get, key);
}

// `key in mapping and mapping[key]`: the value, or a null object when absent.
// A plain dict is looked up once (the same answer, without the second lookup).
py::object lookup(py::handle mapping, PyObject* key) {
    if (PyDict_CheckExact(mapping.ptr())) {
        PyObject* value = PyDict_GetItemWithError(mapping.ptr(), key);
        if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
        return value == nullptr ? py::object() : borrow(value);
    }
    return has_key(mapping, key) ? item(mapping, key) : py::object();
}

py::object observation_from_mapping(py::handle result, py::handle fallback) {
    PyObject* keys = refs().observation_keys;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keys); ++i) {
        py::object value = lookup(result, PyTuple_GET_ITEM(keys, i));
        if (value) return value;
    }
    return borrow(fallback);
}

py::object state_from_info(py::handle info, py::handle obs) {
    if (is_mapping(info) && has_key(info, refs().s_model_state)) return item(info, refs().s_model_state);
    return borrow(obs);
}

py::dict info_dict(py::handle info) {
    if (info.is_none()) return py::dict();
    if (!is_mapping(info)) throw py::type_error("info must be a mapping or None, got " + type_name(info));
    if (PyDict_CheckExact(info.ptr())) return py::reinterpret_steal<py::dict>(steal(PyDict_Copy(info.ptr())).release());
    py::dict out;
    if (PyDict_Merge(out.ptr(), info.ptr(), 1) != 0) throw py::error_already_set();
    return out;
}

// info.setdefault(key, value) on a dict wmenv made.
void set_default(py::dict& info, PyObject* key, py::handle value) {
    int found = PyDict_Contains(info.ptr(), key);
    if (found < 0) throw py::error_already_set();
    if (found == 0 && PyDict_SetItem(info.ptr(), key, value.ptr()) != 0) throw py::error_already_set();
}

py::object call3(py::handle fn, py::handle a, py::handle b, py::handle c) {
    PyObject* args[] = {a.ptr(), b.ptr(), c.ptr()};
    return steal(PyObject_Vectorcall(fn.ptr(), args, 3, nullptr));
}

// The raw parts of a step result; reward and terminated are None when it has none.
struct RawStep {
    py::object next_state, obs, reward = py::none(), terminated = py::none(), truncated = py::bool_(false),
                                info = py::none();
};

RawStep parse_step_raw(py::handle result, py::handle state) {
    Refs& r = refs();
    RawStep raw;
    py::object &next_state = raw.next_state, &obs = raw.obs, &reward = raw.reward, &terminated = raw.terminated,
               &truncated = raw.truncated, &info = raw.info;
    PyObject* p = result.ptr();
    if (PyTuple_Check(p)) {
        py::object items = snapshot(result);  // a subclass is read through its own iteration, once
        PyObject* t = items.ptr();
        Py_ssize_t n = PyTuple_GET_SIZE(t);
        auto at = [t](Py_ssize_t i) { return borrow(PyTuple_GET_ITEM(t, i)); };
        if (n == 5) {
            obs = at(0), reward = at(1), terminated = at(2), truncated = at(3), info = at(4);
            next_state = state_from_info(info, obs);
        } else if (n == 6) {
            next_state = at(0), obs = at(1), reward = at(2), terminated = at(3), truncated = at(4), info = at(5);
        } else if (n == 4) {
            obs = at(0), reward = at(1), terminated = at(2), info = at(3);
            next_state = state_from_info(info, obs);
        } else if (n == 3) {
            next_state = at(0), obs = at(1), reward = at(2);
        } else if (n == 2) {
            next_state = at(0), obs = at(1);
        } else if (n == 1) {
            next_state = at(0), obs = at(0);
        } else {
            throw py::value_error("a transition returned a tuple of " + std::to_string(n) +
                                  " items; accepted forms are " + kStepForms);
        }
    } else if (is_mapping(result)) {
        next_state = lookup(result, r.s_state);
        if (!next_state) next_state = lookup(result, r.s_next_state);
        if (!next_state) next_state = borrow(state);
        obs = observation_from_mapping(result, next_state);
        reward = get(result, r.s_reward);
        terminated = get(result, r.s_terminated);
        if (terminated.is_none()) terminated = get(result, r.s_done);
        if (PyDict_CheckExact(p)) {
            PyObject* value = PyDict_GetItemWithError(p, r.s_truncated);
            if (value == nullptr && PyErr_Occurred()) throw py::error_already_set();
            truncated = value == nullptr ? py::object(py::bool_(false)) : borrow(value);
        } else {
            truncated = steal(PyObject_CallMethodObjArgs(p, r.s_get, r.s_truncated, Py_False, nullptr));
        }
        info = get(result, r.s_info);
    } else {
        next_state = borrow(result);
        obs = borrow(result);
    }
    return raw;
}

}  // namespace

py::tuple parse_step(py::handle result, py::handle state) {
    RawStep raw = parse_step_raw(result, state);
    return py::make_tuple(raw.next_state, raw.obs, raw.reward, raw.terminated, raw.truncated, raw.info);
}

py::tuple normalize_step(py::handle result, py::handle state, py::handle action, py::handle obs_spec,
                         py::handle reward_fn, py::handle terminal_fn, py::handle elapsed_steps, bool info_model_state,
                         bool protect, py::handle cast_hook) {
    Refs& r = refs();
    RawStep raw = parse_step_raw(result, state);
    py::object &next_state = raw.next_state, &obs = raw.obs, &reward = raw.reward, &terminated = raw.terminated,
               &truncated = raw.truncated, &info = raw.info;
    if (reward.is_none()) {
        reward = reward_fn.is_none() ? py::object(py::float_(0.0)) : call3(reward_fn, next_state, obs, action);
    }
    if (terminated.is_none()) {
        terminated = terminal_fn.is_none() ? py::object(py::bool_(false)) : call3(terminal_fn, next_state, obs, action);
    }
    py::object reward_value = as_reward(reward);
    py::object terminated_value = as_flag(terminated, "terminated");
    py::object truncated_value = truncated.is_none() ? py::object(py::bool_(false)) : as_flag(truncated, "truncated");
    py::dict info_value = info_dict(info);
    if (info_model_state) set_default(info_value, r.s_model_state, next_state);
    set_default(info_value, r.s_elapsed_steps, elapsed_steps);
    py::object obs_value = conform_observation(obs, obs_spec, kObservationRoot, protect, cast_hook);
    PyObject* out = PyTuple_New(6);
    if (out == nullptr) throw py::error_already_set();
    PyTuple_SET_ITEM(out, 0, next_state.release().ptr());
    PyTuple_SET_ITEM(out, 1, obs_value.release().ptr());
    PyTuple_SET_ITEM(out, 2, reward_value.release().ptr());
    PyTuple_SET_ITEM(out, 3, terminated_value.release().ptr());
    PyTuple_SET_ITEM(out, 4, truncated_value.release().ptr());
    PyTuple_SET_ITEM(out, 5, info_value.release().ptr());
    return py::reinterpret_steal<py::tuple>(out);
}

namespace {

// Whether grad_switch is the registered torch's own pair, which the C
// functions found at registration stand for.
bool native_switch(PyObject* grad) {
    const Refs& r = refs();
    return r.grad_is_enabled != nullptr && PyTuple_GET_ITEM(grad, 0) == r.is_grad_enabled &&
           PyTuple_GET_ITEM(grad, 1) == r.set_grad_enabled;
}

// grad_switch[1](enabled), as the twin calls it.
void set_grad(PyObject* grad, bool enabled) {
    if (native_switch(grad)) return refs().grad_set_enabled(enabled);
    steal(PyObject_CallOneArg(PyTuple_GET_ITEM(grad, 1), enabled ? Py_True : Py_False));
}

// Checks grad_switch and turns autograd off when it is on; whether to turn it back on.
bool grad_off(PyObject* grad) {
    if (grad == Py_None) return false;
    if (!PyTuple_Check(grad) || PyTuple_GET_SIZE(grad) != 2) {
        throw py::type_error("grad_switch must be None or an (is_grad_enabled, set_grad_enabled) pair");
    }
    if (native_switch(grad)) {
        const bool restore = refs().grad_is_enabled();
        if (restore) refs().grad_set_enabled(false);
        return restore;
    }
    const bool restore = truthy(steal(PyObject_CallNoArgs(PyTuple_GET_ITEM(grad, 0))));
    if (restore) set_grad(grad, false);
    return restore;
}

// body() with autograd off around it as grad_switch says, turned back on
// also when body throws (as the twin's finally; an error doing so wins).
template <typename Body>
py::tuple grad_guarded(PyObject* grad, Body&& body) {
    const bool restore = grad_off(grad);
    py::tuple out;
    try {
        out = body();
    } catch (...) {
        if (restore) set_grad(grad, true);
        throw;
    }
    if (restore) set_grad(grad, true);
    return out;
}

}  // namespace

py::tuple run_step(py::handle plan, py::handle state, py::handle action, py::handle elapsed_steps) {
    PyObject* p = plan.ptr();
    if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != 10) throw py::type_error("step plan must be a 10-tuple");
    auto at = [p](Py_ssize_t i) { return py::handle(PyTuple_GET_ITEM(p, i)); };
    py::handle transition = at(0), action_spec = at(1), obs_spec = at(2), reward_fn = at(3), terminal_fn = at(4);
    py::handle info_model_state = at(5), cast_hook = at(7), limit = at(9);
    const bool protect = truthy(at(6));
    py::tuple out = grad_guarded(PyTuple_GET_ITEM(p, 8), [&] {
        py::object model_action = convert_action(action, action_spec);
        PyObject* args[] = {state.ptr(), model_action.ptr()};
        py::object result = steal(PyObject_Vectorcall(transition.ptr(), args, 2, nullptr));
        py::tuple normalized = normalize_step(result, state, model_action, obs_spec, reward_fn, terminal_fn,
                                              elapsed_steps, truthy(info_model_state), protect, cast_hook);
        result = py::object();  // the model's raw outputs go: what still shares memory after that is shared
        return protect ? secure_observation(normalized, 1) : normalized;
    });
    if (!limit.is_none()) {
        int reached = PyObject_RichCompareBool(elapsed_steps.ptr(), limit.ptr(), Py_GE);
        if (reached < 0) throw py::error_already_set();
        if (reached == 1) {
            PyObject* t = out.ptr();
            if (Py_REFCNT(t) == 1) {  // only this call holds the tuple normalize_step made
                PyObject* old = PyTuple_GET_ITEM(t, 4);
                Py_INCREF(Py_True);
                PyTuple_SET_ITEM(t, 4, Py_True);
                Py_DECREF(old);
            } else {
                auto item = [t](Py_ssize_t i) { return py::handle(PyTuple_GET_ITEM(t, i)); };
                out = py::make_tuple(item(0), item(1), item(2), item(3), py::bool_(true), item(5));
            }
        }
    }
    return out;
}

py::tuple run_step_batch(py::handle plan, py::handle state, py::handle action, py::handle elapsed) {
    PyObject* p = plan.ptr();
    if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != 11) throw py::type_error("batch step plan must be an 11-tuple");
    auto at = [p](Py_ssize_t i) { return py::handle(PyTuple_GET_ITEM(p, i)); };
    py::handle transition = at(0), action_spec = at(1), obs_spec = at(2), reward_fn = at(3), terminal_fn = at(4);
    py::handle cast_hook = at(7), limit = at(9), check = at(10);
    const bool protect = truthy(at(6));
    if (!PyLong_CheckExact(at(5).ptr())) throw py::type_error("num_envs must be an int, got " + type_name(at(5)));
    Py_ssize_t num_envs = PyLong_AsSsize_t(at(5).ptr());
    if (num_envs == -1 && PyErr_Occurred()) throw py::error_already_set();
    py::tuple out = grad_guarded(PyTuple_GET_ITEM(p, 8), [&] {
        py::object model_action = convert_action(action, action_spec);
        if (!check.is_none()) steal(PyObject_CallOneArg(check.ptr(), model_action.ptr()));
        PyObject* args[] = {state.ptr(), model_action.ptr()};
        py::object result = steal(PyObject_Vectorcall(transition.ptr(), args, 2, nullptr));
        py::tuple normalized = normalize_step_batch(result, state, model_action, obs_spec, reward_fn, terminal_fn,
                                                    num_envs, protect, cast_hook);
        result = py::object();
        return protect ? secure_observation(normalized, 1) : normalized;
    });
    py::tuple counted = count_steps(elapsed, out[3], out[4], limit);
    PyObject* joined = PySequence_Concat(out.ptr(), counted.ptr());
    return py::reinterpret_steal<py::tuple>(steal(joined).release());
}

py::tuple normalize_step_batch(py::handle result, py::handle state, py::handle action, py::handle obs_spec,
                               py::handle reward_fn, py::handle terminal_fn, Py_ssize_t num_envs, bool protect,
                               py::handle cast_hook) {
    static PyObject* float32 = py::dtype("float32").release().ptr();
    static PyObject* boolean = py::dtype("bool").release().ptr();
    RawStep raw = parse_step_raw(result, state);
    auto zeros = [num_envs](PyObject* dtype) {
        py::object out = new_vector(dtype, num_envs);
        auto* a = py::detail::array_proxy(out.ptr());
        std::memset(a->data, 0, static_cast<size_t>(num_envs * a->strides[0]));  // np.zeros, not np.empty
        return out;
    };
    // A missing value with no adapter is zeros, made once (not made and then copied).
    py::object reward, terminated;
    if (raw.reward.is_none() && reward_fn.is_none()) {
        reward = zeros(float32);
    } else {
        if (raw.reward.is_none()) raw.reward = call3(reward_fn, raw.next_state, raw.obs, action);
        reward = as_batch(raw.reward, num_envs, float32, "reward");
    }
    if (raw.terminated.is_none() && terminal_fn.is_none()) {
        terminated = zeros(boolean);
    } else {
        if (raw.terminated.is_none()) raw.terminated = call3(terminal_fn, raw.next_state, raw.obs, action);
        terminated = as_batch(raw.terminated, num_envs, boolean, "terminated");
    }
    py::object truncated = raw.truncated.is_none() || raw.truncated.ptr() == Py_False
                               ? zeros(boolean)
                               : as_batch(raw.truncated, num_envs, boolean, "truncated");
    py::dict info = info_dict(raw.info);
    py::object obs = conform_observation(raw.obs, obs_spec, kObservationRoot, protect, cast_hook);
    return py::make_tuple(raw.next_state, obs, reward, terminated, truncated, info);
}

py::tuple normalize_reset(py::handle result, py::handle obs_spec, py::handle default_state, py::handle default_obs,
                          bool protect, py::handle cast_hook) {
    Refs& r = refs();
    py::object state = borrow(default_state), obs, info = py::none();
    if (PyTuple_Check(result.ptr())) {
        py::object items = snapshot(result);
        PyObject* p = items.ptr();
        Py_ssize_t n = PyTuple_GET_SIZE(p);
        if (n == 2) {
            py::handle first = PyTuple_GET_ITEM(p, 0), second = PyTuple_GET_ITEM(p, 1);
            if (is_mapping(second) && matches_structure(first, obs_spec)) {
                obs = borrow(first), info = borrow(second);
            } else {
                state = borrow(first), obs = borrow(second);
            }
        } else if (n == 3) {
            state = borrow(PyTuple_GET_ITEM(p, 0)), obs = borrow(PyTuple_GET_ITEM(p, 1));
            info = borrow(PyTuple_GET_ITEM(p, 2));
        } else if (n == 0) {
            throw py::value_error(
                "a reset returned an empty tuple; expected obs, (obs, info), (state, obs), (state, obs, info) or a "
                "mapping");
        } else {
            obs = borrow(PyTuple_GET_ITEM(p, 0));
        }
    } else if (is_mapping(result)) {
        if (has_key(result, r.s_state)) state = item(result, r.s_state);
        obs = observation_from_mapping(result, default_obs);
        info = get(result, r.s_info);
    } else {
        obs = borrow(result);
    }
    if (state.is_none()) state = obs;
    py::dict info_value = info_dict(info);
    py::object obs_value = conform_observation(obs, obs_spec, kObservationRoot, protect, cast_hook);
    return py::make_tuple(state, obs_value, info_value);
}

}  // namespace wmenv
