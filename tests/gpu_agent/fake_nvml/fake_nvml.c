/*
 * A fake libnvidia-ml.so.1 for the GPU agent's tests: the project's own code, written from the
 * prototypes in NVIDIA's nvml.h, implementing only the entry points the agent calls. The real
 * nvidia-ml-py binding loads it, so the binding's ctypes signatures, struct layouts and error
 * mapping run exactly as they would against a driver.
 *
 * The node it pretends to be (fixed, so tests can assert exact values):
 *   GPU 0  NVIDIA H100 80GB HBM3  whole GPU, every field supported, two compute processes.
 *   GPU 1  NVIDIA A100-SXM4-40GB  MIG enabled: utilization and encoder NOT_SUPPORTED on the parent;
 *          MIG slots 0 and 2 hold instances (GPU instance ids 1 and 5), slot 1 is empty (NOT_FOUND);
 *          on instances only memory, identity and processes are supported, as on real boards.
 *   GPU 2  NVIDIA L4              whole GPU, power NOT_SUPPORTED, no processes.
 *
 * Read at call time, so a test can change them between samples:
 *   FAKE_NVML_GPUS             how many of the GPUs above exist (default 3)
 *   FAKE_NVML_LOST             comma-separated indices whose every query returns GPU_IS_LOST
 *   FAKE_NVML_INIT_RESULT      return code of nvmlInitWithFlags (e.g. 9 = DRIVER_NOT_LOADED)
 *   FAKE_NVML_SHUTDOWN_MARKER  file that nvmlShutdown appends "shutdown\n" to
 *   FAKE_NVML_BAD_NAME         1 + index of a GPU whose name is not valid UTF-8 (default 0: none)
 *   FAKE_NVML_SECOND_CI        1: MIG slot 1 holds a second compute instance of GPU instance 5
 *   FAKE_NVML_GI_ID_RESULT     return code of nvmlDeviceGetGpuInstanceId (default SUCCESS)
 * Built with -DFAKE_NVML_NO_PROCESSES_V3 it lacks the _v3 process symbol, like an older driver.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
enum {
    SUCCESS = 0, UNINITIALIZED = 1, INVALID_ARGUMENT = 2, NOT_SUPPORTED = 3, NOT_FOUND = 6,
    INSUFFICIENT_SIZE = 7, GPU_IS_LOST = 15
};

typedef struct { unsigned int gpu; unsigned int memory; } nvmlUtilization_t;
typedef struct { unsigned long long total; unsigned long long free; unsigned long long used; } nvmlMemory_t;
typedef struct {
    unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId; unsigned int computeInstanceId;
} nvmlProcessInfo_t;

#define GIB (1024ULL * 1024ULL * 1024ULL)
#define MAX_PROCS 2

typedef struct fake_device {
    int index;          /* physical GPU index; a MIG instance carries its parent's */
    int is_mig;
    unsigned int gpu_instance_id;
    const char *uuid;
    const char *name;
    int supports_util, supports_power, supports_temp, supports_clock, supports_enc, supports_dec;
    unsigned int util_gpu, util_mem;
    unsigned long long mem_total, mem_used;
    unsigned int power_mw, temp_c, sm_mhz, enc_pct, dec_pct;
    unsigned int n_procs;
    nvmlProcessInfo_t procs[MAX_PROCS];
} fake_device;

static fake_device gpus[3] = {
    {0, 0, 0, "GPU-11111111-2222-3333-4444-555555555555", "NVIDIA H100 80GB HBM3",
     1, 1, 1, 1, 1, 1, 63, 20, 80 * GIB, 10 * GIB, 312500, 54, 1755, 0, 5,
     2, {{1234, 4 * GIB, 0xFFFFFFFF, 0xFFFFFFFF}, {5678, 6 * GIB, 0xFFFFFFFF, 0xFFFFFFFF}}},
    {1, 0, 0, "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "NVIDIA A100-SXM4-40GB",
     0, 1, 1, 1, 0, 1, 0, 0, 40 * GIB, 15 * GIB, 90000, 40, 1410, 0, 0, 0, {{0}}},
    {2, 0, 0, "GPU-99999999-8888-7777-6666-555555555555", "NVIDIA L4",
     1, 0, 1, 1, 1, 1, 7, 3, 24 * GIB, 1 * GIB, 0, 35, 2040, 0, 0, 0, {{0}}},
};

