/* nvrtc.c: run-time compilation of generated CUDA C to cubins with NVRTC, and
 * the compiler identity that goes into every kernel-cache key. Runs on
 * machines with no GPU or driver: NVRTC needs neither. */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <nvrtc.h>
#define XXH_INLINE_ALL /* header-only, like every xxHash use here */
#include <xxhash.h>

#include "runtime/jit/jit.h"

/* Options every kernel is compiled with, in a fixed order (they are part of
 * the cache key, so the order matters too). Each numerics flag is spelled out
 * even where it is NVRTC's current default, so that the key states the
 * numerics and a change of default cannot slip past a cached binary:
 * - c++17: a fixed dialect, not whatever the NVRTC release defaults to.
 * - no fast math: kernels are validated against CPU references, so division
 *   and sqrt stay IEEE-rounded and denormals are kept (rmsnorm, softmax).
 * - fmad=true: contraction to FMA is kept on purpose; it is at least as
 *   accurate as a separate multiply and add, and the references' tolerances
 *   already allow for reassociation.
 * - minimal: NVRTC skips its builtin declarations of textures, surfaces and
 *   the device runtime (cudaMalloc, device-side launch), which no generated
 *   kernel uses: 40% of the front end's time, the SASS byte-identical.
 * No -lineinfo: it leaves the SASS byte-identical but embeds the line tables
 * and the whole PTX text in every cubin (4x the bytes: 2.9 MB for llama2-7b's
 * kernels) and costs ~3% of a cold compile's CPU. For Nsight Compute's source
 * views, RABIT_NVRTC_OPTIONS=-lineinfo builds them under their own keys.
 * Measured in tests/bench/KERNEL_NOTES.md (2026-12-01, the cold compile). */
const char *const rt_nvrtc_default_opts[] = {
    "-std=c++17", "--ftz=false", "--prec-div=true", "--prec-sqrt=true", "--fmad=true", "-minimal",
};
const int rt_nvrtc_default_nopts =
    (int)(sizeof rt_nvrtc_default_opts / sizeof rt_nvrtc_default_opts[0]);

/* Appends "what: NVRTC error string" to log. */
static void nvrtc_fail(RbBuf *log, const char *name, const char *what, nvrtcResult r) {
  if (log)
    rb_buf_printf(log, "%s: %s failed: %s\n", name ? name : "<kernel>", what,
                  nvrtcGetErrorString(r));
}

/* Compile source for arch into a cubin. Compilation errors and rejected
 * options are the caller's input, so they are RB_EUSER with NVRTC's log;
 * any other NVRTC failure is RB_EINTERNAL. */
int rt_nvrtc_compile(const char *source, const char *name, const char *arch,
                     const char *const *opts, int nopts, void **cubin, size_t *len, RbBuf *log) {
  *cubin = NULL;
  *len = 0;
  if (!name)
    name = "kernel.cu";
  if (!source || !arch || nopts < 0 || (nopts > 0 && !opts)) {
    if (log)
      rb_buf_printf(log, "%s: rt_nvrtc_compile: bad arguments\n", name);
    return RB_EINTERNAL;
  }

  /* "--gpu-architecture=" + arch, then the defaults, then the extras. */
  int n = 1 + rt_nvrtc_default_nopts + nopts;
  const char **argv = rb_malloc((size_t)n * sizeof *argv);
  size_t archlen = strlen("--gpu-architecture=") + strlen(arch) + 1;
  char *archopt = rb_malloc(archlen);
  if (!argv || !archopt) {
    rb_free(argv);
    rb_free(archopt);
    if (log)
      rb_buf_printf(log, "%s: out of memory\n", name);
    return RB_EINTERNAL;
  }
  snprintf(archopt, archlen, "--gpu-architecture=%s", arch);
  argv[0] = archopt;
  for (int i = 0; i < rt_nvrtc_default_nopts; i++)
    argv[1 + i] = rt_nvrtc_default_opts[i];
  for (int i = 0; i < nopts; i++)
    argv[1 + rt_nvrtc_default_nopts + i] = opts[i];

  int rc = RB_OK;
  nvrtcProgram prog = NULL;
  nvrtcResult r = nvrtcCreateProgram(&prog, source, name, 0, NULL, NULL);
  if (r != NVRTC_SUCCESS) {
    nvrtc_fail(log, name, "nvrtcCreateProgram", r);
    rc = RB_EINTERNAL;
    goto done;
  }

  nvrtcResult cr = nvrtcCompileProgram(prog, n, argv);
  if (cr != NVRTC_SUCCESS) {
    rc = (cr == NVRTC_ERROR_COMPILATION || cr == NVRTC_ERROR_INVALID_OPTION) ? RB_EUSER
                                                                              : RB_EINTERNAL;
    if (log) {
      rb_buf_printf(log, "%s: NVRTC compilation for %s failed: %s\n", name, arch,
                    nvrtcGetErrorString(cr));
      size_t loglen = 0;
      if (nvrtcGetProgramLogSize(prog, &loglen) == NVRTC_SUCCESS && loglen > 1) {
        char *text = rb_malloc(loglen);
        if (text && nvrtcGetProgramLog(prog, text) == NVRTC_SUCCESS)
          rb_buf_put(log, text, strlen(text));
        rb_free(text);
      }
    }
    goto done;
  }

  size_t size = 0;
  r = nvrtcGetCUBINSize(prog, &size);
  if (r != NVRTC_SUCCESS || size == 0) {
    /* A virtual arch ("compute_90") yields PTX only; the cache never holds PTX. */
    if (r == NVRTC_SUCCESS) {
      if (log)
        rb_buf_printf(log, "%s: NVRTC produced no cubin for %s (a real sm_XX target is needed)\n",
                      name, arch);
      rc = RB_EUSER;
    } else {
      nvrtc_fail(log, name, "nvrtcGetCUBINSize", r);
      rc = RB_EINTERNAL;
    }
    goto done;
  }
  void *bin = rb_malloc(size);
  if (!bin) {
    if (log)
      rb_buf_printf(log, "%s: out of memory for a %zu-byte cubin\n", name, size);
    rc = RB_EINTERNAL;
    goto done;
  }
  r = nvrtcGetCUBIN(prog, bin);
  if (r != NVRTC_SUCCESS) {
    rb_free(bin);
    nvrtc_fail(log, name, "nvrtcGetCUBIN", r);
    rc = RB_EINTERNAL;
    goto done;
  }
  *cubin = bin;
  *len = size;

done:
  if (prog)
    nvrtcDestroyProgram(&prog);
  rb_free(argv);
  rb_free(archopt);
  return rc;
}

