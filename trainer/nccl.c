/* nccl.c: NCCL loaded at run time with dlopen, as the driver and cuBLAS are, so that
 * rabit builds and single-GPU training runs where NCCL is not installed, and the
 * device machine (nothing installable, but PyTorch's wheel bundles libnccl.so.2)
 * finds one. Only the entry points data-parallel training calls are resolved; their
 * types are declared here (NCCL's ABI: ncclResult_t is an int, the unique id 128
 * bytes), so nccl.h is not needed to build. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/dist.h"

typedef int (*PfnGetVersion)(int *);
typedef int (*PfnGetUniqueId)(unsigned char *); /* ncclUniqueId*: 128 bytes */
typedef const char *(*PfnGetErrorString)(int);

struct TrNccl {
  void *lib;
  char path[4096];
  int version;
  PfnGetUniqueId get_unique_id;
  PfnGetErrorString error_string;
  /* resolved now so that a library missing them is refused at open, not mid-run */
  void *comm_init_rank, *comm_destroy, *all_reduce, *group_start, *group_end;
};

/* Try one candidate: on success *out holds the handle and path. */
static int try_load(const char *path, RbBuf *tried, void **lib) {
  /* RTLD_NODELETE: ncclGetUniqueId starts a bootstrap thread that outlives the call; a
   * dlclose that unmapped the library under it crashed the process at exit (ctest
   * train_dist_nccl, 1 run in ~20). Kept mapped, the handle is still closed. */
  *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (*lib) return 1;
  rb_buf_printf(tried, "\n  %s: %s", path, dlerror());
  return 0;
}

/* <dir>/nvidia/nccl/lib/libnccl.so.2 under each python3 site-packages directory. */
static int try_python(RbBuf *tried, void **lib, char *path, size_t size) {
  static const char *const roots[] = {"/usr/local/lib", "/usr/lib", "/opt/conda/lib"};
  for (size_t r = 0; r < sizeof roots / sizeof roots[0]; r++) {
    DIR *d = opendir(roots[r]);
    if (!d) continue;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d)) != NULL) {
      if (strncmp(e->d_name, "python3", 7) != 0) continue;
      for (int k = 0; k < 2 && !found; k++) {
        snprintf(path, size, "%s/%s/%s/nvidia/nccl/lib/libnccl.so.2", roots[r], e->d_name,
                 k ? "dist-packages" : "site-packages");
        FILE *f = fopen(path, "rb");
        if (f) fclose(f), found = try_load(path, tried, lib);
      }
    }
    closedir(d);
    if (found) return 1;
  }
  return 0;
}

int tr_nccl_open(TrNccl **out, RbBuf *err) {
  *out = NULL;
  RbBuf tried = {0};
  char path[4096] = "";
  void *lib = NULL;
  const char *env = getenv("RABIT_NCCL");
  if (env && *env) {
    snprintf(path, sizeof path, "%s", env);
    try_load(path, &tried, &lib); /* asked for one file: only that one */
  } else {
    snprintf(path, sizeof path, "libnccl.so.2");
    if (!try_load(path, &tried, &lib)) {
      const char *homes[] = {getenv("RABIT_CUDA_HOME"), getenv("CUDA_HOME"), "/usr/local/cuda"};
      for (size_t i = 0; !lib && i < sizeof homes / sizeof homes[0]; i++) {
        if (!homes[i] || !*homes[i]) continue;
        snprintf(path, sizeof path, "%s/lib64/libnccl.so.2", homes[i]);
        try_load(path, &tried, &lib);
      }
      if (!lib) try_python(&tried, &lib, path, sizeof path);
    }
  }
  if (!lib) {
    rb_buf_printf(err, "NCCL is missing (data-parallel training needs libnccl.so.2; set RABIT_NCCL to its path). "
                       "Tried:%s", tried.data ? tried.data : "");
    rb_buf_free(&tried);
    return RB_EUSER;
  }
  rb_buf_free(&tried);
  TrNccl *n = rb_calloc(1, sizeof *n);
  if (!n) return dlclose(lib), RB_EINTERNAL;
  n->lib = lib;
  snprintf(n->path, sizeof n->path, "%s", path);
  PfnGetVersion get_version = (PfnGetVersion)dlsym(lib, "ncclGetVersion");
  n->get_unique_id = (PfnGetUniqueId)dlsym(lib, "ncclGetUniqueId");
  n->error_string = (PfnGetErrorString)dlsym(lib, "ncclGetErrorString");
  n->comm_init_rank = dlsym(lib, "ncclCommInitRank");
  n->comm_destroy = dlsym(lib, "ncclCommDestroy");
  n->all_reduce = dlsym(lib, "ncclAllReduce");
  n->group_start = dlsym(lib, "ncclGroupStart");
  n->group_end = dlsym(lib, "ncclGroupEnd");
  if (!get_version || !n->get_unique_id || !n->error_string || !n->comm_init_rank || !n->comm_destroy ||
      !n->all_reduce || !n->group_start || !n->group_end || get_version(&n->version) != 0) {
    rb_buf_printf(err, "%s: not a usable NCCL (an entry point rabit needs is missing, or ncclGetVersion failed)",
                  n->path);
    tr_nccl_close(n);
    return RB_EUSER;
  }
  *out = n;
  return RB_OK;
}

void tr_nccl_close(TrNccl *n) {
  if (!n) return;
  if (n->lib) dlclose(n->lib);
  rb_free(n);
}

const char *tr_nccl_path(const TrNccl *n) { return n->path; }

int tr_nccl_version(const TrNccl *n) { return n->version; }

int tr_nccl_unique_id(TrNccl *n, unsigned char id[TR_NCCL_ID_BYTES], RbBuf *err) {
  int r = n->get_unique_id(id);
  if (r != 0) {
    rb_buf_printf(err, "ncclGetUniqueId: %s (NCCL %d)", n->error_string(r), n->version);
    return RB_EUSER;
  }
  return RB_OK;
}