static fake_device migs[3] = {
    {1, 1, 1, "MIG-0f0f0f0f-1111-2222-3333-444444444444", "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
     0, 0, 0, 0, 0, 0, 0, 0, 5 * GIB, 3 * GIB, 0, 0, 0, 0, 0,
     1, {{4321, 2 * GIB, 1, 0}}},
    {1, 1, 5, "MIG-5a5a5a5a-6666-7777-8888-999999999999", "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
     0, 0, 0, 0, 0, 0, 0, 0, 20 * GIB, 12 * GIB, 0, 0, 0, 0, 0, 0, {{0}}},
    {1, 1, 5, "MIG-c1c1c1c1-6666-7777-8888-999999999999", "NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb",
     0, 0, 0, 0, 0, 0, 0, 0, 20 * GIB, 12 * GIB, 0, 0, 0, 0, 0, 0, {{0}}},
};

static int initialized = 0;

static int env_int(const char *name, int fallback) {
    const char *value = getenv(name);
    return (value != NULL && *value != '\0') ? atoi(value) : fallback;
}

static int gpu_count(void) {
    int count = env_int("FAKE_NVML_GPUS", 3);
    return count < 0 ? 0 : (count > 3 ? 3 : count);
}

static int is_lost(int index) {
    const char *lost = getenv("FAKE_NVML_LOST");
    if (lost == NULL) return 0;
    char buffer[64];
    snprintf(buffer, sizeof buffer, "%s", lost);
    for (char *token = strtok(buffer, ","); token != NULL; token = strtok(NULL, ",")) {
        if (*token != '\0' && atoi(token) == index) return 1;
    }
    return 0;
}

/* Every device query starts here: not initialized, not one of ours, or lost. */
static nvmlReturn_t check(const fake_device *device) {
    if (!initialized) return UNINITIALIZED;
    int known = 0;
    for (int i = 0; i < 3; i++) known |= (device == &gpus[i]);
    for (int i = 0; i < 3; i++) known |= (device == &migs[i]);
    if (!known) return INVALID_ARGUMENT;
    if (is_lost(device->index)) return GPU_IS_LOST;
    return SUCCESS;
}