/* XXH3-64 of a file's contents, streamed. Returns 0 on success, -1 if the
 * file cannot be read. */
static int hash_file(const char *path, uint64_t *out) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  XXH3_state_t *st = XXH3_createState();
  if (!st) {
    fclose(f);
    return -1;
  }
  XXH3_64bits_reset(st);
  static unsigned char chunk[1 << 16]; /* only used under pthread_once */
  size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
    XXH3_64bits_update(st, chunk, got);
  int bad = ferror(f);
  fclose(f);
  *out = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return bad ? -1 : 0;
}

static char nvrtc_id[512];
static pthread_once_t nvrtc_id_once = PTHREAD_ONCE_INIT;

/* Builds the id once. The builtins library is what NVRTC loads from beside
 * itself; its bytes change with every NVRTC build, while nvrtcVersion gives
 * only major.minor. Each fallback is named in the id, so that a key made
 * from a weaker identity never matches one made from the builtins. */
static void nvrtc_id_init(void) {
  int major = 0, minor = 0;
  if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) {
    snprintf(nvrtc_id, sizeof nvrtc_id, "nvrtc unknown-version");
    return;
  }

  Dl_info info;
  memset(&info, 0, sizeof info);
  if (!dladdr((void *)&nvrtcVersion, &info) || !info.dli_fname || !info.dli_fname[0]) {
    snprintf(nvrtc_id, sizeof nvrtc_id, "nvrtc %d.%d builtins unknown (libnvrtc not located)",
             major, minor);
    return;
  }

  /* Directory of the loaded libnvrtc (dli_fname may be a bare name if it was
   * found through the loader path; then the builtins are looked up as-is). */
  char dir[400];
  const char *slash = strrchr(info.dli_fname, '/');
  size_t dlen = slash ? (size_t)(slash - info.dli_fname) : 0;
  if (dlen >= sizeof dir)
    dlen = 0;
  memcpy(dir, info.dli_fname, dlen);
  dir[dlen] = 0;

  char path[512];
  snprintf(path, sizeof path, "%s%slibnvrtc-builtins.so.%d.%d", dir, dlen ? "/" : "", major,
           minor);
  uint64_t h = 0;
  if (hash_file(path, &h) == 0) {
    snprintf(nvrtc_id, sizeof nvrtc_id, "nvrtc %d.%d builtins %016llx", major, minor,
             (unsigned long long)h);
    return;
  }
  if (hash_file(info.dli_fname, &h) == 0) {
    snprintf(nvrtc_id, sizeof nvrtc_id,
             "nvrtc %d.%d builtins not found, libnvrtc %016llx", major, minor,
             (unsigned long long)h);
    return;
  }
  snprintf(nvrtc_id, sizeof nvrtc_id, "nvrtc %d.%d builtins unknown (unreadable)", major, minor);
}

/* The NVRTC identity for cache keys; computed on first use, then constant. */
const char *rt_nvrtc_id(void) {
  pthread_once(&nvrtc_id_once, nvrtc_id_init);
  return nvrtc_id;
}

const RtCompiler rt_compiler_nvrtc = {
    .name = "nvrtc",
    .id = rt_nvrtc_id,
    .options = rt_nvrtc_default_opts,
    .noptions = (int)(sizeof rt_nvrtc_default_opts / sizeof rt_nvrtc_default_opts[0]),
    .compile = rt_nvrtc_compile,
};
