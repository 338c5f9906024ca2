/* SPDX-License-Identifier: Apache-2.0 */
/* The HIP API subset kernels/kvfs_gpu.cpp uses, mapped onto CUDA so one
 * source builds both plugins. HIP's own NVIDIA headers (Debian's HIP 5.2)
 * do not build against CUDA 12+, so this header maps exactly the names the
 * plugin uses and nothing more; a new call in the plugin needs a line here.
 *
 * Most names are plain aliases of the CUDA runtime. Two calls have no
 * runtime counterpart and go through the driver API (libcuda):
 * hipMemGetAddressRange (cuMemGetAddressRange, the only way to learn the
 * real size of an imported IPC allocation) and hipDeviceGet/
 * hipDeviceGetUuid (cuDeviceGetUuid, the same UUID nvidia-smi and
 * cudaDeviceProp.uuid report, without cudaGetDeviceProperties' cost). */
#ifndef KVFS_HIP_CUDA_H
#define KVFS_HIP_CUDA_H

#include <cuda.h>
#include <cuda_runtime_api.h>

typedef cudaError_t hipError_t;
typedef cudaStream_t hipStream_t;
typedef cudaEvent_t hipEvent_t;
typedef cudaIpcMemHandle_t hipIpcMemHandle_t;
typedef CUdevice hipDevice_t;
typedef CUuuid hipUUID;               /* both: char bytes[16] */
/* HIP's device pointer is void *; keep it so on CUDA too, and convert to
 * CUdeviceptr only inside the driver call below. */
typedef void *hipDeviceptr_t;

#define hipSuccess cudaSuccess
#define hipErrorInvalidValue cudaErrorInvalidValue
#define hipErrorOutOfMemory cudaErrorMemoryAllocation
#define hipErrorInsufficientDriver cudaErrorInsufficientDriver
#define hipErrorNoDevice cudaErrorNoDevice
#define hipErrorInvalidDevice cudaErrorInvalidDevice
#define hipErrorNotSupported cudaErrorNotSupported
#define hipErrorHostMemoryAlreadyRegistered cudaErrorHostMemoryAlreadyRegistered
#define hipErrorHostMemoryNotRegistered cudaErrorHostMemoryNotRegistered

#define hipStreamNonBlocking cudaStreamNonBlocking
#define hipEventDisableTiming cudaEventDisableTiming
#define hipHostRegisterDefault cudaHostRegisterDefault
#define hipHostRegisterReadOnly cudaHostRegisterReadOnly
#define hipHostMallocDefault cudaHostAllocDefault
#define hipIpcMemLazyEnablePeerAccess cudaIpcMemLazyEnablePeerAccess
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost

#define hipGetErrorString cudaGetErrorString
#define hipGetDeviceCount cudaGetDeviceCount
#define hipSetDevice cudaSetDevice
#define hipHostRegister cudaHostRegister
#define hipHostUnregister cudaHostUnregister
#define hipHostMalloc cudaHostAlloc
#define hipHostFree cudaFreeHost
#define hipIpcOpenMemHandle cudaIpcOpenMemHandle
#define hipIpcCloseMemHandle cudaIpcCloseMemHandle
#define hipStreamCreateWithFlags cudaStreamCreateWithFlags
#define hipStreamDestroy cudaStreamDestroy
#define hipStreamSynchronize cudaStreamSynchronize
#define hipEventCreateWithFlags cudaEventCreateWithFlags
#define hipEventRecord cudaEventRecord
#define hipEventSynchronize cudaEventSynchronize
#define hipEventDestroy cudaEventDestroy
#define hipMemcpyAsync cudaMemcpyAsync

/* Every driver error the calls below can return has the same number in
 * the runtime's enum (CUDA 10.1 aligned them), so a cast keeps
 * hipGetErrorString's message right. */
static inline hipError_t kvfs_cu_error(CUresult r)
{
	return (hipError_t)r;
}

static inline hipError_t hipDeviceGet(hipDevice_t *dev, int ordinal)
{
	return kvfs_cu_error(cuDeviceGet(dev, ordinal));
}

static inline hipError_t hipDeviceGetUuid(hipUUID *uuid, hipDevice_t dev)
{
	return kvfs_cu_error(cuDeviceGetUuid(uuid, dev));
}

/* Needs a current context, which the runtime call before it (the IPC
 * import) has made current on this thread. */
static inline hipError_t hipMemGetAddressRange(hipDeviceptr_t *base, size_t *size,
					       hipDeviceptr_t p)
{
	CUdeviceptr b = 0;
	CUresult r = cuMemGetAddressRange(&b, size, (CUdeviceptr)p);

	*base = (hipDeviceptr_t)b;
	return kvfs_cu_error(r);
}

#endif