#define CHECK(device) do { nvmlReturn_t r = check(device); if (r != SUCCESS) return r; } while (0)

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    nvmlReturn_t result = env_int("FAKE_NVML_INIT_RESULT", SUCCESS);
    if (result == SUCCESS) initialized = 1;
    return result;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    if (!initialized) return UNINITIALIZED;
    initialized = 0;
    const char *marker = getenv("FAKE_NVML_SHUTDOWN_MARKER");
    if (marker != NULL) {
        FILE *file = fopen(marker, "a");
        if (file != NULL) { fputs("shutdown\n", file); fclose(file); }
    }
    return SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
        case SUCCESS: return "Success";
        case UNINITIALIZED: return "Uninitialized";
        case INVALID_ARGUMENT: return "Invalid Argument";
        case NOT_SUPPORTED: return "Not Supported";
        case NOT_FOUND: return "Not Found";
        case GPU_IS_LOST: return "GPU is lost";
        case 9: return "Driver Not Loaded";
        default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!initialized) return UNINITIALIZED;
    snprintf(version, length, "%s", "550.54.15");
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialized) return UNINITIALIZED;
    *count = (unsigned int)gpu_count();
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, fake_device **device) {
    if (!initialized) return UNINITIALIZED;
    if (index >= (unsigned int)gpu_count()) return INVALID_ARGUMENT;
    *device = &gpus[index];
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetIndex(fake_device *device, unsigned int *index) {
    CHECK(device);
    *index = (unsigned int)device->index;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(fake_device *device, char *uuid, unsigned int length) {
    CHECK(device);
    snprintf(uuid, length, "%s", device->uuid);
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(fake_device *device, char *name, unsigned int length) {
    CHECK(device);
    int bad = !device->is_mig && env_int("FAKE_NVML_BAD_NAME", 0) == (int)device->index + 1;
    snprintf(name, length, "%s", bad ? "NVIDIA \xff\xfe H100" : device->name);
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(fake_device *device, nvmlUtilization_t *utilization) {
    CHECK(device);
    if (!device->supports_util) return NOT_SUPPORTED;
    utilization->gpu = device->util_gpu;
    utilization->memory = device->util_mem;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(fake_device *device, nvmlMemory_t *memory) {
    CHECK(device);
    memory->total = device->mem_total;
    memory->used = device->mem_used;
    memory->free = device->mem_total - device->mem_used;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(fake_device *device, unsigned int *power_mw) {
    CHECK(device);
    if (!device->supports_power) return NOT_SUPPORTED;
    *power_mw = device->power_mw;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(fake_device *device, int sensor, unsigned int *temp) {
    CHECK(device);
    if (!device->supports_temp || sensor != 0) return NOT_SUPPORTED;
    *temp = device->temp_c;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(fake_device *device, int type, unsigned int *clock_mhz) {
    CHECK(device);
    if (!device->supports_clock || type != 1 /* NVML_CLOCK_SM */) return NOT_SUPPORTED;
    *clock_mhz = device->sm_mhz;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEncoderUtilization(fake_device *device, unsigned int *util, unsigned int *period_us) {
    CHECK(device);
    if (!device->supports_enc) return NOT_SUPPORTED;
    *util = device->enc_pct;
    *period_us = 167000;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetDecoderUtilization(fake_device *device, unsigned int *util, unsigned int *period_us) {
    CHECK(device);
    if (!device->supports_dec) return NOT_SUPPORTED;
    *util = device->dec_pct;
    *period_us = 167000;
    return SUCCESS;
}

#ifndef FAKE_NVML_NO_PROCESSES_V3
/* NVML's two-call protocol: a short buffer gets the needed count back and INSUFFICIENT_SIZE. */
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(fake_device *device, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    CHECK(device);
    if (device->n_procs == 0) { *count = 0; return SUCCESS; }
    if (infos == NULL || *count < device->n_procs) { *count = device->n_procs; return INSUFFICIENT_SIZE; }
    memcpy(infos, device->procs, device->n_procs * sizeof(nvmlProcessInfo_t));
    *count = device->n_procs;
    return SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetMigMode(fake_device *device, unsigned int *current, unsigned int *pending) {
    CHECK(device);
    if (device->is_mig) return NOT_SUPPORTED;
    *current = *pending = (device == &gpus[1]) ? 1 : 0;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(fake_device *device, unsigned int *count) {
    CHECK(device);
    *count = (device == &gpus[1]) ? 7 : 0;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(fake_device *device, unsigned int index, fake_device **mig) {
    CHECK(device);
    if (device != &gpus[1] || index >= 7) return INVALID_ARGUMENT;
    if (index == 0) { *mig = &migs[0]; return SUCCESS; }
    if (index == 2) { *mig = &migs[1]; return SUCCESS; }
    if (index == 1 && env_int("FAKE_NVML_SECOND_CI", 0)) { *mig = &migs[2]; return SUCCESS; }
    return NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(fake_device *device, unsigned int *id) {
    CHECK(device);
    if (!device->is_mig) return INVALID_ARGUMENT;
    nvmlReturn_t result = env_int("FAKE_NVML_GI_ID_RESULT", SUCCESS);
    if (result != SUCCESS) return result;
    *id = device->gpu_instance_id;
    return SUCCESS;
}
