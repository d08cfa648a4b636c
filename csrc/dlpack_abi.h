// The parts of the DLPack C ABI that wmenv reads: a CPU tensor handed over in
// a "dltensor" capsule. Declared here from the published ABI so that the
// extension needs no framework headers (and never links libtorch).
#pragma once

#include <cstdint>

namespace wmenv::dlpack {

enum DeviceType : int32_t {
    kCPU = 1,
    kCUDAHost = 3,  // pinned host memory: readable from the CPU
};

enum TypeCode : uint8_t {
    kInt = 0,
    kUInt = 1,
    kFloat = 2,
    kComplex = 5,
    kBool = 6,
};

struct Device {
    int32_t device_type;
    int32_t device_id;
};

struct DataType {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
};

struct Tensor {
    void* data;
    Device device;
    int32_t ndim;
    DataType dtype;
    int64_t* shape;
    int64_t* strides;  // in elements; null means compact row-major
    uint64_t byte_offset;
};

struct ManagedTensor {
    Tensor dl_tensor;
    void* manager_ctx;
    void (*deleter)(ManagedTensor* self);
};

// Capsule names fixed by the protocol: a consumer renames the capsule once it
// owns the tensor, so that the capsule's destructor no longer frees it.
inline constexpr const char* kCapsuleName = "dltensor";
inline constexpr const char* kUsedCapsuleName = "used_dltensor";

}  // namespace wmenv::dlpack
